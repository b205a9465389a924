"""A model saved by a newer torch than the one serving it: one readable line, from ``skoots
serve`` before it starts a server, and from the Python-backend model in the server's log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skoots_export.contract.wire import config_from_text, config_to_text
from skoots_export.errors import ServerError
from skoots_export.torch_compat import check_repository, release, too_new_problem

SKOOTS = str(Path(sys.executable).parent / "skoots")
NEWER = "99.1.0"


@pytest.mark.parametrize(
    "saved,running,refused",
    [("2.13.0", "2.13.0+cpu", False), ("2.13.1", "2.13.0", False), ("2.12.0+cu121", "2.13.0", False),
     ("2.14.0", "2.13.0+cpu", True), ("3.0.0.dev20270101", "2.13.0", True), ("unknown", "2.13.0", False)],
)
def test_only_a_newer_major_minor_release_is_refused(saved: str, running: str, refused: bool) -> None:
    assert (too_new_problem("m", saved, running) is not None) == refused


def test_release_reads_major_minor() -> None:
    assert release("2.13.0+cpu") == (2, 13) and release(" 10.2a0") == (10, 2)
    with pytest.raises(ValueError, match="'nightly' is not a torch version"):
        release("nightly")


@pytest.fixture()
def newer_torch_repository(tmp_path: Path, e2e_repository: Path) -> Path:
    """The lively Python-backend model, its config claiming torch 99.1.0 saved it."""
    repository = tmp_path / "repository"
    shutil.copytree(e2e_repository / "skoots", repository / "skoots")
    config = config_from_text((repository / "skoots" / "config.pbtxt").read_text())
    assert config.parameters["torch_version"].string_value == str(torch.__version__), "export records its torch"
    config.parameters["torch_version"].string_value = NEWER
    (repository / "skoots" / "config.pbtxt").write_text(config_to_text(config))
    return repository


PROBLEM = (
    rf"model 'skoots' was exported with torch {re.escape(NEWER)}, newer than the torch {re.escape(str(torch.__version__))} serving it; "
    r"TorchScript loads only in the release that saved it or a newer one — use torch 99\.1 or newer to serve it, or export it with torch"
)


def test_serve_refuses_it_in_one_line(newer_torch_repository: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    assert re.match(PROBLEM, check_repository(newer_torch_repository, ("skoots",)) or "")
    result = subprocess.run([SKOOTS, "serve", str(newer_torch_repository)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.match("error: " + PROBLEM, lines[0]), result.stderr


def test_the_python_backend_model_refuses_it_in_the_server_log(newer_torch_repository: Path) -> None:
    """What a server not started by ``skoots serve`` shows: the model's own check, at load."""
    from skoots_export.server import ServerConfig, TritonServer, find_binary

    try:
        server = TritonServer(ServerConfig(repository=newer_torch_repository), find_binary())
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    with pytest.raises(ServerError, match="tritonserver exited with code") as refused:
        server.start(timeout=120)
    assert [line for line in server.logs if re.search(PROBLEM, line)], "\n".join(server.logs)
    assert re.search(r"while starting: failed to load 'skoots' version 1: Internal: RuntimeError: " + PROBLEM + r" \S+$", str(refused.value))
