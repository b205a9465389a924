"""Security: gRPC over TLS against a real ``tritonserver --grpc-use-ssl`` with certificates
this test makes (openssl CLI), loopback by default, no shell, private temporary files.

Checkpoints that would run code when loaded are refused unless --trust-checkpoint:
tests/cli/test_export_cli.py::test_trust_checkpoint_is_the_only_way_to_run_pickled_code and the
'untrusted-pickle' case of its catalogue.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_segment_e2e import CLIENT, volume_and_labels
from test_serve import SKOOTS, wait_for_line

from skoots_export.contract.net import is_loopback
from skoots_export.server import ServerConfig, ServerTls, TritonServer, find_binary

OPENSSL = shutil.which("openssl")
ROOT = Path(__file__).parents[2]


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 it signed, a client certificate it signed, and
    an unrelated CA."""
    if OPENSSL is None:
        pytest.skip("no openssl CLI to make test certificates")
    folder = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=skoots test {ca}", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *ext, cwd=folder)
    return folder


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    return volume_and_labels(tmp_path_factory.mktemp("tls"), e2e_repository, (12, 40, 36), seed=4)


def segment(volume: Path, out: Path, url: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, "segment", str(volume), "--url", url, "--out", str(out), "--device", "cpu", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.slow
def test_skoots_serve_over_tls_and_segment_with_the_root_certificate(certs: Path, e2e_repository: Path, volume, tmp_path: Path) -> None:
    path, expected = volume
    serve = subprocess.Popen([SKOOTS, "serve", str(e2e_repository), "--ssl-cert", str(certs / "server.pem"), "--ssl-key", str(certs / "server.key")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_for_line(serve, "grpc ")
        url = line.split()[1]
        assert url.startswith("127.0.0.1:") and "(TLS)" in line and " http 127.0.0.1:" in line, line
        assert "--ssl --root-cert CA.pem" in wait_for_line(serve, "segment with:")

        ok = segment(path, tmp_path / "o.tif", url, "--ssl", "--root-cert", certs / "ca.pem")
        assert ok.returncode == 0, ok.stderr
        assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)

        errors = {
            "system roots": segment(path, tmp_path / "e.tif", url, "--ssl"),
            "another CA": segment(path, tmp_path / "e.tif", url, "--root-cert", certs / "other-ca.pem"),
            "plain text": segment(path, tmp_path / "e.tif", url),
        }
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    for how in ("system roots", "another CA"):
        assert re.fullmatch(
            rf"error: TLS: the certificate of {url} is not signed by a CA this client trusts \([a-z ]+\) — pass --root-cert with the CA that signed it",
            one_error_line(errors[how]),
        ), errors[how].stderr
    assert one_error_line(errors["plain text"]).endswith("if it serves TLS, pass --ssl and --root-cert")
    assert not (tmp_path / "e.tif").exists()


@pytest.mark.slow
def test_mutual_tls_needs_the_client_certificate_and_the_servers_private_files_are_0700(certs: Path, e2e_repository: Path, volume, tmp_path: Path) -> None:
    path, expected = volume
    config = ServerConfig(repository=e2e_repository, tls=ServerTls(certs / "server.pem", certs / "server.key", certs / "ca.pem"))
    with TritonServer(config, find_binary()) as server:
        private = server._workdir  # the backend folder laid out for the wheel's binary
        assert private is not None and stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.getuid()
        ca = ["--root-cert", certs / "ca.pem"]
        ok = segment(path, tmp_path / "o.tif", server.grpc_url, *ca, "--private-key", certs / "client.key", "--cert-chain", certs / "client.pem")
        without = segment(path, tmp_path / "e.tif", server.grpc_url, *ca)
    assert ok.returncode == 0, ok.stderr
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)
    assert one_error_line(without).endswith("if it requires client certificates, pass --private-key and --cert-chain")
    assert not private.exists(), "the server's private files are removed when it stops"


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["--private-key", "{certs}/client.key"], r"--private-key and --cert-chain come together"),
        (["--root-cert", "{certs}/missing.pem"], r"cannot read --root-cert \S+missing\.pem: No such file or directory"),
        (["--root-cert", "{certs}/server.ext"], r"--root-cert \S+server\.ext is not a PEM file"),
    ],
)
def test_client_tls_options_are_checked_before_connecting(args: list[str], pattern: str, certs: Path, volume, tmp_path: Path) -> None:
    result = segment(volume[0], tmp_path / "o.tif", "127.0.0.1:1", *[a.format(certs=certs) for a in args])
    assert re.search(pattern, one_error_line(result)), result.stderr


