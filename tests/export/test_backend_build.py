"""skoots build-backend pytorch: Triton's PyTorch backend built from the vendored r24.10 sources
against this torch, cached per release, torch and ABI and reused; its mistakes are one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skoots_export import backend_build
from skoots_export.backend_build import (
    LIBRARY,
    BackendBuildError,
    BuildToolMissingError,
    build_pytorch_backend,
    check_tools,
    find_vendor,
    installed_torch,
)

SKOOTS = str(Path(sys.executable).parent / "skoots")


def test_the_build_is_cached_under_the_user_cache_by_release_torch_and_abi(pytorch_backend: Path) -> None:
    torch_build = installed_torch()
    assert pytorch_backend == backend_build.cache_root() / torch_build.key / "pytorch"
    assert torch_build.key == f"pytorch-r24.10-torch{torch_build.version}-cxx11abi{int(torch_build.cxx11_abi)}"
    assert (pytorch_backend / LIBRARY).is_file()
    assert [p.name for p in pytorch_backend.parent.parent.glob(f".{torch_build.key}-*")] == [], "no build folder left behind"


def test_a_second_build_reuses_the_cache_in_seconds(pytorch_backend: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([SKOOTS, "build-backend", "pytorch"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"reused the cached build: {pytorch_backend}")
    assert time.monotonic() - started < 30


def test_the_library_finds_torch_and_the_core_by_its_own_runpath(pytorch_backend: Path) -> None:
    readelf = subprocess.run(["readelf", "-d", str(pytorch_backend / LIBRARY)], capture_output=True, text=True)
    if readelf.returncode != 0:
        pytest.skip("no readelf")
    assert "[libtritonserver.so]" in readelf.stdout and "[libtorch.so]" in readelf.stdout
    runpath = next(line for line in readelf.stdout.splitlines() if "RUNPATH" in line or "RPATH" in line)
    # The torch/lib of the environment that built it: the cache is shared by every environment
    # with the same torch (version and ABI), and serve puts this environment's torch/lib first
    # on LD_LIBRARY_PATH, so a build made elsewhere serves here too.
    assert "/torch/lib" in runpath and "$ORIGIN" in runpath.replace("{ORIGIN}", "ORIGIN")


def _skoots(*args: str, cwd: Path, cache: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), **({"PATH": path} if path is not None else {})}
    return subprocess.run([SKOOTS, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def _one_line(result: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    assert "Traceback" not in result.stderr


def test_no_sources_and_a_wrong_source_folder_are_one_line(tmp_path: Path) -> None:
    _one_line(_skoots("build-backend", "pytorch", cwd=tmp_path, cache=tmp_path / "cache"),
              r"^error: no Triton r24\.10 sources: shared/vendor/triton-r24\.10 is not in this folder or a parent; give --source DIR")
    _one_line(_skoots("build-backend", "pytorch", "--source", str(tmp_path / "nowhere"), cwd=tmp_path, cache=tmp_path / "cache"),
              r"^error: --source .*nowhere is not a folder")
    (tmp_path / "half" / "core").mkdir(parents=True)
    (tmp_path / "half" / "core" / "CMakeLists.txt").write_text("")
    _one_line(_skoots("build-backend", "pytorch", "--source", str(tmp_path / "half"), cwd=tmp_path, cache=tmp_path / "cache"),
              r"^error: .*half lacks pytorch_backend, common, backend: give --source a folder with core, common, backend and pytorch_backend")
    assert not (tmp_path / "cache" / "skoots-triton" / "backends").exists() or not any(
        p.name.startswith("pytorch-") and p.is_dir() for p in (tmp_path / "cache" / "skoots-triton" / "backends").iterdir())


def test_a_missing_tool_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    vendor = find_vendor(Path(__file__).parent)
    if vendor is None:
        pytest.skip("no shared/vendor/triton-r24.10 beside the repository")
    empty = tmp_path / "bin"
    empty.mkdir()
    _one_line(_skoots("build-backend", "pytorch", "--source", str(vendor), cwd=tmp_path, cache=tmp_path / "cache", path=str(empty)),
              r"^error: building the PyTorch backend needs cmake, make, g\+\+.*: install with apt-get install -y cmake make g\+\+")


def test_missing_system_packages_are_named_with_their_apt_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(backend_build, "GOOGLETEST_SOURCE", tmp_path / "googletest")
    monkeypatch.setattr(backend_build, "RAPIDJSON_CONFIG", (str(tmp_path / "rapidjson"),))
    with pytest.raises(BuildToolMissingError, match=r"RapidJSON headers \(rapidjson-dev\), googletest sources in .* \(googletest\): install with apt-get install -y .*rapidjson-dev googletest$"):
        check_tools()


def fake_checkouts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cmake: str) -> None:
    """Four checkouts under ``tmp_path/src`` whose CMakeLists.txt ends with ``cmake``, and a cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in backend_build.SOURCES:
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.17)\n" + cmake)


def test_a_failed_build_names_its_log_and_leaves_nothing_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if backend_build.missing_tools():
        pytest.skip("the build needs cmake, make, g++, rapidjson-dev and googletest")
    fake_checkouts(monkeypatch, tmp_path, "project(x)\nmessage(FATAL_ERROR \"not the backend\")\n")
    with pytest.raises(BackendBuildError, match=r"^cmake configure failed \(exit 1\): .* — full log: .*\.build\.log$"):
        build_pytorch_backend(tmp_path / "src")
    backends = tmp_path / "cache" / "skoots-triton" / "backends"
    assert [p.name for p in backends.iterdir() if p.is_dir()] == [], "no half-built backend"
    assert backend_build.cached_backend() is None


def test_an_unreadable_archive_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name in backend_build.SOURCES:
        (tmp_path / "src" / f"{name}-r24.10.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(BackendBuildError, match=r"^cannot unpack .*-r24\.10\.tar\.gz: "):
        backend_build.gather_sources(tmp_path / "src", tmp_path / "into")


def test_a_build_that_makes_no_library_is_one_line_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if backend_build.missing_tools():
        pytest.skip("the build needs cmake, make, g++, rapidjson-dev and googletest")
    fake_checkouts(monkeypatch, tmp_path, "project(x NONE)\nadd_custom_target(triton-pytorch-backend)\n")
    with pytest.raises(BackendBuildError, match=r"^the build made no libtriton_pytorch\.so — full log: "):
        build_pytorch_backend(tmp_path / "src", jobs=1)
    assert [p.name for p in (tmp_path / "cache" / "skoots-triton" / "backends").iterdir() if p.is_dir()] == []
