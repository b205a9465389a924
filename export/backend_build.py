"""Build Triton's PyTorch backend (``libtriton_pytorch.so``) here, offline, against the installed torch.

The ``tritonserver`` in the nvidia-pytriton wheel has the Python backend only, so the
``pytorch_libtorch`` variant of an export would never be served here. Triton's PyTorch backend
at the server's release builds from its sources (core, common, backend, pytorch_backend) with
CMake, CPU only, against the torch of this environment. The result is cached per Triton release,
torch version and C++ ABI under the user's cache directory; ``skoots serve`` finds it there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError

__all__ = [
    "TRITON_RELEASE", "VENDOR_DIR", "LIBRARY", "SOURCES", "GOOGLETEST_SOURCE", "RAPIDJSON_CONFIG", "BackendBuildError",
    "BuildToolMissingError", "TorchBuild", "BuildResult", "installed_torch", "cache_root", "backend_dir", "cached_backend",
    "find_vendor", "missing_tools", "check_tools", "gather_sources", "cmake_arguments", "build_pytorch_backend",
]

TRITON_RELEASE = "r24.10"  # the release of the wheel's tritonserver (2.51)
VENDOR_DIR = Path("shared") / "vendor" / f"triton-{TRITON_RELEASE}"
LIBRARY = "libtriton_pytorch.so"
# The checkouts the build needs, by the name CMake's FetchContent declares them under
# (``None``: the top-level project itself).
SOURCES = {"pytorch_backend": None, "core": "repo-core", "common": "repo-common", "backend": "repo-backend"}
# common always adds its tests, which fetch googletest; Debian's googletest package has the source.
GOOGLETEST_SOURCE = Path("/usr/src/googletest")
RAPIDJSON_CONFIG = ("/usr/lib/cmake/RapidJSON", "/usr/share/cmake/RapidJSON", "/usr/lib/x86_64-linux-gnu/cmake/RapidJSON")


class BackendBuildError(ExportError):
    """The backend's sources are missing, or its build failed."""


class BuildToolMissingError(BackendBuildError):
    """A compiler, CMake or a system package the build needs is not installed."""


@dataclass(frozen=True)
class TorchBuild:
    """What a backend build is tied to: torch's version, C++ ABI and install folder."""

    version: str
    cxx11_abi: bool
    root: Path

    @property
    def key(self) -> str:
        """The cache folder's name: a build serves only this release, torch and ABI."""
        return f"pytorch-{TRITON_RELEASE}-torch{self.version}-cxx11abi{int(self.cxx11_abi)}"


@dataclass(frozen=True)
class BuildResult:
    """Where the backend folder is, whether it was reused from the cache, and the seconds taken."""

    backend_dir: Path
    reused: bool
    seconds: float


def installed_torch() -> TorchBuild:
    """The torch of this environment, as a build key."""
    import torch

    return TorchBuild(torch.__version__, bool(torch.compiled_with_cxx11_abi()), Path(torch.__file__).resolve().parent)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/skoots-triton/backends``, else ``~/.cache/skoots-triton/backends``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "skoots-triton" / "backends"


def backend_dir(torch_build: TorchBuild | None = None) -> Path:
    """The backend folder (``.../pytorch``, as Triton's ``--backend-directory`` layout wants it)
    of a build for ``torch_build`` (default: the installed torch), built or not."""
    return cache_root() / (torch_build or installed_torch()).key / "pytorch"


def cached_backend(torch_build: TorchBuild | None = None) -> Path | None:
    """The cached backend folder matching the installed torch, or None when none is built."""
    folder = backend_dir(torch_build)
    return folder if (folder / LIBRARY).is_file() else None


