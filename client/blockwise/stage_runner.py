"""Running one blockwise stage on the cluster: its tasks submitted at once, its progress drawn,
its results and the workers' peaks gathered; a block whose task fails after its retries is
recorded while the others finish, then the stage stops the run naming each failed block; on
a run-wide error or a cancel, the tasks stopped before anything is removed. And which blocks of
a stage a resumed run can skip (their data checked)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import BlockFailures, InputError
from ..progress import Watch
from ..run_stats import FailedBlock, RunStats
from . import skeleton_stage, stages
from .blocks import Region
from .job import Job
from .store import BlockStore, Stage
from .worker import Refused, run_task

__all__ = ["RETRIES", "VERIFIERS", "StageRunner", "still_done", "error_line"]

# Dask runs a task that raised again, up to this many times, on whichever worker is free: a
# transient fault (a flaky network read, a file system hiccup) gets two more chances, while a
# deterministic one (a corrupt chunk, a bug) costs at most three runs of one block, small
# against a stage of many. User errors are not retried (`Refused`); a worker that dies is the
# scheduler's business (``distributed.scheduler.allowed-failures``, 3 by default).
RETRIES = 2
VERIFIERS: dict[Stage, stages.Verifier] = {**stages.VERIFIERS, **skeleton_stage.VERIFIERS}  # every stage's check of a done-marker, by stage


class StageRunner:
    """Submit one stage's tasks, draw its progress, gather results and worker peaks; with what
    every stage works on (the job, its work directory's store, the run's result)."""

    def __init__(self, client: Any, job: Job, store: BlockStore, result: RunStats, watch: Watch) -> None:
        self.client, self.job, self.store, self.result, self.watch = client, job, store, result, watch

    def run(self, name: str, calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]], total: int) -> dict[str, Any]:
        """Every call's result by its block's name. A block whose task fails after `RETRIES`
        (or whose workers die) is recorded in ``result.failures`` and never marked done; the
        others finish. Then, if any failed, `BlockFailures` names them all. An error that is
        not the block's (a server, the model, the output: every block would fail the same way)
        stops the stage at once and is raised as it is."""
        from distributed import as_completed

        started, since = time.perf_counter(), time.time()
        self.result.totals[name] = total
        progress = self.watch.stage(name, f"{name} blocks")
        done = total - len(calls)
        progress(done, total)
        futures = {self.client.submit(run_task, fn, *args, key=_task_key(fn), retries=RETRIES): key for key, fn, args in calls}
        results: dict[str, Any] = {}
        failed: dict[str, BaseException] = {}
        try:
            for future, value in as_completed(futures, with_results=True, raise_errors=False):
                if future.status == "error":  # failed after its retries, or its workers died (KilledWorker)
                    value = future.exception()
                if isinstance(value, Refused):
                    if not isinstance(value.error, InputError):
                        raise value.error  # the run's problem, not this block's data
                    value = value.error
                if isinstance(value, BaseException):
                    failed[futures[future]] = value
                    continue
                results[futures[future]] = value
                if isinstance(value, dict) and "rss" in value:
                    peaks = self.result.peaks
                    peaks[value["process"]] = max(peaks.get(value["process"], 0), value["rss"])
                done += 1
                progress(done, total)
        except BaseException as e:
            self.client.cancel(list(futures))
            if isinstance(e, Exception):  # a failure or Cancelled, not Ctrl-C: wait for what the caller will remove
                _wait_until_stopped(self.client, {future.key for future in futures})
            raise
        self.result.seconds[name] = self.result.seconds.get(name, 0.0) + time.perf_counter() - started
        self.result.done[name] = len(results)
        self.result.resumed[name] = total - len(calls)
        if failed:
            memory, regions = _memory_kills(self.client, since), self._regions(name)
            self.result.failures += [FailedBlock(name, key, regions.get(key), error_line(error, memory))
                                     for key, error in sorted(failed.items())]
            raise BlockFailures(self.result.failures_text(self.store), self.result.failures, self.result)
        return results

    def _regions(self, stage: str) -> dict[str, Region]:
        """The voxels each of a stage's tasks covers, by name: the blocks', or the write regions'
        (named by their first voxel); none for a pyramid level's regions (their names are their regions)."""
        grid = self.job.grid
        if stage in ("write", "mesh", "skeleton"):
            return {stages.region_name(r): r for r in grid.write_regions()}
        if stage == "pyramid":
            return {}
        return {b.name: b.region for b in grid.blocks}


def error_line(error: BaseException, memory: dict[str, int] | None = None) -> str:
    """A failed task's error in one line: its type and first line; for workers that died
    running it, why (``memory``: the workers the nanny stopped for memory, with their RSS)
    and what to change."""
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        tries = getattr(error, "allowed_failures", 0) + 1
        worker = getattr(getattr(error, "last_worker", None), "address", None)
        memory = memory or {}
        if worker is not None and worker in memory:
            return (f"KilledWorker: its worker went past its memory limit and was stopped (at {memory[worker] / 2**20:.0f} MiB; "
                    f"{tries} worker{'' if tries == 1 else 's'} died running it) — pass a smaller --block or give the workers more memory")
        return (f"KilledWorker: the workers running it died {tries} time{'' if tries == 1 else 's'} (out of memory?) — "
                "pass a smaller --block or give the workers more memory")
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _memory_kills(client: Any, since: float) -> dict[str, int]:
    """The workers their nanny stopped for passing their memory limit since ``since``
    (``time.time()``), with the RSS it saw (the scheduler's ``worker-restart-memory`` events)."""
    try:
        events = client.get_events("worker-restart-memory")
    except Exception:  # noqa: BLE001 - the scheduler cannot say: the line says "out of memory?"
        return {}
    return {e["worker"]: int(e.get("rss", 0)) for stamp, e in events if stamp >= since and isinstance(e, dict) and "worker" in e}


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
    verify = VERIFIERS[name]
    futures = {client.submit(run_task, verify, stage.job, k, v[0], where, key=_task_key(verify)): k
               for k, v in marked.items()}
    ok = dict(zip(futures.values(), client.gather(list(futures))))
    return {k: v for k, v in marked.items() if ok[k]}
