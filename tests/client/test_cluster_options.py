"""``--cluster``, ``--cluster-option`` and ``--max-jobs``: the values read as a lab writes them,
and every mistake refused in one line before anything is read or submitted (the runs on a real
SLURM are tests/functional/test_cluster_slurm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skoots_client.errors import InputError
from skoots_client.jobqueue_options import MissingJobqueue, check_cluster_options, cluster_class, parse_cluster_options
from skoots_client.plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec, check_options

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def test_values_are_read_as_numbers_text_bools_and_lists() -> None:
    options = parse_cluster_options([
        "cores=4", "memory=16GB", "walltime=01:00:00", "queue=gpu", "nanny=false", "death_timeout=1.5",
        "job_extra_directives=--gres=gpu:1", "job-extra-directives=-C v100", "worker_extra_args=[--lifetime, 55m]",
        "scheduler_options={host: 127.0.0.1}",
    ])
    assert options == {
        "cores": 4, "memory": "16GB", "walltime": "01:00:00", "queue": "gpu", "nanny": False, "death_timeout": 1.5,
        "job_extra_directives": ["--gres=gpu:1", "-C v100"], "worker_extra_args": ["--lifetime", "55m"],
        "scheduler_options": {"host": "127.0.0.1"},
    }


@pytest.mark.parametrize("text, match", [
    ("walltime", r"--cluster-option 'walltime': give KEY=VALUE, e\.g\. walltime=01:00:00"),
    ("=4", r"give KEY=VALUE"),
    ("job_extra_directives=[a, b", r"--cluster-option job_extra_directives=\[a, b: not a YAML list or mapping"),
])
def test_a_malformed_option_is_one_line(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_cluster_options([text])


def test_an_unknown_key_names_the_valid_ones() -> None:
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(InputError, match=r"^--cluster-option wallclock: not an option of dask-jobqueue's SLURMCluster; "
                                         r"valid: account, cores, .*walltime") as raised:
        check_cluster_options("slurm", {"walltime": "1:00:00", "wallclock": "1:00:00"})
    assert "\n" not in str(raised.value)
    for kind in ("slurm", "pbs", "lsf", "sge"):
        check_cluster_options(kind, {"queue": "q", "walltime": "01:00:00", "memory": "4GB", "cores": 2, "processes": 1,
                                     "job_extra_directives": ["-x"], "interface": "lo"})


def test_an_unknown_cluster_names_the_four() -> None:
    with pytest.raises(InputError, match=r"^--cluster kubernetes: choose one of slurm, pbs, lsf, sge \(another cluster: start it and pass --scheduler\)"):
        cluster_class("kubernetes")


def test_without_dask_jobqueue_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # what an environment without it imports
    with pytest.raises(MissingJobqueue, match=r"^--cluster slurm starts its workers with dask-jobqueue, which is not installed: "
                                              r"pip install 'skoots-triton\[cluster\]'$"):
        check_cluster_options("slurm", {})


@pytest.mark.parametrize("cluster, match", [
    (ClusterSpec(cluster="slurm", scheduler="tcp://127.0.0.1:9"), r"--cluster slurm starts its own scheduler and --scheduler joins a running one"),
    (ClusterSpec(cluster="slurm", workers=4), r"--workers sizes a local cluster: with --cluster, a job's workers are --cluster-option processes=N"),
    (ClusterSpec(cluster="slurm", max_jobs=0), r"--max-jobs 0: give at least 1"),
    (ClusterSpec(max_jobs=4), r"--cluster-option and --max-jobs size the worker jobs of --cluster"),
    (ClusterSpec(blockwise=True, cluster_options={"queue": "q"}), r"--cluster-option and --max-jobs size the worker jobs of --cluster"),
    (ClusterSpec(cluster="torque"), r"--cluster torque: choose one of slurm, pbs, lsf, sge"),
])
def test_cluster_mistakes_are_refused_before_anything_is_read(cluster: ClusterSpec, match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_options(InputSpec(Path("/nonexistent/v.tif")), OutputSpec(out=Path("l.zarr")), ModelSpec(), ResumeSpec(), cluster)


def test_the_command_line_says_a_cluster_mistake_in_one_line(tmp_path: Path) -> None:
    """Nothing is read, nothing submitted, nothing written: the volume does not even exist."""
    base = [CLIENT, "segment", str(tmp_path / "v.tif"), "--out", str(tmp_path / "l.zarr"), "--cluster", "slurm"]
    cases = [
        (["--scheduler", "tcp://127.0.0.1:9"], "error: --cluster slurm starts its own scheduler and --scheduler joins a running one: give one of them"),
        (["--cluster-option", "qeueu=gpu"], "error: --cluster-option qeueu: not an option of dask-jobqueue's SLURMCluster; valid: "),
        (["--cluster-option", "walltime"], "error: --cluster-option 'walltime': give KEY=VALUE"),
    ]
    for extra, said in cases:
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_the_submit_command_the_error_says_where_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    from skoots_client.blockwise.jobqueue import JobqueueError, jobqueue_cluster

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here: not a login node
    with pytest.raises(JobqueueError, match=r"^--cluster slurm submits worker jobs with sbatch, which is not on PATH here: "
                                            r"run on the cluster's login node"), jobqueue_cluster("slurm", {"cores": 1, "memory": "1GB"}, 1):
        pass


def test_a_job_without_cores_or_memory_is_one_line() -> None:
    """Neither the options nor dask's config say them: dask-jobqueue's error, in our terms."""
    import shutil

    pytest.importorskip("dask_jobqueue")
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not installed (slurm-wlm)")
    import dask

    from skoots_client.blockwise.jobqueue import JobqueueError, jobqueue_cluster

    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}), pytest.raises(
            JobqueueError, match=r"^--cluster slurm: say each job's cores and memory \(--cluster-option cores=4 --cluster-option memory=16GB\); "
                                 r"or set it in jobqueue\.slurm of ~/\.config/dask/jobqueue\.yaml$"), jobqueue_cluster("slurm", {}, 1):
        pass


def test_the_engine_refuses_a_cluster_and_a_scheduler_together() -> None:
    """The plan refuses the pair first; a job built in code meets the same line at the cluster."""
    from skoots_client.blockwise.cluster import ClusterError, dask_client

    with pytest.raises(ClusterError, match=r"^--cluster slurm starts its own scheduler and --scheduler joins a running one"), \
            dask_client("tcp://127.0.0.1:9", cluster="slurm", cluster_options={"cores": 1, "memory": "1GB"}):
        pass
