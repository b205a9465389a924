"""The Dask cluster of a blockwise run: a local one started and closed here, worker jobs on a
batch system (``--cluster``, client/blockwise/jobqueue.py), or an existing one joined by its
scheduler's address (``dask scheduler`` / ``dask worker``, dask-kubernetes, ...)."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TypeGuard

from ..errors import ClientError, Interrupted
from .jobqueue import jobqueue_cluster

__all__ = ["ClusterError", "dask_client", "check_main_guard", "worker_losses", "worker_count"]


class ClusterError(ClientError):
    """The Dask cluster cannot be started or reached."""


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, *, workers: int | None = None, threads_per_worker: int = 1,
    say: Callable[[str], None] | None = None, cluster: str | None = None, cluster_options: Mapping[str, Any] | None = None,
    max_jobs: int | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client`` on a new ``LocalCluster`` of worker processes bound to 127.0.0.1
    (``workers``, default the cores), on ``cluster``'s batch jobs (dask-jobqueue, 1 to
    ``max_jobs``, default 1; ``cluster_options`` its keywords), or on the cluster at
    ``scheduler``; closed on exit.

    Raises
    ------
    ClusterError
        Nothing answers at ``scheduler``, or the local cluster cannot start, or would re-run
        the calling script in each worker (`check_main_guard`), or both ``cluster`` and
        ``scheduler`` are given.
    JobqueueError
        The batch system cannot take the worker jobs (client/blockwise/jobqueue.py).
    """
    from distributed import Client, LocalCluster

    if cluster is not None:
        with _batch_client(cluster, cluster_options or {}, max_jobs or 1, scheduler, say) as client:
            yield client
        return

    if workers is not None and workers < 1 or threads_per_worker < 1:
        raise ClusterError("--workers and --threads-per-worker must be at least 1")
    local = client = None
    dashboard = scheduler is not None or importlib.util.find_spec("bokeh") is not None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(
                f"no Dask scheduler at {scheduler} ({str(e).splitlines()[0] if str(e) else type(e).__name__}) — "
                "start one (dask scheduler) or fix --scheduler"
            ) from e
    try:
        if client is None:  # no scheduler given: start a local cluster
            check_main_guard()
            try:
                with _interrupts_held():
                    local = LocalCluster(
                        n_workers=workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker, processes=True,
                        # Loopback only; any free port for the scheduler's HTTP server (the dashboard when
                        # bokeh is installed): a second cluster on the machine must not collide with it.
                        host="127.0.0.1", silence_logs=logging.CRITICAL, dashboard_address="127.0.0.1:0",
                        # Ctrl-C in a terminal signals the whole process group: the workers ignore
                        # it (each would print its own traceback); this process stops the run in one line.
                        preload=["skoots_client.blockwise.quiet_worker"],
                    )
                    client = Client(local)
            except (OSError, TimeoutError) as e:
                raise ClusterError(f"cannot start a local Dask cluster: {e}") from e
        if say is not None:
            link = f"; dashboard {client.dashboard_link}" if dashboard else ""
            say(f"Dask scheduler {client.scheduler.address}, {worker_count(client)} workers{link}")
        yield client
    finally:
        if client is not None:
            client.close()
        if local is not None:
            local.close()


@contextlib.contextmanager
def _batch_client(kind: str, options: Mapping[str, Any], max_jobs: int, scheduler: str | None,
                  say: Callable[[str], None] | None) -> Iterator[Any]:
    """A client on worker jobs of ``kind``, once the first has started."""
    from distributed import Client

    if scheduler is not None:
        raise ClusterError(f"--cluster {kind} starts its own scheduler and --scheduler joins a running one: give one of them")
    with jobqueue_cluster(kind, options, max_jobs) as batch:
        client = Client(batch.cluster)
        try:
            if say is not None:
                say(f"Dask scheduler {client.scheduler.address}; {kind} worker jobs (dask-jobqueue), 1 to {max_jobs} as the work "
                    "needs: waiting for the first to start")
            try:
                batch.wait_for_first_worker(client)
            except KeyboardInterrupt:  # Ctrl-C while the job waits in the queue: one line; the job is cancelled
                raise Interrupted(f"interrupted while waiting for the first {kind} worker job to start") from None
            yield client
        finally:
            client.close()


def check_main_guard() -> None:
    """Refuse, in one line, to start local worker processes from a script's top-level code.

    Dask starts a local cluster's workers with the ``spawn`` method, which imports the main
    script in each of them: a script whose ``segment(..., blockwise=True)`` call is not under
    ``if __name__ == "__main__":`` runs it again there, and every worker dies in pages of
    multiprocessing tracebacks ("Nanny failed to start"). Found from the call stack: the main
    module's top-level frame, and whether its current line sits under that guard in its source.
    """
    import dask

    method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if method == "fork" or main is None or not path or not Path(path).is_file():
        return  # an interactive session or notebook: nothing for the workers to re-run
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return  # not called from the main script's code (a thread, a callback)
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    if not any(_is_main_guard(node) and node.body[0].lineno <= frame.f_lineno <= (node.body[-1].end_lineno or node.lineno)
               for node in ast.walk(tree)):
        raise ClusterError(
            f"blockwise starts worker processes, which re-run your script {Path(path).name}: put the call under "
            '`if __name__ == "__main__":` (or pass scheduler=... to use a running Dask cluster)'
        )


def _is_main_guard(node: ast.AST) -> TypeGuard[ast.If]:
    """``if __name__ == "__main__":`` (either side of the ``==``)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.comparators) != 1:
        return False
    sides = [node.test.left, node.test.comparators[0]]
    return isinstance(node.test.ops[0], ast.Eq) and any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back (SIGINT blocked: kept pending, not lost) while the local cluster starts:
    an interrupt in the middle of its start leaves it half made, and closing that prints
    tracebacks. One that came meanwhile arrives as soon as the cluster and its client exist, and
    they are closed in order."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_losses(client: Any, since: float) -> tuple[int, int]:
    """Workers that died (not retired) since ``since`` (``time.time()``) and the tasks that were
    running or held on them, which the scheduler ran again: from the scheduler's event log."""
    try:
        events = client.get_events("all")
    except Exception:  # noqa: BLE001 - the scheduler is gone (a failure, Ctrl-C): nothing to add
        return 0, 0
    lost = rerun = 0
    for stamp, event in events:
        if stamp >= since and isinstance(event, dict) and event.get("action") == "remove-worker" and not event.get("expected"):
            lost += 1
            rerun += len(event.get("processing-tasks", ())) + len(event.get("lost-computed-tasks", ()))
    return lost, rerun


def worker_count(client: Any) -> int:
    return len(client.nthreads())
