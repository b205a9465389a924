"""Running one blockwise stage on the cluster: its tasks submitted at once, its progress drawn,
its results and the workers' peaks gathered; on a failure or a cancel, the tasks stopped before
anything is removed. And which blocks of a stage a resumed run can skip (their data checked)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..progress import Watch
from ..run_stats import RunStats
from . import stages
from .cluster import ClusterError
from .job import Job
from .store import BlockStore, Stage
from .worker import run_task

__all__ = ["StageRunner", "still_done"]


class StageRunner:
    """Submit one stage's tasks, draw its progress, gather results and worker peaks; with what
    every stage works on (the job, its work directory's store, the run's result)."""

    def __init__(self, client: Any, job: Job, store: BlockStore, result: RunStats, watch: Watch) -> None:
        self.client, self.job, self.store, self.result, self.watch = client, job, store, result, watch

    def run(self, name: str, calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]], total: int) -> dict[str, Any]:
        from distributed import KilledWorker, as_completed

        started = time.perf_counter()
        progress = self.watch.stage(name, f"{name} blocks")
        done = total - len(calls)
        progress(done, total)
        futures = {self.client.submit(run_task, fn, *args, key=_task_key(fn)): key for key, fn, args in calls}
        results: dict[str, Any] = {}
        try:
            for future, value in as_completed(futures, with_results=True):
                results[futures[future]] = value
                if isinstance(value, dict) and "rss" in value:
                    peaks = self.result.peaks
                    peaks[value["process"]] = max(peaks.get(value["process"], 0), value["rss"])
                done += 1
                progress(done, total)
        except KilledWorker as e:
            self.client.cancel(list(futures))
            raise ClusterError(
                f"Dask workers kept dying on {name} blocks ({e}) — out of memory? Give the workers more memory or pass a smaller --block"
            ) from e
        except BaseException as e:
            self.client.cancel(list(futures))
            if isinstance(e, Exception):  # a failure or Cancelled, not Ctrl-C: wait for what the caller will remove
                _wait_until_stopped(self.client, {future.key for future in futures})
            raise
        self.result.seconds[name] = self.result.seconds.get(name, 0.0) + time.perf_counter() - started
        self.result.done[name] = len(calls)
        self.result.resumed[name] = total - len(calls)
        return results


def _task_key(fn: Callable[..., Any]) -> str:
    """A unique task key named after the stage's function (what the dashboard shows)."""
    import uuid

    return f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"


def _executing(dask_worker: Any) -> list[str]:
    """The keys of the tasks a worker is running, those cancelled but not yet returned included."""
    return [str(task.key) for task in dask_worker.state.executing]


def _wait_until_stopped(client: Any, keys: set[Any], timeout: float = 120.0) -> None:
    """Wait (at most ``timeout`` seconds) until no worker runs any of ``keys``: Dask cannot stop a
    task that has started, and one still running would write into a work directory being removed."""
    keys = {str(k) for k in keys}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = client.run(_executing)
        except Exception:  # noqa: BLE001 - the cluster is gone: nothing runs
            return
        if not keys & {k for found in running.values() for k in found}:
            return
        time.sleep(0.05)


def still_done(stage: StageRunner, name: Stage, names: Sequence[str], where: Any = None) -> dict[str, tuple[int, dict[str, Any]]]:
    """The markers of stage ``name`` among ``names`` whose data still checks out (checked on the
    workers, against ``where`` the stage wrote: a `Destination`, a label image's path)."""
    marked = {k: v for k, v in stage.store.done(name).items() if k in set(names)}
    if not marked:
        return {}
    client = stage.client
    verify = stages.VERIFIERS[name]
    futures = {client.submit(run_task, verify, stage.job, k, v[0], where, key=_task_key(verify)): k
               for k, v in marked.items()}
    ok = dict(zip(futures.values(), client.gather(list(futures))))
    return {k: v for k, v in marked.items() if ok[k]}
