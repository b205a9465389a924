"""``skoots serve`` refuses an environment that cannot run the Python-backend model: NumPy 2
(the wheel's stub then answers every request with empty outputs) or a package model.py imports
missing. Checked in a real child Python, the one the stub would use."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from skoots_export.errors import ServerError
from skoots_export.serve_environment import environment_problem, numpy_problem, serves_python_models, stub_python


def test_numpy_2_is_refused_in_one_line_naming_the_fix() -> None:
    assert numpy_problem("1.26.4") is None
    problem = numpy_problem("2.4.6", "/env/bin/python3")
    assert problem == (
        "NumPy 2.4.6 in the server's Python (/env/bin/python3): the Triton Python-backend stub works with NumPy 1.x only "
        "(models load READY and answer with empty outputs) — pip install 'numpy<2' there (the server extra pins it; "
        "an extra installed later may have upgraded it)"
    )


def test_this_environment_serves() -> None:
    assert environment_problem(sys.executable) is None


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment without NumPy or torch (no pip: made in well under a second)."""
    root = tmp_path_factory.mktemp("bare") / "env"
    venv.EnvBuilder(with_pip=False).create(root)
    return root / "bin" / "python3"


def test_an_environment_without_the_models_packages_is_refused(bare_python: Path) -> None:
    assert environment_problem(bare_python) == (
        f"the server's Python ({bare_python}) lacks numpy, torch, which the Python-backend model imports — "
        "install skoots-triton[server] into that environment, or run skoots serve from the one that has it"
    )


def test_a_numpy_2_in_the_servers_python_is_found(bare_python: Path, tmp_path: Path) -> None:
    """A package that reports NumPy 2's version, in a real child Python: what the probe reads.
    (A real NumPy 2 would need a download; the probe reads ``numpy.__version__`` either way.)"""
    site = Path(subprocess.run([str(bare_python), "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name in ("numpy", "torch"):
        (site / name).mkdir(exist_ok=True)
        (site / name / "__init__.py").write_text('__version__ = "2.4.6"\n')
    try:
        assert environment_problem(bare_python) == numpy_problem("2.4.6", bare_python)
    finally:
        for name in ("numpy", "torch"):
            (site / name / "__init__.py").unlink()
            (site / name).rmdir()


def test_the_server_refuses_to_start_on_such_an_environment(e2e_repository: Path, bare_python: Path, monkeypatch) -> None:
    """The server's own check, before it launches: the stub's Python is the first python3 on the
    PATH the server gets, which puts this interpreter's folder first — here a bare one's."""
    from skoots_export.server import ServerConfig, TritonServer, find_binary

    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    assert serves_python_models(e2e_repository) and not serves_python_models(e2e_repository, ("other",))
    monkeypatch.setattr(sys, "executable", str(bare_python))
    server = TritonServer(ServerConfig(repository=e2e_repository), binary)
    assert stub_python(server.environment()["PATH"]) == bare_python
    with pytest.raises(ServerError, match=r"^the server's Python \(.+\) lacks numpy, torch, which the Python-backend model imports"):
        server.start(timeout=30)
    assert server.poll() is None and server.pid is None  # nothing was launched
