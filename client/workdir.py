"""A work directory that keeps finished crops on disk, so a killed run resumes where it stopped.

Layout (``OUT.work/`` beside the output unless ``--work-dir`` says otherwise)::

    fingerprint.json   what the crops were made from: input, model constants, crop grid
    skeleton/          Zarr array [n_crops, cx, cy, cz] uint8, one chunk per crop
    vectors/           Zarr array [n_crops, 3, cx, cy, cz] float16, one chunk per crop
    probability/       (with --save-intermediates) [n_crops, cx, cy, cz] float16
    manifest.log       append-only: one checksummed record per finished crop

Each crop's stitched contribution (its owned region of the dilated skeleton and of the masked
vectors, placed at the chunk's origin) lives in chunks that no other crop writes, so a write
torn by a kill can only damage a crop that is not marked done yet. A crop is marked only after
its chunks are written and fsynced; a record carries the CRC-32 of the crop's data and one of
its own text, so a torn last record is ignored, and a crop whose data does not match its record
is inferred again rather than trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import build_directory, crc, fsync, seal, unseal
from .destinations import check_writable
from .errors import OutputError
from .tiling import Crop

__all__ = [
    "FORMAT", "FINGERPRINT", "MANIFEST", "Piece", "fingerprint", "file_identity", "default_work_dir", "stale_work_text",
    "parse_record", "check_work_dir", "work_mismatch", "lock_work_dir", "WorkDir",
]

FORMAT = "skoots-work/1"
FINGERPRINT = "fingerprint.json"
MANIFEST = "manifest.log"


@dataclass(frozen=True)
class Piece:
    """What one crop writes into the stitched volume: its owned region, on the host."""

    skeleton: np.ndarray  # uint8 [ox, oy, oz], already dilated
    vectors: np.ndarray  # float16 [3, ox, oy, oz]
    probability: np.ndarray | None = None  # float16 [ox, oy, oz]

    def checksum(self) -> int:
        return crc(self.skeleton, self.vectors, *([] if self.probability is None else [self.probability]))


def fingerprint(
    volume_path: Path, shape: Sequence[int], dtype: Any, channel: int | None, model: str,
    parameters: Any, *, reference_borders: bool, probability: bool,
    axes: str | None = None, normalization: dict[str, Any] | None = None, skip: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a work directory's crops depend on; resuming with anything else is refused.

    The input file's size and modification time stand in for its content; ``axes`` is the
    order it was read in and ``normalization`` the rule and numbers that made the network's
    input (``Normalization.to_dict``). The model is identified by its name and constants (its
    weights are not visible to a client). ``skip`` says which crops a mask or an intensity
    rule keeps out: a crop saved under one rule would otherwise be stitched in a run whose
    rule skips it.
    """
    return {
        **({"skip": skip} if skip else {}),
        "format": FORMAT,
        "input": {
            **file_identity(volume_path), "shape": [int(n) for n in shape], "dtype": str(np.dtype(dtype)), "channel": channel,
            "axes": axes,
        },
        "normalization": normalization,
        "model": {"name": model, "parameters": parameters.to_strings()},
        "reference_borders": reference_borders,
        "probability": probability,
    }


def file_identity(path: Path) -> dict[str, Any]:
    """A file (or folder) as a fingerprint names it: resolved path, size and modification time."""
    from .stores import Location

    local = Location.of(path).local  # a volume by URL: its URL (a local store: its folder)
    if local is None:
        return {"path": str(path), "size": None, "mtime_ns": None}
    path = local.resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size if path.is_file() else None,
            "mtime_ns": stat.st_mtime_ns if path.is_file() else None}


def default_work_dir(out: Any) -> Any:
    """``labels.tif`` → ``labels.tif.work`` beside it (a ``Path``); for ``s3://…/labels``
    ``s3://…/labels.work`` (a ``StoreUrl``: a blockwise run's work store)."""
    from .stores import Location

    return Location.of(out).work_dir


def stale_work_text(path: Path) -> str | None:
    """The warning for a work directory at ``path`` that a run without ``--resume`` will not
    use (left by an earlier run with ``--resume`` that was killed or failed): it is neither
    read nor removed, so the crops it holds are not lost."""
    if not path.exists():
        return None
    return (f"{path} is a work directory left by an earlier run; this run (without --resume) neither uses nor removes it: "
            "pass --resume to continue from its finished crops, or remove it")


