"""Read microscopy volumes and write label volumes (TIFF, Zarr, OME-Zarr).

On disk a volume is ``[Z, Y, X]`` or ``[Z, Y, X, C]`` as Fiji and napari name the axes (the
seed's ``[Z, X, Y]``), unless the file or ``--axes`` says otherwise; the runtime works in the
seed's ``[X, Y, Z]`` (X = rows, docs/AXES.md) and writes labels back as ``[Z, Y, X]``. Reading
is lazy where the format allows (memory-mapped TIFF, chunked Zarr): crops are cut from a view.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import InputError, OutputError

SUPPORTED_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)


@dataclass(frozen=True)
class Volume:
    """A single-channel volume as an ``[X, Y, Z]`` array-like (possibly lazy), and how it was read.

    ``axes`` are the file's axes in Fiji/napari letters (``ZYX``, ``ZCYX``, ``XYZ``, ...) and
    ``axes_from`` where they came from: ``"file"`` (ImageJ/OME metadata), ``"--axes"`` or
    ``"default"`` (the seed's reading). ``channel`` is the channel taken of ``channels``, and
    ``channel_from`` why: ``"--channel"``, ``"only"`` or ``"default"`` (channel 2 of more than 3).
    """

    data: Any
    path: Path
    axes: str = "ZYX"
    axes_from: str = "default"
    channel: int = 0
    channels: int = 1
    channel_from: str = "only"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


class _XYZView:
    """An on-disk array seen as ``[X, Y, Z]`` without reading it.

    ``axes`` gives the array axes that hold Z, X and Y; ``fixed`` pins the others (a channel, a
    single time point) to one index. Slicing reads only the requested window.
    """

    def __init__(self, array: Any, axes: tuple[int, int, int], fixed: dict[int, int]) -> None:
        self._array = array
        self._axes = axes
        self._fixed = fixed
        z, x, y = axes
        self.shape = (int(array.shape[x]), int(array.shape[y]), int(array.shape[z]))
        self.dtype = array.dtype
        kept = sorted(axes)
        self._to_xyz = (kept.index(x), kept.index(y), kept.index(z))

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        sx, sy, sz = key
        index: list[Any] = [slice(None)] * len(self._array.shape)
        z, x, y = self._axes
        index[z], index[x], index[y] = sz, sx, sy
        for axis, at in self._fixed.items():
            index[axis] = at
        return np.asarray(self._array[tuple(index)]).transpose(self._to_xyz)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[slice(None), slice(None), slice(None)]
        return out if dtype is None else out.astype(dtype)


def describe_shape(shape_xyz: Sequence[int]) -> str:
    """The runtime's ``(X, Y, Z)`` as Fiji and napari name the axes: ``z 48, y 256, x 256``."""
    x, y, z = (int(n) for n in shape_xyz)
    return f"z {z}, y {x}, x {y}"


def describe_channel(volume: Volume) -> str:
    """Which channel was segmented and why, for the summary."""
    if volume.channels == 1:
        return "the only channel"
    why = {
        "--channel": f"--channel {volume.channel}",
        "default": "default for more than 3 channels; pick with --channel",
    }[volume.channel_from]
    return f"channel {volume.channel} of {volume.channels} ({why})"


def release_pages(volume: Volume) -> None:
    """Drop a memory-mapped input's pages from this process's resident set.

    Once every crop has been read the pages are of no further use; the kernel keeps them in
    its page cache, but while they are mapped they count toward the process's memory, at the
    very moment post-processing needs it most. Other inputs are left alone.
    """
    data = volume.data._array if isinstance(volume.data, _XYZView) else volume.data
    mapping = getattr(data, "_mmap", None)  # numpy.memmap's mmap.mmap (TIFF read by tifffile.memmap)
    if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """Collect what tifffile logs instead of printing it: a corrupt or truncated file makes it
    log (e.g. "invalid page offset") and then return fewer pages than the file claims."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _open_tiff(path: Path) -> tuple[Any, str | None]:
    """The TIFF's array (memory-mapped where the file allows) and tifffile's axes of it
    (``ZCYX``, ``QYXS``, ...)."""
    import tifffile

    def corrupt(detail: str) -> InputError:
        return InputError(f"cannot read TIFF {path}: {detail} — the file is corrupt or truncated; copy or export it again")

    with _tifffile_log() as problems:
        try:
            with tifffile.TiffFile(path) as tif:
                axes = str(tif.series[0].axes)
        except Exception:  # noqa: BLE001 - a corrupt file is reported below, when its data is read
            axes = None
        try:
            array = tifffile.memmap(path, mode="r")
        except (ValueError, OSError, IndexError):
            array = None  # compressed or tiled: read it whole
        if array is None:
            try:
                array = tifffile.imread(path)
            except Exception as e:  # tifffile raises many kinds for corrupt files
                raise corrupt(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    if problems:
        raise corrupt(problems[0].split("> ", 1)[-1].splitlines()[0])
    if array.size == 0:
        raise corrupt("no image data")
    return array, axes


def _ome_axes(multiscales: Any) -> str | None:
    """``"TCZYX"``-style letters from OME-NGFF multiscales metadata (0.3: names, 0.4+: dicts)."""
    try:
        names = multiscales[0]["axes"]
        return "".join(str(a["name"] if isinstance(a, dict) else a)[0].upper() for a in names)
    except (KeyError, IndexError, TypeError):
        return None


def _open_zarr(path: Path) -> tuple[Any, str | None]:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises several kinds for a non-store
        raise InputError(f"cannot open Zarr store {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if isinstance(node, zarr.Array):
        return node, None
    multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
    if multiscales:
        return node[multiscales[0]["datasets"][0]["path"]], _ome_axes(multiscales)
    arrays = list(node.array_keys())
    if len(arrays) == 1:
        return node[arrays[0]], None
    raise InputError(f"{path} is a Zarr group with {len(arrays)} arrays and no OME multiscales; point at one array")


def _dimension_error(path: Path, shape: tuple[int, ...], axes: str | None) -> InputError:
    named = f" (axes {axes})" if axes else ""
    return InputError(
        f"{path} has {len(shape)} dimensions {shape}{named}; expected a 3-D stack [Z, Y, X] or [Z, Y, X, C]"
    )


def parse_axes(text: str, shape: Sequence[int], path: Path) -> str:
    """``--axes`` checked against the array: the letters Z, Y, X once each, C and T at most once,
    one letter per dimension. Returns the letters in upper case."""
    axes = text.strip().upper()
    if sorted(axes) != sorted(set(axes)) or not set("ZYX") <= set(axes) or not set(axes) <= set("ZYXCT"):
        raise InputError(
            f"--axes {text!r}: name each of Z, Y, X once, plus C (channel) and T (time) if the array has them, "
            "e.g. --axes ZYX, XYZ or ZCYX"
        )
    if len(axes) != len(shape):
        raise InputError(
            f"--axes {text} names {len(axes)} axes but {path} has {len(shape)} dimensions {tuple(shape)}; give one letter per dimension"
        )
    return axes


def _named(axes: str | None, shape: tuple[int, ...]) -> bool:
    """Whether a file's ``axes`` name its axes (ImageJ, OME) rather than guess them (tifffile)."""
    return axes is not None and len(axes) == len(shape) and {"Y", "X"} <= set(axes) and bool(set(axes) & set("ZCT"))


def _layout(
    path: Path, shape: tuple[int, ...], axes: str | None, declared: bool = False
) -> tuple[tuple[int, int, int], int | None]:
    """The array axes of Z, X, Y and of the channel (or None), from metadata where it names them.

    Without axis names the seed's reading applies: ``[Z, X, Y]`` or ``[Z, X, Y, C]``. tifffile's
    own guesses (``QYX``, ``SYX`` for a 3-slice stack, ``QYXS``) are not names: only files that
    name Z, C or T (ImageJ, OME) are read by name, and ``declared`` axes (``--axes``). With them,
    the row axis ``Y`` is the seed's X and the column axis ``X`` its Y; ``C``/``S`` is the
    channel wherever it sits (ImageJ stores ``ZCYX``, OME ``CZYX``);
    a single time point is taken as is; the one remaining axis (``Z``, or tifffile's unnamed
    ``Q``) is Z. A 2-D colour image (tifffile's ``YXS``) is refused like any 2-D image.
    """
    if not declared and axes in ("YXS", "YXC"):
        raise InputError(
            f"{path} is a 2-D RGB image (axes {axes}); SKOOTS segments 3-D stacks"
            f" (if it is a stack of {shape[2]} slices, say so with --axes YXZ)"
        )
    if axes is not None and (declared or _named(axes, shape)):
        rest = [i for i, a in enumerate(axes) if a not in "YX"]
        times = [i for i in rest if axes[i] == "T"]
        for t in times:
            if shape[t] != 1:
                raise InputError(f"{path} is a time series ({shape[t]} time points, axes {axes}); save one time point as a volume and segment that")
        channels = [i for i in rest if axes[i] in "CS" and shape[i] > 1] or [i for i in rest if axes[i] in "CS"][:1]
        spatial = [i for i in rest if i not in times and axes[i] not in "CS"]
        if len(channels) > 1 or len(spatial) != 1:
            raise _dimension_error(path, shape, axes)
        return (spatial[0], axes.index("Y"), axes.index("X")), (channels[0] if channels else None)
    if len(shape) == 3:
        return (0, 1, 2), None
    if len(shape) == 4:
        return (0, 1, 2), 3
    raise _dimension_error(path, shape, axes)


def _open(path: Path) -> tuple[Any, str | None]:
    """The array stored at ``path`` (TIFF, Zarr array, OME-Zarr image), lazily where possible,
    and its axis letters where the file names them."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        if not path.is_file():
            raise InputError(f"{path} is not a file")
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {path}: permission denied")
        return _open_tiff(path)
    if name.endswith(ZARR_SUFFIXES) or path.is_dir():
        return _open_zarr(path)
    raise InputError(f"{path}: unknown input format; use a .tif/.tiff file or a .zarr store")


def read_volume(path: str | Path, channel: int | None = None, axes: str | None = None) -> Volume:
    """Open ``path`` (TIFF, Zarr array, OME-Zarr image) as a single-channel ``[X, Y, Z]`` volume.

    Axes follow the seed (``[Z, Y, X]`` or ``[Z, Y, X, C]`` on disk, in napari's letters) unless
    ``axes`` declares them (``--axes``: ``XYZ``, ``ZCYX``, ...) or the file names them
    (ImageJ/OME TIFF, OME-Zarr), in which case the named channel and Z axes are used. ``channel``
    picks a channel; by default a single channel is taken as is, and with more than 3 channels
    channel 2 is used (the seed's rule).

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file; unsupported dimensionality, dtype or channel; bad ``axes``.
    """
    path = Path(path)
    array, file_axes = _open(path)
    dtype = np.dtype(array.dtype)
    if dtype.name not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path} holds {dtype.name} voxels; SKOOTS reads uint8, uint16 or float (already normalised) — convert it"
        )
    shape = tuple(int(n) for n in array.shape)
    if any(n == 0 for n in shape):
        raise InputError(f"{path} is empty (shape {shape})")
    declared = axes is not None
    axes = parse_axes(axes, shape, path) if axes is not None else file_axes
    spatial, channel_axis = _layout(path, shape, axes, declared)
    axes_from = "--axes" if declared else "file" if _named(axes, shape) else "default"
    read_as = dict(axes_from=axes_from, axes=axes if axes_from != "default" else "ZYX" if channel_axis is None else "ZYXC")
    fixed = {i: 0 for i in range(len(shape)) if i not in spatial and i != channel_axis}
    if channel_axis is None:
        if channel not in (None, 0):
            raise InputError(f"--channel {channel} is out of range: {path} has one channel")
        return _finite(Volume(_XYZView(array, spatial, fixed), path, **read_as))
    channels = shape[channel_axis]
    channel_from = "--channel" if channel is not None else "only" if channels == 1 else "default"
    if channel is None:
        if channels == 1:
            channel = 0
        elif channels > 3:
            channel = 2
        else:
            raise InputError(f"{path} has {channels} channels; choose one with --channel 0..{channels - 1}")
    if not 0 <= channel < channels:
        raise InputError(f"--channel {channel} is out of range: {path} has channels 0..{channels - 1}")
    view = _XYZView(array, spatial, {**fixed, channel_axis: channel})
    return _finite(Volume(view, path, channel=channel, channels=channels, channel_from=channel_from, **read_as))


def read_labels(path: str | Path) -> np.ndarray:
    """Read a 3-D label volume whole, in its stored axis order (``[Z, X, Y]`` for our outputs).

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D, or not integer labels.
    """
    path = Path(path)
    array, _ = _open(path)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "ui":
        raise InputError(f"{path} holds {dtype.name} values; a label volume holds integers (0 = background)")
    if len(array.shape) != 3:
        raise InputError(f"{path} has {len(array.shape)} dimensions {tuple(array.shape)}; a label volume is 3-D [Z, X, Y]")
    labels = np.asarray(array[...])
    if dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{path} holds negative labels; labels are 0 (background) or positive")
    return labels


def _finite(volume: Volume, slab_bytes: int = 64 << 20) -> Volume:
    """Refuse float volumes holding NaN or infinity before any crop is sent: the network would
    turn them into NaN vectors and garbage labels. One pass over the volume, a slab at a time."""
    if volume.dtype.kind != "f":
        return volume
    x, y, z = volume.shape
    step = max(1, slab_bytes // max(1, x * y * volume.dtype.itemsize))
    for z0 in range(0, z, step):
        slab = volume.data[:, :, z0 : z0 + step]
        if not np.isfinite(slab).all():
            bad = np.argwhere(~np.isfinite(slab))[0]
            where = describe_shape((bad[0], bad[1], bad[2] + z0))
            raise InputError(
                f"{volume.path} holds NaN or infinite values (first at {where}); replace them before segmenting"
            )
    return volume


def check_destination(option: str, path: Path, suffixes: tuple[str, ...], hint: str) -> None:
    """Fail before any work if a file of one of ``suffixes`` cannot be written at ``path``
    (given with ``option``); ``hint`` says what to give instead of another extension."""
    if not path.name.lower().endswith(suffixes):
        raise OutputError(f"{option} {path}: {hint}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: folder {parent} is not writable")


def check_not_input(option: str, path: Path, inputs: Sequence[Path]) -> None:
    """Refuse a destination that would write over an input, ``--overwrite`` or not: the input
    itself (same path, a symbolic link to it, a hard link: same device and inode), a path
    inside an input (a Zarr store is a folder), or a folder that holds an input (replacing it
    would delete the input)."""
    target = path.resolve()
    for source in inputs:
        if not source.exists():
            continue
        origin = source.resolve()
        same = target == origin
        if not same and path.exists():
            mine, theirs = path.stat(), source.stat()
            same = (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
        where = (
            "is the input" if same else
            "lies inside the input" if origin in target.parents else
            "holds the input" if target in origin.parents else None
        )
        if where:
            raise OutputError(f"{option} {path} {where} {source}; choose another path (the input is never overwritten, --overwrite or not)")


def intermediates_path(out: Path) -> Path:
    """Where ``--save-intermediates`` writes: ``<out stem>_intermediates.zarr`` beside ``out``."""
    return out.with_name(out.name.split(".")[0] + "_intermediates.zarr")


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail before any work if the labels cannot be written at ``path``."""
    check_destination("--out", path, TIFF_SUFFIXES + ZARR_SUFFIXES, "unknown extension; use .tif, .tiff, .zarr or .ome.zarr")
    if path.exists() and not overwrite:
        raise OutputError(f"--out {path} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def _staged(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a private path beside ``path`` to write to; on success move it into place.

    Nothing is left at ``path`` or beside it if writing fails.
    """
    check_output_path(path, overwrite)
    staged = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield staged / path.name
        _replace(staged / path.name, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _replace(staged: Path, path: Path) -> None:
    """Move the finished ``staged`` to ``path``, replacing what is there."""
    if path.is_dir() and not path.is_symlink():
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        path.rename(old)
        staged.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, path)


def write_labels(path: str | Path, labels_xyz: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``[X, Y, Z]`` labels as ``[Z, X, Y]`` at ``path``, atomically.

    ``.tif``: zlib-compressed; ImageJ hyperstack metadata (axes ZYX) for uint8/uint16 so Fiji
    opens it as a stack, plain ZYX TIFF for uint32 (ImageJ format has no 32-bit integers).
    ``.ome.zarr``: an OME-NGFF 0.4 image (napari opens it); ``.zarr``: a plain array.
    Planes are transposed one slab at a time, never the whole volume at once.
    """
    path = Path(path)
    with _staged(path, overwrite) as target:
        if path.name.lower().endswith(TIFF_SUFFIXES):
            _write_tiff(target, labels_xyz)
        else:
            _write_zarr(target, labels_xyz, ome=path.name.lower().endswith(".ome.zarr"))
    return path


def _zxy_shape(labels_xyz: np.ndarray) -> tuple[int, int, int]:
    x, y, z = labels_xyz.shape
    return (z, x, y)


def _write_tiff(path: Path, labels_xyz: np.ndarray) -> None:
    import tifffile

    imagej = labels_xyz.dtype in (np.uint8, np.uint16)
    tifffile.imwrite(
        path,
        (np.ascontiguousarray(labels_xyz[:, :, z]) for z in range(labels_xyz.shape[2])),
        shape=_zxy_shape(labels_xyz),
        dtype=labels_xyz.dtype,
        imagej=imagej,
        metadata={"axes": "ZYX"},
        compression="zlib",
        photometric="minisblack",
    )


def _write_zarr(path: Path, labels_xyz: np.ndarray, ome: bool) -> None:
    import zarr

    shape = _zxy_shape(labels_xyz)
    chunks = (min(shape[0], 32), min(shape[1], 256), min(shape[2], 256))
    if not ome:
        array = zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=labels_xyz.dtype)
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        array = group.create_array("0", shape=shape, chunks=chunks, dtype=labels_xyz.dtype, chunk_key_encoding={"name": "v2", "separator": "/"})
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "name": path.name,
                "axes": [{"name": a, "type": "space"} for a in ("z", "y", "x")],
                "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}],
            }
        ]
        group.attrs["image-label"] = {"version": "0.4"}  # napari-ome-zarr opens it as a Labels layer
    for z in range(0, shape[0], chunks[0]):  # one slab of whole chunks at a time
        array[z : z + chunks[0]] = labels_xyz[:, :, z : z + chunks[0]].transpose(2, 0, 1)


def write_intermediates(out: Path, arrays: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write skeleton, vectors and probability as arrays of ``<out stem>_intermediates.zarr``."""
    import zarr

    path = intermediates_path(out)
    with _staged(path, overwrite) as target:
        group = zarr.open_group(str(target), mode="w")
        for key, array in arrays.items():
            host = array.get() if hasattr(array, "get") else np.asarray(array)
            zyx = host.transpose(*range(host.ndim - 3), host.ndim - 1, host.ndim - 3, host.ndim - 2)
            group.create_array(key, data=np.ascontiguousarray(zyx))
        group.attrs["axes"] = "([C,] Z, X, Y) as the input"
    return path
