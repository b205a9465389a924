"""Both commands as a user types them: ``--version``, malformed command lines, and what ``--url``
may say (schemes, Triton's HTTP or metrics port given for its gRPC port). Real console scripts
in subprocesses; a real tritonserver on 127.0.0.1 where a server is needed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from skoots_client.address import grpc_address
from skoots_client.errors import UrlError
from skoots_export.contract.console import version_text

BIN = Path(sys.executable).parent


def run(command: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def assert_one_line(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr matching ``pattern``, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


@pytest.mark.parametrize("command", ["skoots", "skoots-client"])
def test_version_on_both_commands(command: str) -> None:
    result = run(command, "--version")
    assert result.returncode == 0 and result.stderr == ""
    assert re.fullmatch(r"skoots-triton \d+\.\d+\S*( \(not installed\))?\n", result.stdout), result.stdout
    assert result.stdout.strip() == version_text()


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["export", "model.trch", "--crops", "8,8,8"], r"^error: No such option: --crops .*— see skoots export --help$"),
        (["export", "model.trch", "--device", "tpu"], r"^error: Invalid value for '--device': 'tpu' is not one of 'gpu', 'cpu' — see skoots export --help$"),
        (["export"], r"^error: Missing argument 'checkpoint' — see skoots export --help$"),
        (["serve", "--grpc-port", "eight"], r"^error: Invalid value for '--grpc-port': .* — see skoots serve --help$"),
        (["expor"], r"^error: No such command 'expor'.* — see skoots --help$"),
    ],
    ids=["unknown-option", "bad-choice", "missing-argument", "not-a-number", "unknown-command"],
)
def test_skoots_usage_errors_are_one_line(args: list[str], pattern: str, tmp_path: Path) -> None:
    assert_one_line(run("skoots", *args, cwd=tmp_path), pattern)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url,address,tls",
    [
        ("127.0.0.1:8001", "127.0.0.1:8001", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8001", False),
        ("grpc://triton.example.org:8001/", "triton.example.org:8001", False),
        ("GRPCS://[::1]:8001", "[::1]:8001", True),
        ("https://triton.example.org:443", "triton.example.org:443", True),
    ],
)
def test_a_scheme_is_stripped_and_a_tls_one_turns_tls_on(url: str, address: str, tls: bool) -> None:
    assert grpc_address(url) == (address, tls)


@pytest.mark.parametrize(
    "url,pattern",
    [
        ("ftp://127.0.0.1:8001", r"^--url ftp://127\.0\.0\.1:8001: Triton's gRPC client does not speak ftp:// — give HOST:PORT .*grpc://, http://, grpcs:// and https:// are accepted$"),
        ("http://127.0.0.1:8000/v2/models/skoots", r"gRPC has no paths — give HOST:PORT of Triton's gRPC port \(8001 by default\)$"),
        ("http://127.0.0.1", r"^--url http://127\.0\.0\.1: no valid port — give HOST:PORT"),
        ("grpc://127.0.0.1:80010", r"no valid port"),
        ("grpc://:8001", r"no valid port"),
    ],
)
def test_a_url_that_cannot_be_right_is_refused_with_its_reason(url: str, pattern: str) -> None:
    with pytest.raises(UrlError, match=pattern):
        grpc_address(url)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("url") / "v.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((12, 40, 36)) * 65535).astype(np.uint16))
    return path


def test_url_with_a_scheme_segments(triton_server, volume: Path, tmp_path: Path) -> None:
    result = run("skoots-client", "segment", volume, "--url", f"http://{triton_server.grpc_url}", "--out", tmp_path / "o.tif", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.tif").is_file() and " instances" in result.stdout


def test_a_refused_url_is_one_line_before_the_volume_is_read(tmp_path: Path) -> None:
    result = run("skoots-client", "segment", tmp_path / "missing.tif", "--url", "ftp://127.0.0.1:8001", cwd=tmp_path)
    assert_one_line(result, r"^error: --url ftp://127\.0\.0\.1:8001: Triton's gRPC client does not speak ftp://")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("service", ["HTTP", "metrics"])
def test_tritons_http_port_given_for_grpc_is_named(triton_server, volume: Path, tmp_path: Path, service: str) -> None:
    port = triton_server.http_port if service == "HTTP" else triton_server.metrics_port
    result = run("skoots-client", "segment", volume, "--url", f"127.0.0.1:{port}", "--out", tmp_path / "o.tif", "--device", "cpu")
    assert_one_line(
        result,
        rf"^error: 127\.0\.0\.1:{port} is Triton's {service} port, not its gRPC port — use the gRPC port in --url "
        r"\(8001 by default; skoots serve prints it on its grpc line\)$",
    )
    assert list(tmp_path.iterdir()) == []


def test_bench_reads_url_the_same_way(triton_server) -> None:
    assert_one_line(run("skoots-client", "bench", "--url", f"http://127.0.0.1:{triton_server.http_port}"), r"is Triton's HTTP port, not its gRPC port")
    assert_one_line(run("skoots-client", "bench", "--url", "ftp://127.0.0.1:1"), r"does not speak ftp://")
