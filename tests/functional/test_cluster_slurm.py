"""``segment --cluster slurm`` on a real one-node SLURM on 127.0.0.1 (slurm_support.py): the
workers run as batch jobs submitted through sbatch, a job cancelled mid-run is replaced and its
blocks redone, and the labels stay bitwise equal to the in-memory run's."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from slurm_support import Slurm, slurm_cluster  # noqa: F401 - a fixture, named slurm
from test_segment_e2e import CLIENT, volume_and_labels

import skoots_client

SHAPE_ZXY = (20, 72, 60)  # 4 blocks of the e2e model with --block 40,40,16 (as test_blockwise_faults.py)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    return volume_and_labels(tmp_path_factory.mktemp("slurm-volume"), e2e_repository, SHAPE_ZXY, seed=5)


def segment(slurm: Slurm, volume: Path, out: Path, repository: Path, *options: str) -> subprocess.Popen:
    """The client with ``--cluster slurm``: workers on loopback, their job logs in the SLURM folder."""
    argv = [CLIENT, "segment", str(volume), "--out", str(out), "-r", str(repository), "--device", "cpu", "--block", "40,40,16",
            "--batch", "1", "--cluster", "slurm", "--cluster-option", "interface=lo", "--cluster-option", "walltime=00:10:00",
            "--cluster-option", f"log_directory={slurm.folder / 'jobs'}", *options]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=slurm.env, cwd=out.parent)


@pytest.mark.slow
def test_workers_are_slurm_jobs_and_the_labels_equal_in_memory(slurm: Slurm, volume, e2e_repository: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the Python API (the command line's flags are the other tests')."""
    path, expected = volume
    before = set(slurm.submitted())
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    result = skoots_client.segment(
        path, out=tmp_path / "o.tif", repository=e2e_repository, device="cpu", block=(16, 40, 40), batch=1, quiet=True,
        cluster="slurm", max_jobs=2, cluster_options={"cores": 1, "memory": "1GB", "interface": "lo", "walltime": "00:10:00",
                                                      "log_directory": str(slurm.folder / "jobs")},
    )
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)
    jobs = set(slurm.submitted()) - before
    assert jobs, slurm.tail()  # the workers came from sbatch
    logs = {p.name for p in (slurm.folder / "jobs").iterdir()}
    assert any(f"dask-worker-{job}.err" in logs for job in jobs), logs  # and ran as those jobs
    assert "blockwise: 4 blocks" in result.summary
    assert not slurm.jobs("PD,R")  # cancelled at the end


@pytest.mark.slow
def test_a_cancelled_worker_job_is_replaced_and_the_labels_do_not_change(slurm: Slurm, volume, e2e_repository: Path,
                                                                          tmp_path: Path) -> None:
    """One job of two worker processes (the case dask-jobqueue alone never replaces), scancel'ed
    once it has finished a block: a new job is submitted and redoes what was lost."""
    path, expected = volume
    before = set(slurm.submitted())
    out = tmp_path / "o.tif"
    client = segment(slurm, path, out, e2e_repository, "--cluster-option", "cores=2", "--cluster-option", "processes=2",
                     "--cluster-option", "memory=2GB", "--max-jobs", "1")
    deadline = time.monotonic() + 240
    while not any((tmp_path / "o.tif.work").glob("done/infer/*")):
        assert client.poll() is None, client.communicate()
        assert time.monotonic() < deadline, "no block was ever finished"
        time.sleep(0.05)
    first = slurm.jobs("PD,R")
    assert len(first) == 1, first
    subprocess.run(["scancel", first[0]], env=slurm.env, check=True, timeout=10)
    stdout, stderr = client.communicate(timeout=300)
    assert client.returncode == 0, stderr + slurm.tail()
    assert np.array_equal(tifffile.imread(out), expected)
    replacements = set(slurm.submitted()) - before - set(first)
    assert replacements, slurm.tail()
    assert "lost 2 workers" in stdout, stdout


@pytest.mark.slow
def test_a_job_the_batch_system_refuses_is_one_line(slurm: Slurm, volume, e2e_repository: Path, tmp_path: Path) -> None:
    path, _ = volume
    client = segment(slurm, path, tmp_path / "o.tif", e2e_repository, "--cluster-option", "cores=1", "--cluster-option", "memory=1GB",
                     "--cluster-option", "queue=nosuchqueue")
    stdout, stderr = client.communicate(timeout=120)
    assert client.returncode == 2
    said, error = stderr.splitlines()  # the note that the run waits for its first job, then the error
    assert said.endswith("waiting for the first to start"), stderr
    assert error.startswith("error: --cluster slurm: the batch system refused the worker job: sbatch: error: invalid partition"), stderr
    assert not (tmp_path / "o.tif").exists()