def find_vendor(start: Path | None = None) -> Path | None:
    """``shared/vendor/triton-r24.10`` in ``start`` (default: the working directory) or a parent."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / VENDOR_DIR).is_dir():
            return folder / VENDOR_DIR
    return None


def missing_tools() -> list[tuple[str, str]]:
    """What a build needs and is not installed, each as ``(what, apt package)``; empty when all is there."""
    missing = [(tool, tool) for tool in ("cmake", "make", "g++") if shutil.which(tool) is None]
    if not any(Path(p, "RapidJSONConfig.cmake").is_file() or Path(p, "rapidjson-config.cmake").is_file() for p in RAPIDJSON_CONFIG):
        missing.append(("RapidJSON headers", "rapidjson-dev"))
    if not (GOOGLETEST_SOURCE / "CMakeLists.txt").is_file():
        missing.append((f"googletest sources in {GOOGLETEST_SOURCE}", "googletest"))
    return missing


def check_tools() -> None:
    """Raise ``BuildToolMissingError`` naming everything to install, in one line."""
    missing = missing_tools()
    if missing:
        named = ", ".join(what if what == package else f"{what} ({package})" for what, package in missing)
        raise BuildToolMissingError(
            f"building the PyTorch backend needs {named}: install with apt-get install -y {' '.join(p for _, p in missing)}"
        )


def gather_sources(source: Path, into: Path) -> dict[str, Path]:
    """The four checkouts from ``source``: folders named after them, or ``NAME-r24.10.tar.gz``
    archives unpacked into ``into``."""
    found, absent = {}, []
    for name in SOURCES:
        folder, archive = source / name, source / f"{name}-{TRITON_RELEASE}.tar.gz"
        if (folder / "CMakeLists.txt").is_file():
            found[name] = folder
        elif archive.is_file():
            target = into / name
            target.mkdir(parents=True)
            try:
                with tarfile.open(archive) as tar:
                    if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.8-3.11 security releases
                        tar.extractall(target, filter="data")
                    else:
                        tar.extractall(target)
            except (tarfile.TarError, OSError) as e:
                raise BackendBuildError(f"cannot unpack {archive}: {e}") from e
            found[name] = target
        else:
            absent.append(name)
    if absent:
        raise BackendBuildError(
            f"{source} lacks {', '.join(absent)}: give --source a folder with core, common, backend and pytorch_backend "
            f"(checkouts of Triton {TRITON_RELEASE} or their {TRITON_RELEASE}.tar.gz archives)"
        )
    return found


def cmake_arguments(sources: dict[str, Path], torch_build: TorchBuild) -> list[str]:
    """The CMake cache entries of an offline, CPU-only build against ``torch_build``."""
    abi = int(torch_build.cxx11_abi)
    torch_lib = torch_build.root / "lib"
    includes = f"{torch_build.root / 'include'};{torch_build.root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}"
    args = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        f"-DFETCHCONTENT_SOURCE_DIR_GOOGLETEST={GOOGLETEST_SOURCE}",
        "-DTRITON_ENABLE_GPU=OFF",
        "-DTRITON_ENABLE_NVTX=OFF",
        "-DTRITON_PYTORCH_ENABLE_TORCHVISION=OFF",
        f"-DTRITON_PYTORCH_INCLUDE_PATHS={includes}",
        f"-DTRITON_PYTORCH_LIB_PATHS={torch_lib}",
        f"-DCMAKE_CXX_FLAGS=-D_GLIBCXX_USE_CXX11_ABI={abi}",
        # torch's libraries are found where this torch is installed, wherever the backend is loaded from.
        f"-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath,{torch_lib}",
        # FindPython misses the headers of some interpreters (pyenv): name them.
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DPython3_INCLUDE_DIR={sysconfig.get_path('include')}",
    ]
    for name, fetch_name in SOURCES.items():
        if fetch_name is not None:
            args.append(f"-DFETCHCONTENT_SOURCE_DIR_{fetch_name.upper()}={sources[name]}")
    return args


def _run(argv: list[str], cwd: Path, log_path: Path, what: str) -> None:
    """Run one build step, its output appended to ``log_path``; a failure names the log's last line."""
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        code = subprocess.call(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if code != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        last = (errors or lines or ["(no output)"])[0 if errors else -1].strip()
        raise BackendBuildError(f"{what} failed (exit {code}): {last} — full log: {log_path}")


def build_pytorch_backend(
    source: Path | None = None,
    jobs: int | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> BuildResult:
    """Build ``libtriton_pytorch.so`` against the installed torch into the user cache, or reuse
    the cached build (unless ``force``).

    ``source`` holds the four checkouts or their archives (default: ``shared/vendor/triton-r24.10``
    found from the working directory up). The build runs in a temporary folder and its result is
    renamed into the cache at the end, so the cache never holds a half-built backend. A failed
    build keeps its log, named in the error.
    """
    started = time.monotonic()
    torch_build = installed_torch()
    target = backend_dir(torch_build)
    if not force and (target / LIBRARY).is_file():
        return BuildResult(target, True, time.monotonic() - started)
    if source is None:
        source = find_vendor()
        if source is None:
            raise BackendBuildError(
                f"no Triton {TRITON_RELEASE} sources: {VENDOR_DIR} is not in this folder or a parent; "
                "give --source DIR (checkouts or archives of core, common, backend and pytorch_backend)"
            )
    elif not Path(source).is_dir():
        raise BackendBuildError(f"--source {source} is not a folder; give the folder with core, common, backend and pytorch_backend")
    check_tools()
    cache = target.parent.parent
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{torch_build.key}-", dir=cache))
    log_path = cache / f"{torch_build.key}.build.log"
    log_path.write_text("")
    try:
        sources = gather_sources(Path(source), work / "src")
        build = work / "build"
        build.mkdir()
        progress(f"configuring against torch {torch_build.version} (cxx11 ABI {int(torch_build.cxx11_abi)}), log: {log_path}")
        _run(["cmake", str(sources["pytorch_backend"]), *cmake_arguments(sources, torch_build)], build, log_path, "cmake configure")
        progress(f"compiling with {jobs or os.cpu_count() or 1} jobs (a few minutes)")
        _run(["cmake", "--build", ".", "--target", "triton-pytorch-backend", "-j", str(jobs or os.cpu_count() or 1)], build, log_path, "compiling")
        built = build / LIBRARY
        if not built.is_file():
            raise BackendBuildError(f"the build made no {LIBRARY} — full log: {log_path}")
        staged = work / "backend" / "pytorch"
        staged.mkdir(parents=True)
        shutil.copy2(built, staged / LIBRARY)
        (staged / "BUILD_INFO").write_text(
            f"triton {TRITON_RELEASE}\ntorch {torch_build.version}\ncxx11_abi {int(torch_build.cxx11_abi)}\ntorch_root {torch_build.root}\n"
        )
        if target.parent.exists():
            shutil.rmtree(target.parent)
        try:
            os.replace(staged.parent, target.parent)
        except OSError:
            if not (target / LIBRARY).is_file():  # not another build that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log_path.unlink(missing_ok=True)
    return BuildResult(target, False, time.monotonic() - started)