def test_tls_options_without_a_server_are_refused(certs: Path, e2e_repository: Path, volume, tmp_path: Path) -> None:
    result = subprocess.run([CLIENT, "segment", str(volume[0]), "-r", str(e2e_repository), "--out", str(tmp_path / "o.tif"), "--ssl"],
                            capture_output=True, text=True, timeout=120)
    assert "--ssl and its certificates are for servers: give --url" in one_error_line(result)


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["--ssl-cert", "{certs}/server.pem"], r"--ssl-cert and --ssl-key come together"),
        (["--ssl-cert", "{certs}/nope.pem", "--ssl-key", "{certs}/server.key"], r"cannot read --ssl-cert \S+nope\.pem"),
    ],
)
def test_serve_tls_options_are_checked(args: list[str], pattern: str, certs: Path, e2e_repository: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    result = subprocess.run([SKOOTS, "serve", str(e2e_repository), *[a.format(certs=certs) for a in args]], capture_output=True, text=True, timeout=120)
    assert re.search(pattern, one_error_line(result)), result.stderr


def test_serve_warns_before_binding_beyond_loopback(e2e_repository: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: the warning comes first, then
    binding fails — nothing is exposed by the test."""
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    result = subprocess.run([SKOOTS, "serve", str(e2e_repository), "--host", "192.0.2.1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "warning: binding 192.0.2.1: the server is reachable from other machines, unencrypted and without authentication (see --ssl-cert)",
        "error: cannot bind 192.0.2.1: Cannot assign requested address — give an address of this machine (--host)",
    ]


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("192.0.2.1", False), ("::", False), ("triton.example.org", False)])
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_with_tls_plain_text_endpoints_stay_on_loopback(e2e_repository: Path) -> None:
    assert ServerConfig(repository=e2e_repository).plain_host == "127.0.0.1"
    tls = ServerConfig(repository=e2e_repository, host="0.0.0.0", tls=ServerTls(Path("c"), Path("k")))
    assert tls.plain_host == "127.0.0.1", "HTTP and metrics carry no TLS: they never leave loopback"


def test_no_process_is_started_through_a_shell() -> None:
    """Processes are started from argv lists: no shell=True, os.system or os.popen anywhere."""
    offenders = []
    for path in [*(ROOT / "client").glob("*.py"), *(ROOT / "export").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "shell" and not (isinstance(node.value, ast.Constant) and node.value.value is False):
                offenders.append(f"{path.name}:{node.value.lineno} shell=")
            if isinstance(node, ast.Attribute) and node.attr in ("system", "popen") and getattr(node.value, "id", "") == "os":
                offenders.append(f"{path.name}:{node.lineno} os.{node.attr}")
    assert offenders == []


def test_a_server_binds_loopback_by_default(triton_server) -> None:
    assert {"--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1"} <= set(triton_server._process.args)


def test_staged_output_is_private_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from skoots_client import label_write

    seen = []
    real = tempfile.mkdtemp

    def spy(*args, **kwargs):  # records the mode of the staging folder the writer makes
        path = real(*args, **kwargs)
        seen.append(stat.S_IMODE(os.stat(path).st_mode))
        return path

    monkeypatch.setattr(label_write.tempfile, "mkdtemp", spy)
    label_write.write_labels(tmp_path / "o.tif", np.ones((4, 4, 4), np.uint8))
    assert seen == [0o700]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]
