"""Triton system shared memory for a server on this machine: requests and answers pass through
``/dev/shm`` regions instead of gRPC messages, so the client neither serialises a batch nor
copies an answer — the server reads the batch from a region and writes its outputs into it.

One region per request in flight (input and outputs at aligned offsets), registered with the
server once and reused: a region is leased for a request and comes back to the pool when the
last array viewing it is dropped (the consumer has stitched the answer). Region names carry
the process id and a random token, so two runs never collide. `SharedMemoryPool.close`
unregisters every region and unlinks it, on every exit path (the endpoint's ``close``, and an
``atexit`` backstop); Python's resource tracker unlinks what a killed process left.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from .errors import InputError, ServerUnavailableError

__all__ = ["SHARED_MEMORY_CHOICES", "check_local", "Lease", "SharedMemoryPool"]

SHARED_MEMORY_CHOICES = ("none", "system")
_ALIGN = 64


def check_local(url: str) -> None:
    """Refuse system shared memory with a server that is not on this machine (``url`` is
    ``HOST:PORT``): only a loopback address or ``localhost`` guarantees it."""
    host = url.rsplit(":", 1)[0].strip("[]")
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host.lower() == "localhost"
    if not local:
        raise InputError(
            f"--shared-memory system needs the server on this machine, and {url} is not a loopback address — "
            "run the client beside the server with --url 127.0.0.1:PORT (or localhost), or drop --shared-memory"
        )


class Lease:
    """One region leased for one request: ``view`` gives arrays into it. The region returns to
    its pool when the lease and every array from it are gone."""

    def __init__(self, name: str, root: np.ndarray) -> None:
        self.name = name
        self._root = root

    def view(self, dtype: Any, shape: Sequence[int], offset: int) -> np.ndarray:
        count = int(np.prod(shape))
        return self._root[offset : offset + count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)


class SharedMemoryPool:
    """System shared-memory regions registered with one server through ``register(name, key,
    byte_size)`` and ``unregister(name)`` (the tritonclient gRPC client's calls)."""

    def __init__(self, register: Callable[[str, str, int], None], unregister: Callable[[str], None], where: str) -> None:
        self._register, self._unregister, self._where = register, unregister, where
        self._prefix = f"skoots-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._regions: dict[str, shared_memory.SharedMemory] = {}
        self._free: dict[int, list[str]] = {}
        self._closed = False
        atexit.register(self.close)

    @staticmethod
    def layout(sizes: Sequence[int]) -> tuple[list[int], int]:
        """Offsets of tensors of ``sizes`` bytes in one region, and the region's size."""
        offsets, end = [], 0
        for size in sizes:
            offsets.append(end)
            end += -(-size // _ALIGN) * _ALIGN
        return offsets, end

    def lease(self, byte_size: int) -> Lease:
        """A registered region of ``byte_size`` bytes that no request in flight uses."""
        with self._lock:
            if self._closed:
                raise ServerUnavailableError(f"shared memory with {self._where} is closed")
            free = self._free.setdefault(byte_size, [])
            name = free.pop() if free else None
        if name is None:
            name = self._create(byte_size)
        region = self._regions[name]
        assert region.buf is not None  # open until close()
        root = np.frombuffer(region.buf, np.uint8, byte_size)
        weakref.finalize(root, self._give_back, name, byte_size)
        return Lease(name, root)

    def _give_back(self, name: str, byte_size: int) -> None:
        with self._lock:
            if not self._closed:
                self._free[byte_size].append(name)

    def _create(self, byte_size: int) -> str:
        with self._lock:
            if self._closed:  # closed by another thread (the run ended) since the lease began
                raise ServerUnavailableError(f"shared memory with {self._where} is closed")
            name = f"{self._prefix}-{len(self._regions)}"
            region = shared_memory.SharedMemory(name=name, create=True, size=byte_size)
            self._regions[name] = region
        try:
            self._register(name, "/" + region.name.lstrip("/"), byte_size)
        except Exception as e:  # tritonclient's InferenceServerException and gRPC errors
            with self._lock:
                self._regions.pop(name, None)
            _unlink(region)
            message = e.message() if hasattr(e, "message") else str(e)
            raise ServerUnavailableError(
                f"{self._where} cannot use this machine's shared memory ({message}) — run the server on this machine "
                "sharing /dev/shm with the client (a container needs --ipc=host), or drop --shared-memory"
            ) from e
        with self._lock:
            closed = self._closed
        if closed:  # close() ran while this region was being registered: it is this thread's to remove
            self._forget(name, region)
            raise ServerUnavailableError(f"shared memory with {self._where} is closed")
        return name

    def _forget(self, name: str, region: shared_memory.SharedMemory) -> None:
        try:
            self._unregister(name)
        except Exception:  # noqa: BLE001 - the server may be down; its regions die with it
            pass
        _unlink(region)

    @property
    def names(self) -> list[str]:
        """The regions registered now."""
        with self._lock:
            return sorted(self._regions)

    def close(self) -> None:
        """Unregister every region from the server (best effort: it may be gone) and unlink
        them all; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            regions, self._regions = self._regions, {}
        atexit.unregister(self.close)
        for name, region in regions.items():
            try:
                self._unregister(name)
            except Exception:  # noqa: BLE001 - the server may be down; its regions die with it
                pass
            _unlink(region)


def _unlink(region: shared_memory.SharedMemory) -> None:
    try:
        region.unlink()
    except FileNotFoundError:
        pass
    try:
        region.close()
    except BufferError:  # an answer still views it: the mapping lives on with those arrays
        # and SharedMemory.__del__ must not try close() again (at exit it would print a traceback)
        vars(region).update(_buf=None, _mmap=None)
