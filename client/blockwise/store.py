"""The blockwise work directory: each block's intermediates, small, and a done marker per block and stage.

Layout (``OUT.work/`` beside the output unless ``--work-dir`` says otherwise)::

    fingerprint.json        what the blocks were made from (input, model constants, block grid)
    labels/B.at.npy         infer: a block's 6-connected skeleton labels (1..n), nonzero voxels only:
    labels/B.values.npy       flat indices in the block (ascending) and labels (sparse.py)
    own/B.bin               infer: each voxel's block-local label where the block alone decides it,
                            else LANDED / PENDING (resolve.py); compressed X slabs (encoding.py)
    landed/B.bin            infer: the voxels that land outside the block, and where (volume index)
    vectors/B.bin           infer: the block's FP16 vectors in the shell its neighbours and its own
                            pending voxels read (zero elsewhere), compressed X slabs
    faces/B.npz             infer: the block's six boundary planes of its labels (face equivalences)
    assigned/B.bin          assign: the volume's skeleton-component id of each voxel, compressed X slabs
    firsts/B.npz            assign: the block's ids with their smallest linear index over the volume
    stats/R.npz             with --table: an output block's per-label sums (instances.PartialStats)
    out/NAME                the output being written (moved into place at the end);
                            an .ome.zarr's levels above 0 are sampled from its level 0 (pyramid.py)
    done/STAGE/B            marker: the CRC-32 of the block's data, a JSON note, and a CRC of
                            the marker's own text

Scratch stays under a byte per volume voxel on dense volumes (benchmarks/scratch.py): a
block's labels are resolved at infer wherever its own vectors and labels decide them, so only
the vectors' shell that other tasks read is kept; dense arrays go as byte-shuffled zstd in X
slabs, so a neighbour's halo fetches only the slabs of the planes it needs (ranged reads);
and each intermediate is deleted once no later stage needs it (a block's ``own``/``landed``
when it is assigned, every block's ``labels``, ``vectors``, ``faces`` when assign ends).

Every file is written aside and renamed, and a block is marked done only after its files are in place; a marker whose data no longer has its
CRC is ignored (the block is done again), so a kill at any moment, of the client or of a
worker, loses at most the blocks being written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..atomic import build_directory, seal, unseal, write_aside
from ..errors import OutputError
from ..workdir import FINGERPRINT, check_work_dir, lock_work_dir

__all__ = ["FORMAT", "Stage", "STAGES", "SPARSE", "BlockStore"]

FORMAT = "skoots-blockwise/3"  # 3: firsts carry each instance's voxels in the block
Stage = Literal["infer", "assign", "write", "pyramid"]  # the stages that mark blocks done
STAGES: tuple[Stage, ...] = get_args(Stage)
SPARSE = ("labels", "vectors", "assigned")


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
    """The work directory of one blockwise run, usable from the client and from workers.

    Only the client creates and locks it (`create`); workers read and write files by path.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint)) if fingerprint is not None else None
        self._lock: int | None = None

    # --- the client's side --------------------------------------------------------------------

    def check(self) -> None:
        assert self.fingerprint is not None
        check_work_dir(self.path, self.fingerprint)

    def create(self) -> None:
        """Create (or reopen) the directory and lock it against a second run."""
        assert self.fingerprint is not None
        if not self.path.exists():
            fingerprint = self.fingerprint

            def build(staging: Path) -> None:
                for folder in (*SPARSE, "own", "landed", "faces", "firsts", "stats", "out", *(f"done/{s}" for s in STAGES)):
                    (staging / folder).mkdir(parents=True)
                (staging / FINGERPRINT).write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")

            try:
                build_directory(self.path, build)
            except OSError as e:
                raise OutputError(f"cannot create work directory {self.path}: {e.strerror or e}") from e
        fd = os.open(self.path / FINGERPRINT, os.O_RDONLY)
        lock_work_dir(fd, self.path)
        self._lock = fd

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def done(self, stage: Stage) -> dict[str, tuple[int, dict[str, Any]]]:
        """Blocks with a valid marker for ``stage``: name → (data CRC, note)."""
        found = {}
        folder = self.path / "done" / stage
        for path in folder.glob("*") if folder.is_dir() else ():
            if path.name.startswith("."):
                continue
            parsed = _parse_marker(path.read_bytes())
            if parsed is not None:
                found[path.name] = parsed
        return found

    # --- both sides: objects by key (``kind/name``), the layer every encoding writes through ---

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` whole or not at all (written aside, then renamed)."""
        write_aside(self.path / key, lambda aside: aside.write_bytes(data))

    def get(self, key: str) -> bytes:
        """The object at ``key`` (``FileNotFoundError`` when there is none)."""
        return (self.path / key).read_bytes()

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes ``start .. stop-1`` of the object at ``key``: a reader fetches only what it needs."""
        with open(self.path / key, "rb") as f:
            f.seek(start)
            return f.read(stop - start)

    def exists(self, key: str) -> bool:
        return (self.path / key).is_file()

    def keys(self, prefix: str) -> list[str]:
        """The keys of the objects in folder ``prefix`` (no hidden ones), sorted."""
        folder = self.path / prefix
        return sorted(f"{prefix}/{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; nothing when there is none."""
        (self.path / key).unlink(missing_ok=True)

    # --- both sides ---------------------------------------------------------------------------

    def save_sparse(self, kind: str, block: str, at: np.ndarray, values: np.ndarray) -> None:
        """A block's nonzero voxels of ``kind`` (``at`` ascending, ``values`` ``[..., n]``)."""
        for part, array in (("values", values), ("at", at)):
            write_aside(self.path / kind / f"{block}.{part}.npy", partial(_save_array, np.ascontiguousarray(array)))

    def load_sparse(self, kind: str, block: str) -> tuple[np.ndarray, np.ndarray]:
        """``(at, values)`` of a block, memory-mapped: a reader touches only the pages it slices."""
        at, values = (np.load(self.path / kind / f"{block}.{part}.npy", mmap_mode="r") for part in ("at", "values"))
        return at, values

    def mark(self, stage: Stage, block: str, checksum: int, note: dict[str, Any] | None = None) -> None:
        text = _marker_text(checksum, note or {})
        write_aside(self.path / "done" / stage / block, lambda aside: aside.write_bytes(text), durable=True)

    def save_npz(self, folder: str, block: str, **arrays: np.ndarray) -> None:
        """Small per-block arrays (faces, instance-table sums), written aside then renamed."""
        write_aside(self.path / folder / f"{block}.npz", lambda aside: np.savez(aside, **arrays))

    def load_npz(self, folder: str, block: str, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        with np.load(self.path / folder / f"{block}.npz") as data:
            return {k: data[k] for k in (names or data.files) if k in data.files}


def _save_array(array: np.ndarray, path: Path) -> None:
    """``np.save`` with the array first, so a loop can bind it (``partial``) for ``write_aside``."""
    np.save(path, array)
