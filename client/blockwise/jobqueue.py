"""Dask workers as batch jobs (``--cluster slurm|pbs|lsf|sge``, dask-jobqueue): the cluster
started from the options and dask's config, scaled adaptively between one job and
``--max-jobs``, a job that ends (walltime, preemption, ``scancel``) replaced by a new one whose
workers redo its tasks, and a submission the batch system refuses said in one line."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from shutil import which
from typing import Any

from ..errors import ClientError
from ..jobqueue_options import check_cluster_options, cluster_class

__all__ = ["JobqueueError", "BatchCluster", "jobqueue_cluster"]

_POLL = 0.25  # seconds between looks at a cluster waiting for its first worker


class JobqueueError(ClientError):
    """The batch system cannot be reached or refuses the worker jobs."""


@dataclass
class BatchCluster:
    """A running dask-jobqueue ``cluster`` of ``kind``, and the reasons its job submissions failed."""

    kind: str
    cluster: Any
    failures: list[str] = field(default_factory=list)

    def wait_for_first_worker(self, client: Any) -> None:
        """Wait, without a bound (a busy queue holds jobs for hours; Ctrl-C stops it), until a
        worker job has started; a job the batch system refused stops the wait with its reason.

        Raises
        ------
        JobqueueError
            Submitting a worker job failed.
        """
        while not client.nthreads():
            if self.failures:
                raise JobqueueError(f"--cluster {self.kind}: the batch system refused the worker job: {self.failures[0]}")
            time.sleep(_POLL)


@contextlib.contextmanager
def jobqueue_cluster(kind: str, options: Mapping[str, Any], max_jobs: int) -> Iterator[BatchCluster]:
    """A dask-jobqueue cluster of ``kind`` whose jobs run ``sys.executable``'s Python (unless the
    config or ``options`` name one), adapting between 1 and ``max_jobs`` jobs; closed on exit
    (its jobs cancelled).

    Raises
    ------
    JobqueueError
        The batch system's submit command is not here, or the cluster cannot start (cores or
        memory per job not given, a bad value).
    """
    import dask
    from distributed.deploy import Adaptive

    check_cluster_options(kind, options)
    cls = cluster_class(kind)
    submit = cls.job_cls.submit_command
    if which(submit) is None:
        raise JobqueueError(f"--cluster {kind} submits worker jobs with {submit}, which is not on PATH here: "
                            "run on the cluster's login node, or pick the --cluster it runs")
    kwargs = dict(options)
    if dask.config.get(f"jobqueue.{kind}.python", None) is None:
        kwargs.setdefault("python", sys.executable)  # the workers import skoots_client from this Python
    failures: list[str] = []
    try:
        cluster = cls(job_cls=_recording(cls.job_cls, failures), **kwargs)
    except (ValueError, TypeError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "cores and memory" in text:
            text = "say each job's cores and memory (--cluster-option cores=4 --cluster-option memory=16GB)"
        raise JobqueueError(f"--cluster {kind}: {text}; or set it in jobqueue.{kind} of ~/.config/dask/jobqueue.yaml") from e
    try:
        cluster.adapt(Adaptive=_replacing(Adaptive), minimum_jobs=1, maximum_jobs=max_jobs)
        yield BatchCluster(kind, cluster, failures)
    finally:
        cluster.close()


def _recording(job_cls: type, failures: list[str]) -> type:
    """``job_cls`` whose failed submission adds its reason (the submit command's first line of
    stderr) to ``failures`` and leaves the job as if it waited in the queue: dask-jobqueue would
    log the failure's traceback and the run would wait forever; `BatchCluster` says it in one line."""
    from distributed.core import Status

    class Recording(job_cls):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as e:  # noqa: BLE001 - the batch system's refusal, whatever its form
                text = str(e)
                lines = [line.strip() for line in text[text.find("stderr:") + 7:].splitlines() if line.strip()] if "stderr:" in text else []
                failures.append(lines[0] if lines else text.strip().splitlines()[0] if text.strip() else type(e).__name__)
                self.status = Status.running  # no job id: closing it cancels nothing

    Recording.__name__ = Recording.__qualname__ = job_cls.__name__
    return Recording


def _replacing(adaptive: type) -> type:
    """Dask's ``Adaptive`` that also replaces a job of several worker processes once all of them
    are gone. Dask forgets a dead job of one worker (after ``lost-worker-timeout``) and the
    adaptive loop submits its replacement; a job of several is never forgotten, since its
    workers' names (``job-0``, ``job-1``) are not the job's, and the run would wait forever."""

    class Replacing(adaptive):
        seen: set[str]

        async def recommendations(self, target: int) -> dict[str, Any]:
            cluster = self.cluster
            self.seen = getattr(self, "seen", set())
            names = {info.get("name") for info in cluster.scheduler_info.get("workers", {}).values()}
            for job, spec in list(cluster.worker_spec.items()):
                if "group" not in spec or job not in cluster.workers:
                    continue
                if any(f"{job}{suffix}" in names for suffix in spec["group"]):
                    self.seen.add(job)
                elif job in self.seen:  # its workers came and all left: the job ended
                    self.seen.discard(job)
                    await cluster.workers.pop(job).close()  # cancels what is left of it; the base class submits a new one
            return dict(await super().recommendations(target))

    return Replacing
