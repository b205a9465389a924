"""Can this environment run the Python-backend model? Checked before a server reports READY.

The wheel's ``triton_python_backend_stub`` takes its site-packages from the first ``python3`` on
the server's PATH and works with NumPy 1.x only: with NumPy 2 there a model loads READY and
every answer has the right shapes and zero bytes. So the Python that the stub will use is asked,
in a child process, for its NumPy version and for the packages ``model.py`` imports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .contract.wire import config_from_text

__all__ = ["MODEL_IMPORTS", "FIX", "numpy_problem", "environment_problem", "stub_python", "serves_python_models"]

# What model.py (triton_python_model.py) imports; openvino is optional there.
MODEL_IMPORTS = ("numpy", "torch")

_PROBE = """
import importlib.util, json, sys
found = {name: importlib.util.find_spec(name) is not None for name in sys.argv[1:]}
numpy = None
if found.get("numpy"):
    import numpy
    numpy = numpy.__version__
print(json.dumps({"found": found, "numpy": numpy}))
"""

FIX = "pip install 'numpy<2' there (the server extra pins it; an extra installed later may have upgraded it)"


def numpy_problem(version: str, python: str | Path = "python3") -> str | None:
    """Why NumPy ``version`` cannot serve the Python-backend model, or None."""
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) >= 2:
        return (f"NumPy {version} in the server's Python ({python}): the Triton Python-backend stub works with NumPy 1.x only "
                f"(models load READY and answer with empty outputs) — {FIX}")
    return None


def environment_problem(python: str | Path) -> str | None:
    """What keeps ``python`` (the interpreter the stub will take its packages from) from running
    the Python-backend model, as one line naming the fix, or None."""
    try:
        done = subprocess.run([str(python), "-c", _PROBE, *MODEL_IMPORTS], capture_output=True, text=True, timeout=60)
        report = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return f"cannot run the server's Python {python} to check its packages ({type(e).__name__}: {e}) — put a working python3 first on PATH"
    problems = [numpy_problem(report["numpy"], python) if report["numpy"] else None]
    missing = [name for name, found in report["found"].items() if not found]
    if missing:
        problems.append(f"the server's Python ({python}) lacks {', '.join(missing)}, which the Python-backend model imports — "
                        f"install skoots-triton[server] into that environment, or run skoots serve from the one that has it")
    return "; ".join(p for p in problems if p) or None


def stub_python(path: str) -> Path | None:
    """The ``python3`` the stub will run: the first on ``path`` (the server's PATH)."""
    found = shutil.which("python3", path=path)
    return Path(found) if found else None


def serves_python_models(repository: Path, models: tuple[str, ...] = ()) -> bool:
    """Whether ``repository`` (only ``models`` when given) holds a Python-backend model."""
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        if models and config_path.parent.name not in models:
            continue
        try:
            config = config_from_text(config_path.read_text())
        except Exception:  # noqa: BLE001 - a broken config is the server's to report
            continue
        if config.backend == "python":
            return True
    return False
