"""What the benchmark scripts share: paths to the test helpers and upstream, model repositories
exported from the tests' checkpoints, test volumes, and a child's peak memory.

The benchmarks reuse the tests' checkpoint builder (``tests/checkpoints.py``), volumes
(``blobs_volume``) and upstream replay (``tests/upstream_seed.py``); upstream skoots/bism are
imported from ``.upstream`` only here and in tests, never by the project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT / "tests" / "functional"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
if (ROOT / ".upstream").is_dir() and str(ROOT / ".upstream") not in sys.path:
    sys.path.append(str(ROOT / ".upstream"))

# A mid-size UNeXT (the default cfg is 32-64-128-64-32, kernel 7: ~10 s per 300x300x20 crop on
# two CPU cores): heavy enough that inference dominates a run, light enough to run in minutes.
MID = {"DIMS": [8, 16, 32, 16, 8], "DEPTHS": [1, 1, 1, 1, 1], "KERNEL_SIZE": 3, "OUT_CHANNELS": 8}


def export_lively(directory: Path, model: dict[str, Any] | None = None, *, max_batch_size: int = 4, **export: Any) -> Path:
    """A model repository holding the tests' "lively" checkpoint (many instances) as a
    Python-backend model named ``skoots``; ``export`` overrides the seed's constants."""
    from checkpoints import TINY, skoots_cfg, write_checkpoint

    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = write_checkpoint(directory / "lively.trch", skoots_cfg(**(model or TINY)), make_lively=True)
    repository = directory / "model_repository"
    export_checkpoint(checkpoint, repository=repository, backend="python", device=Device.CPU, max_batch_size=max_batch_size, **export)
    return repository


def blobs(shape_zxy: Sequence[int], seed: int = 0):
    """The tests' volume: bright smooth blobs on a dim background, uint16 ``[Z, X, Y]``."""
    from test_segment_e2e import blobs_volume

    return blobs_volume(tuple(shape_zxy), seed=seed)


def ideal_outputs(shape_xyz: Sequence[int], count: int, scaling: Sequence[float], radius: float = 4.0, seed: int = 0):
    """What a perfect network would answer for ``count`` random tubes (tests/perfect_network.py)."""
    from perfect_network import ideal_outputs as answers

    return answers(shape_xyz, count, scaling, radius, seed)


def triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise SystemExit(f"error: {text!r}: give three integers Z,X,Y")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class ChildRun:
    """A finished child process: wall seconds, peak resident set (bytes), CPU seconds, stdout."""

    seconds: float
    peak_rss: int
    cpu_seconds: float
    stdout: str


def run_child(argv: Sequence[str], env: dict[str, str] | None = None, on_start: Callable[[int], None] | None = None) -> ChildRun:
    """Run ``argv`` to completion and measure it; exits with its stderr if it fails.

    ``on_start(pid)`` is called once it runs. The figures are that one child's (``wait4``'s
    rusage; Linux reports the peak in kilobytes), so other children of this process do not
    count, as they would in ``RUSAGE_CHILDREN``.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(argv), env=env or dict(os.environ), stdout=out, stderr=err, text=True)
        if on_start:
            on_start(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"error: {' '.join(map(str, argv))} failed ({process.returncode}): {err.read().strip()[-2000:]}")
        return ChildRun(seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, out.read())


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001 - no CuPy, no driver: no GPU
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, Python {sys.version.split()[0]}"

