"""Spread batches over endpoints with a bounded number in flight; yield answers as they come.

Each endpoint runs ``concurrency`` worker threads that pull from one shared queue, so a faster
server simply takes more batches. The queue holds at most as many batches as there are
workers: memory stays bounded whatever the volume size. An endpoint that fails for good
(unreachable or timing out after its own retries) hands its batch back and drops out; the
others carry on. If none is left, the last error is raised.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from .errors import InferenceTimeoutError, ServerUnavailableError

__all__ = ["Endpoint", "dispatch", "release_freed_memory"]

_Key = TypeVar("_Key", bound=Hashable)  # what a job is known by: its answer comes back with it


class Endpoint(Protocol):
    name: str
    concurrency: int

    def infer(self, batch: np.ndarray, probability: bool = False) -> tuple[np.ndarray, ...]: ...


_POLL = 0.05


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def dispatch(
    jobs: Iterable[tuple[_Key, np.ndarray]],
    endpoints: Sequence[Endpoint],
    *,
    probability: bool = False,
    on_endpoint_lost: Callable[[str, BaseException], None] | None = None,
) -> Iterator[tuple[_Key, tuple[np.ndarray, ...]]]:
    """Yield ``(key, outputs)`` for every ``(key, batch)`` in ``jobs``, in completion order."""
    workers = sum(e.concurrency for e in endpoints)
    pending: queue.Queue[Any] = queue.Queue(maxsize=max(1, workers))
    retry: queue.Queue[Any] = queue.Queue()
    # Bounded too: a consumer slower than the servers holds workers back rather than letting
    # answers pile up (memory), and answers not yet consumed stay few (what a crash loses).
    results: queue.Queue[Any] = queue.Queue(maxsize=max(1, workers))
    stop = threading.Event()
    endpoint_ids = {id(e) for e in endpoints}
    dead: set[int] = set()
    lock = threading.Lock()
    submitted = [0]
    fed_all = threading.Event()
    feed_failed: list[BaseException] = []  # checked by the consumer: results may all be in by then

    def feed() -> None:
        try:
            for job in jobs:
                while not stop.is_set():
                    try:
                        pending.put(job, timeout=_POLL)
                        submitted[0] += 1
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - reading input failed: hand it to the consumer
            feed_failed.append(e)
        finally:
            fed_all.set()

    def next_job() -> Any:
        while not stop.is_set():
            try:
                return retry.get_nowait()
            except queue.Empty:
                pass
            try:
                return pending.get(timeout=_POLL)
            except queue.Empty:
                continue
        return None

    def put_result(item: Any) -> None:
        while not stop.is_set():
            try:
                results.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def work(endpoint: Endpoint) -> None:
        while id(endpoint) not in dead:
            job = next_job()
            if job is None:
                return
            key, batch = job
            try:
                outputs = endpoint.infer(batch, probability)
            except (ServerUnavailableError, InferenceTimeoutError) as e:
                # The endpoint failed for good: its other workers stop taking batches too (they
                # would only fail after their own retries), and the batch goes to the others.
                retry.put(job)
                with lock:
                    first = id(endpoint) not in dead
                    dead.add(id(endpoint))
                    last = len(dead) == len(endpoint_ids)
                if first and last:
                    put_result(_Failure(e))
                elif first and on_endpoint_lost is not None:
                    on_endpoint_lost(endpoint.name, e)
                return
            except BaseException as e:  # noqa: BLE001 - anything else ends the run
                put_result(_Failure(e))
                return
            put_result((key, outputs))

    threads = [threading.Thread(target=feed, name="skoots-feed", daemon=True)]
    for endpoint in endpoints:
        threads += [
            threading.Thread(target=work, args=(endpoint,), name=f"skoots-{endpoint.name}-{i}", daemon=True)
            for i in range(endpoint.concurrency)
        ]
    for thread in threads:
        thread.start()
    received = 0
    try:
        while not (fed_all.is_set() and received == submitted[0]):
            if feed_failed:
                raise feed_failed[0]
            try:
                item = results.get(timeout=_POLL)
            except queue.Empty:
                continue
            if isinstance(item, _Failure):
                raise item.error
            received += 1
            yield item
        if feed_failed:
            raise feed_failed[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        release_freed_memory()


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    Requests and answers are tens of MB each; glibc keeps such freed blocks in its per-thread
    arenas, so after the last answer the process would go on holding the memory of every
    batch that was in flight — at the moment post-processing needs memory most.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass

