"""Blockwise from a plain script without ``if __name__ == "__main__":``: one line naming the
guard, before any worker starts, instead of pages of multiprocessing tracebacks ("Nanny failed
to start") from workers that re-ran the script. Real scripts run by the venv's Python."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import tifffile

GUARD = '`if __name__ == "__main__":`'


def run_script(folder: Path, body: str) -> subprocess.CompletedProcess:
    script = folder / "segment_it.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=folder)


def test_a_script_without_the_main_guard_gets_one_line_naming_it(tmp_path: Path, e2e_repository: Path) -> None:
    tifffile.imwrite(tmp_path / "volume.tif", np.random.default_rng(0).integers(0, 2**16, (8, 32, 32), dtype=np.uint16))
    done = run_script(tmp_path, f"""
        import skoots_client
        skoots_client.segment("volume.tif", repository={str(e2e_repository)!r}, blockwise=True,
                              out="labels.ome.zarr", workers=1, quiet=True)
        print("finished")
    """)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    # An uncaught exception in a plain script: Python's own few-line traceback of the call, the
    # message its last line and the message's only line; no worker ever started.
    assert lines[-1].startswith("skoots_client.blockwise.cluster.ClusterError: blockwise starts worker processes")
    assert GUARD in lines[-1] and "segment_it.py" in lines[-1] and "scheduler=" in lines[-1]
    assert done.stderr.count("Traceback") == 1 and len(lines) < 40, done.stderr  # the call's frames, not pages
    for spam in ("Nanny failed", "multiprocessing", "bootstrapping", "distributed"):
        assert spam not in done.stderr.replace("skoots_client.blockwise", ""), done.stderr
    assert "finished" not in done.stdout
    assert not (tmp_path / "labels.ome.zarr").exists() and not list(tmp_path.glob("*.work"))


def test_the_same_call_under_the_guard_passes_the_check(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        from skoots_client.blockwise.cluster import check_main_guard

        def main():
            check_main_guard()
            print("ok")

        if __name__ == "__main__":
            main()
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_check_fires_through_a_function_called_at_top_level(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        from skoots_client.blockwise.cluster import check_main_guard

        def main():
            check_main_guard()

        main()
    """)
    assert done.returncode != 0 and GUARD in done.stderr.strip().splitlines()[-1], done.stderr
