"""The blockwise work directory: each block's intermediates, small, and a done marker per block and stage.

Layout (``OUT.work/`` beside the output unless ``--work-dir`` says otherwise; a folder, or a key
prefix on S3 or GCS: every file below is an object read and written by key, objects.py)::

    fingerprint.json        what the blocks were made from (input, model constants, block grid)
    labels/B.at.npy         infer: a block's 6-connected skeleton labels (1..n), nonzero voxels only:
    labels/B.values.npy       flat indices in the block (ascending) and labels (sparse.py);
    labels/B.index.npy        every 4096th index, to find a run of X planes with ranged reads
    own/B.bin               infer: each voxel's block-local label where the block alone decides it,
                            else LANDED / PENDING (resolve.py); compressed X slabs (encoding.py)
    landed/B.bin            infer: the voxels that land outside the block, and where (volume index)
    vectors/B.bin           infer: the block's FP16 vectors in the shell its neighbours and its own
                            pending voxels read (zero elsewhere), compressed X slabs
    faces/B.bin             infer: the block's six boundary planes of its labels (face equivalences)
    assigned/B.bin          assign: the volume's skeleton-component id of each voxel, compressed X slabs
    firsts/B.npz            assign: the block's ids with their smallest linear index over the volume
    stats/R.npz             with --table: an output block's per-label sums (instances.PartialStats)
    output.json             the destination being written: what, and where (output.py)
    done/STAGE/B            marker: the CRC-32 of the block's data, a JSON note, and a CRC of
                            the marker's own text
    lock.json               on a URL: the run that holds the store and when it last said so

Scratch stays under a byte per volume voxel on dense volumes (benchmarks/scratch.py): a
block's labels are resolved at infer wherever its own vectors and labels decide them, so only
the vectors' shell that other tasks read is kept; dense arrays go as byte-shuffled zstd in X
slabs, so a neighbour's halo fetches only the slabs of the planes it needs (ranged reads);
and each intermediate is deleted once no later stage needs it (a block's ``own``/``landed``
when it is assigned, every block's ``labels``, ``vectors``, ``faces`` when assign ends).

Every object is written whole or not at all (a file aside and renamed, an object store's
PUT), and a block is marked done only after its objects are in place; a marker whose data no
longer has its CRC is ignored (the block is done again), so a kill at any moment, of the client or of a
worker, loses at most the blocks being written.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..atomic import build_directory, seal, unseal
from ..errors import OutputError
from ..stores import StoreUrl
from ..workdir import FINGERPRINT, check_work_dir, lock_work_dir, work_mismatch
from .objects import Folder, KvObjects, objects_at
from .ranged import RangedArray, npy_bytes, sample

__all__ = ["FORMAT", "Stage", "STAGES", "LOCK", "HEARTBEAT", "BlockStore"]

FORMAT = "skoots-blockwise/3"  # 3: firsts carry each instance's voxels in the block
Stage = Literal["infer", "assign", "write", "pyramid", "mesh", "manifest", "skeleton", "skeleton-merge"]  # the stages that mark blocks done
STAGES: tuple[Stage, ...] = get_args(Stage)
LOCK = "lock.json"  # a URL work store's lock (a folder is locked with flock)
HEARTBEAT = 20.0  # seconds between a run's renewals of its lock; one not renewed for 4 of them is stale


def _marker_text(checksum: int, note: dict[str, Any]) -> bytes:
    return seal(f"{checksum:08x} {json.dumps(note, sort_keys=True)}", "\n")


def _parse_marker(data: bytes) -> tuple[int, dict[str, Any]] | None:
    body = unseal(data, "\n")
    if body is None:
        return None
    try:
        checksum, note = body.split(" ", 1)
        return int(checksum, 16), json.loads(note)
    except ValueError:
        return None


class BlockStore:
    """The work store of one blockwise run, usable from the client and from workers: a local
    folder or a URL (``s3://``, ``gs://``), the same code on either through the object API.

    Only the client checks, creates and locks it (`check`, `create`); workers read and write
    objects by key."""

    def __init__(self, where: Path | StoreUrl, fingerprint: dict[str, Any] | None = None) -> None:
        self.where = where if isinstance(where, StoreUrl) else Path(where)
        self.objects = objects_at(self.where)
        self.fingerprint = json.loads(json.dumps(fingerprint)) if fingerprint is not None else None
        self._lock: int | None = None
        self._heartbeat: tuple[threading.Thread, threading.Event] | None = None
        self._run = uuid.uuid4().hex

    def __str__(self) -> str:
        return self.objects.where

    @property
    def local(self) -> Path | None:
        """The folder, None for a URL."""
        return self.objects.path if isinstance(self.objects, Folder) else None

    # --- the client's side --------------------------------------------------------------------

    def exists(self, key: str | None = None) -> bool:
        """Whether the object ``key`` exists; without one, whether anything is stored at all
        (a work store left by an earlier run)."""
        return self.objects.exists(key) if key is not None else self.objects.any()

    def check(self) -> None:
        """Refuse a store that is not a work store, or one made for another run; fail early if
        one cannot be created (no folder, no bucket, no credentials)."""
        assert self.fingerprint is not None
        if isinstance(self.objects, Folder):
            check_work_dir(self.objects.path, self.fingerprint)
            return
        assert isinstance(self.objects, KvObjects)
        self.objects.check()
        if not self.objects.any():
            return
        try:
            stored = json.loads(self.objects.get(FINGERPRINT))
        except (FileNotFoundError, ValueError) as e:
            raise OutputError(f"{self} is not a segment work store (no readable {FINGERPRINT}); "
                              "remove its objects or pass another --work-dir") from e
        work_mismatch(self, stored, self.fingerprint)

    def create(self) -> None:
        """Create (or reopen) the store and lock it against a second run."""
        assert self.fingerprint is not None
        text = (json.dumps(self.fingerprint, indent=1, sort_keys=True) + "\n").encode()
        if isinstance(self.objects, Folder):
            path = self.objects.path
            if not path.exists():
                def build(staging: Path) -> None:
                    (staging / FINGERPRINT).write_bytes(text)

                try:
                    build_directory(path, build)
                except OSError as e:
                    raise OutputError(f"cannot create work directory {path}: {e.strerror or e}") from e
            fd = os.open(path / FINGERPRINT, os.O_RDONLY)
            lock_work_dir(fd, path)
            self._lock = fd
            return
        self._take_lock()
        self.objects.create(FINGERPRINT, text)

    def _lock_text(self) -> bytes:
        return json.dumps({"run": self._run, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()

    def _take_lock(self) -> None:
        """A URL store's lock: ``lock.json`` created only if absent (a conditional write where the
        store supports it), or taken over when its run stopped renewing it; then renewed by a
        thread every `HEARTBEAT` seconds until `close`."""
        if not self.objects.create(LOCK, self._lock_text()):
            try:
                held = json.loads(self.objects.get(LOCK))
                age = time.time() - float(held["time"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                held, age = {}, float("inf")
            if age < 4 * HEARTBEAT:
                raise OutputError(f"work store {self} is in use by another segment run (on {held.get('host', '?')}, "
                                  f"{age:.0f} s ago); wait for it or pass another --work-dir")
            self.objects.put(LOCK, self._lock_text())  # its run stopped renewing it: killed
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(HEARTBEAT):
                try:
                    self.objects.put(LOCK, self._lock_text())
                except OutputError:  # a store that stopped answering: the run's own calls will say so
                    pass

        thread = threading.Thread(target=renew, name="skoots-work-lock", daemon=True)
        thread.start()
        self._heartbeat = (thread, stop)

    def close(self) -> None:
        """Release the lock (the store's objects stay)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        if self._heartbeat is not None:
            thread, stop = self._heartbeat
            stop.set()
            thread.join()
            self._heartbeat = None
            try:
                if json.loads(self.objects.get(LOCK)).get("run") == self._run:
                    self.objects.delete(LOCK)
            except (OutputError, FileNotFoundError, ValueError):
                pass

    def remove(self) -> None:
        """Delete every object of the store (the folder, or every key under the prefix)."""
        self.close()
        self.objects.delete_all()

    def done(self, stage: Stage) -> dict[str, tuple[int, dict[str, Any]]]:
        """Blocks with a valid marker for ``stage``: name → (data CRC, note)."""
        keys = self.keys(f"done/{stage}")
        found = {}
        for key, data in zip(keys, self.objects.get_many(keys)):
            parsed = _parse_marker(data) if data is not None else None
            if parsed is not None:
                found[key.rsplit("/", 1)[1]] = parsed
        return found

    # --- both sides: objects by key (``kind/name``), the layer every encoding writes through ---

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` whole or not at all."""
        self.objects.put(key, data)

    def get(self, key: str) -> bytes:
        """The object at ``key`` (``FileNotFoundError`` when there is none)."""
        return self.objects.get(key)

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes ``start .. stop-1`` of the object at ``key``: a reader fetches only what it needs."""
        return self.objects.get_range(key, start, stop)

    def keys(self, prefix: str) -> list[str]:
        """The keys of the objects in folder ``prefix`` (no hidden ones), sorted."""
        return self.objects.keys(prefix)

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; nothing when there is none."""
        self.objects.delete(key)

    # --- both sides ---------------------------------------------------------------------------

    def save_sparse(self, kind: str, block: str, at: np.ndarray, values: np.ndarray) -> None:
        """A block's nonzero voxels of ``kind`` (``at`` ascending, ``values`` ``[..., n]``), and
        every `ranged.STRIDE`-th of ``at``, which a halo's reader searches first."""
        for part, array in (("values", values), ("index", sample(at)), ("at", at)):
            self.put(f"{kind}/{block}.{part}.npy", npy_bytes(array))

    def load_sparse(self, kind: str, block: str) -> tuple[Any, Any]:
        """``(at, values)`` of a block as `RangedArray`s (what sparse.scatter and np.asarray take):
        read by ranges, a reader fetches only the X planes it slices."""
        def ranged(part: str) -> RangedArray:
            key = f"{kind}/{block}.{part}.npy"
            samples = (lambda: np.asarray(self._ranged(f"{kind}/{block}.index.npy"))) if part == "at" else None
            return self._ranged(key, samples)

        return ranged("at"), ranged("values")

    def _ranged(self, key: str, samples: Any = None) -> RangedArray:
        return RangedArray(lambda start, stop: self.get_range(key, start, stop), lambda: self.get(key), samples)

    def mark(self, stage: Stage, block: str, checksum: int, note: dict[str, Any] | None = None) -> None:
        self.objects.put(f"done/{stage}/{block}", _marker_text(checksum, note or {}), durable=True)

    def save_npz(self, folder: str, block: str, **arrays: np.ndarray) -> None:
        """Small per-block arrays (faces, instance-table sums), one object."""
        buffer = BytesIO()
        np.savez(buffer, **arrays)
        self.put(f"{folder}/{block}.npz", buffer.getvalue())

    def load_npz(self, folder: str, block: str, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        return _arrays(self.get(f"{folder}/{block}.npz"), names)

    def load_npz_many(self, folder: str, blocks: Iterable[str], names: Iterable[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """`load_npz` of many blocks, their objects read at once (on a URL: all requests in flight
        together, not one round trip after another); ``FileNotFoundError`` if one is missing."""
        blocks = list(blocks)
        found = {}
        for block, data in zip(blocks, self.objects.get_many([f"{folder}/{b}.npz" for b in blocks])):
            if data is None:
                raise FileNotFoundError(f"{self}/{folder}/{block}.npz")
            found[block] = _arrays(data, names)
        return found


def _arrays(data: bytes, names: Iterable[str] | None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (all without) of ``.npz`` bytes."""
    with np.load(BytesIO(data)) as arrays:
        return {k: arrays[k] for k in (names or arrays.files) if k in arrays.files}