def _host(array: Any) -> np.ndarray:
    return np.ascontiguousarray(array.get() if hasattr(array, "get") else array)


def parse_record(line: bytes) -> tuple[int, int] | None:
    """``(crop index, data CRC)`` of a manifest record, or None when it is torn or corrupt."""
    body = unseal(line)
    if body is None:
        return None
    try:
        index, checksum = body.split(" ")
        return int(index), int(checksum, 16)
    except ValueError:
        return None


def check_work_dir(path: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse ``path`` if it is not a work directory made for ``fingerprint`` (stored as JSON),
    or if it does not exist and cannot be created."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"work directory {path} is a file; remove it or pass another --work-dir")
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            raise OutputError(f"work directory {path}: folder {parent} does not exist; create it first")
        check_writable("work directory", path, parent)
        return
    try:
        stored = json.loads((path / FINGERPRINT).read_text())
    except (OSError, ValueError) as e:
        raise OutputError(
            f"{path} is not a segment work directory (no readable {FINGERPRINT}); remove it or pass another --work-dir"
        ) from e
    work_mismatch(path, stored, fingerprint)


def work_mismatch(where: Any, stored: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuse the work directory (or store) at ``where`` whose ``stored`` fingerprint is not ``fingerprint``."""
    if stored != fingerprint:
        keys = sorted({*stored, *fingerprint})
        differ = [k for k in keys if stored.get(k) != fingerprint.get(k)]
        raise OutputError(
            f"work directory {where} was made for another run (differs in: {', '.join(differ)}); "
            "remove it to start afresh, or pass another --work-dir"
        )


def lock_work_dir(fd: int, path: Path) -> None:
    """Hold ``fd`` (a file of the work directory ``path``) locked for this run; refuse a second
    run on the same directory. Closes ``fd`` when refusing."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise OutputError(f"work directory {path} is in use by another segment run; wait for it or pass another --work-dir") from e


class WorkDir:
    """Finished crops of one segmentation, on disk.

    Construct with the run's ``fingerprint`` (a JSON-able dict): an existing directory made for
    anything else is refused, and nothing is written until `restore` is called with the
    crop grid — so a run that fails its checks leaves no work directory behind.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # tuples → lists, as stored
        self._manifest_fd: int | None = None
        self._arrays: dict[str, Any] = {}
        self._probability = bool(self.fingerprint.get("probability"))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._writer: threading.Thread | None = None
        self._error: OutputError | None = None
        self.check()

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    def check(self) -> None:
        """Refuse a work directory that is not ours or was made for another run; fail early
        if one cannot be created."""
        check_work_dir(self.path, self.fingerprint)

    # --- opening ----------------------------------------------------------------------------

    def _create(self, grid: Sequence[Crop]) -> None:
        """Build the directory aside and rename it into place: it exists complete or not at all."""
        import zarr
        from zarr.codecs import ZstdCodec

        def build(staging: Path) -> None:
            n, size = len(grid), tuple(grid[0].size)
            shapes = {"skeleton": ((n, *size), "uint8"), "vectors": ((n, 3, *size), "float16")}
            if self._probability:
                shapes["probability"] = ((n, *size), "float16")
            for name, (shape, dtype) in shapes.items():
                zarr.create_array(
                    str(staging / name), shape=shape, chunks=(1, *shape[1:]), dtype=dtype, fill_value=0,
                    chunk_key_encoding={"name": "default", "separator": "."},
                    # Level 1: as small as the default level here (masked float16 vectors), and
                    # ~1.5x faster to write, which is what bounds a run with --resume.
                    compressors=[ZstdCodec(level=1)],
                )
            (staging / FINGERPRINT).write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True) + "\n")
            (staging / MANIFEST).write_bytes(b"")

        build_directory(self.path, build)

    def _open(self, grid: Sequence[Crop]) -> list[tuple[int, int]]:
        """Open arrays and manifest (created if missing); return the valid records."""
        import zarr

        try:
            if not self.exists:
                self._create(grid)
            names = ["skeleton", "vectors"] + (["probability"] if self._probability else [])
            self._arrays = {name: zarr.open_array(str(self.path / name), mode="r+") for name in names}
            if self._arrays["skeleton"].shape != (len(grid), *grid[0].size):
                raise OutputError(f"work directory {self.path} holds another crop grid; remove it to start afresh")
            fd = os.open(self.path / MANIFEST, os.O_RDWR | os.O_APPEND)
        except OSError as e:
            raise OutputError(f"cannot use work directory {self.path}: {e.strerror or e}") from e
        lock_work_dir(fd, self.path)
        self._manifest_fd = fd
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) < len(data):  # a record torn by a kill: drop it before appending after it
            os.ftruncate(fd, len(whole))
            os.fsync(fd)
        return [r for r in map(parse_record, whole.splitlines()) if r is not None]

    # --- reading and writing ----------------------------------------------------------------

    def restore(self, grid: Sequence[Crop]) -> Iterator[tuple[Crop, Piece]]:
        """Open (creating the directory if needed) and yield the crops already done.

        A marked crop whose chunks cannot be read or do not match the record's checksum is
        skipped: it is inferred again.
        """
        records = dict(self._open(grid))  # the last record of a crop wins
        for index, checksum in sorted(records.items()):
            if not 0 <= index < len(grid):
                continue
            crop = grid[index]
            try:
                piece = self._read(crop)
            except Exception:  # noqa: BLE001 - any unreadable chunk means: infer this crop again
                continue
            if piece.checksum() == checksum:
                yield crop, piece

    def _read(self, crop: Crop) -> Piece:
        owned = tuple(slice(0, hi - lo) for lo, hi in crop.owned)
        arrays = self._arrays
        return Piece(
            skeleton=np.ascontiguousarray(arrays["skeleton"][(crop.index, *owned)]),
            vectors=np.ascontiguousarray(arrays["vectors"][(crop.index, slice(None), *owned)]),
            probability=np.ascontiguousarray(arrays["probability"][(crop.index, *owned)]) if self._probability else None,
        )

    def save(self, crops: Sequence[Crop], pieces: Sequence[Piece]) -> None:
        """Queue finished crops for the writer thread (blocks while it is two batches behind).

        The writer takes whatever is queued as one group: it writes the chunks, fsyncs them,
        then appends and fsyncs their records — one round of fsyncs per group, not per crop.
        """
        if self._error is not None:
            raise self._error
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="skoots-workdir", daemon=True)
            self._writer.start()
        hosted = [
            (crop, Piece(_host(p.skeleton), _host(p.vectors), None if p.probability is None else _host(p.probability)))
            for crop, p in zip(crops, pieces)
        ]
        while True:
            try:
                self._queue.put(hosted, timeout=0.1)
                return
            except queue.Full:
                if self._error is not None:
                    raise self._error from None

    def _write_loop(self) -> None:
        while True:
            group = self._queue.get()
            if group is None:
                return
            done = False
            while not done:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                else:
                    group += more
            try:
                self._write(group)
            except OSError as e:
                self._error = OutputError(f"cannot write work directory {self.path}: {e.strerror or e}")
                return
            if done:
                return

    def _write(self, group: list[tuple[Crop, Piece]]) -> None:
        touched = set()
        for crop, piece in group:
            for name, data in (("skeleton", piece.skeleton), ("vectors", piece.vectors), ("probability", piece.probability)):
                if name not in self._arrays:
                    continue
                if data is None:  # the directory keeps probabilities: a piece without them is a bug in the caller
                    raise RuntimeError(f"work directory {self.path} keeps {name}, but crop {crop.index} has none")
                array = self._arrays[name]
                chunk = np.zeros(array.shape[1:], dtype=array.dtype)
                chunk[tuple(slice(0, n) for n in data.shape)] = data
                array[crop.index] = chunk
                touched.add(self.path / name / array.metadata.encode_chunk_key((crop.index,) + (0,) * (array.ndim - 1)))
        for path in touched:
            with contextlib.suppress(FileNotFoundError):  # all zero: Zarr stores no chunk (reads give 0)
                fsync(path)
        for name in self._arrays:
            fsync(self.path / name)
        assert self._manifest_fd is not None
        os.write(self._manifest_fd, b"".join(seal(f"{crop.index} {piece.checksum():08x}") for crop, piece in group))
        os.fsync(self._manifest_fd)

    def close(self) -> None:
        """Finish writing what is queued, then release the directory. A write that fails
        here costs nothing but time: those crops are simply not marked, and are inferred again."""
        if self._writer is not None:
            if self._error is None:
                self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._manifest_fd is not None:
            os.close(self._manifest_fd)
            self._manifest_fd = None

    def remove(self) -> None:
        """After the labels are written: the crops are no longer needed."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)
