"""Open microscopy volumes (TIFF, Zarr, OME-Zarr; N5, precomputed and Zarr by URL through
client/stores) as single-channel ``[X, Y, Z]`` volumes, and label volumes as labels.

Axes follow the seed (``[Z, Y, X]`` or ``[Z, Y, X, C]`` on disk) unless the file names them
(ImageJ / OME metadata) or ``--axes`` declares them; every refusal is one line naming the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .levels import image_of_level, level_names, multiscales_of
from .stores import Location, StoreUrl
from .volume import SUPPORTED_DTYPES, TIFF_SUFFIXES, ZARR_SUFFIXES, Volume, XYZView, describe_shape

__all__ = ["tifffile_log", "parse_axes", "read_volume", "missing_chunks", "missing_chunks_warning", "volume_from_array",
           "MAX_CHANNELS", "read_labels", "open_labels", "refuse_non_finite"]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tifffile_log() -> Iterator[list[str]]:
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

    with tifffile_log() as problems:
        try:
            with tifffile.TiffFile(path) as tif:
                axes = str(tif.series[0].axes)
        except Exception:  # noqa: BLE001 - a corrupt file is reported below, when its data is read
            axes = None
        array: np.ndarray | None
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


def _open_zarr(path: Path, fill_missing: bool | None = False) -> tuple[Any, str | None]:
    """A Zarr array, an OME-Zarr image's first level or a group's one array; ``fill_missing``
    as `zarr_windows` takes it."""
    import zarr

    if path.is_dir() and not any((path / m).exists() for m in ("zarr.json", ".zarray", ".zattrs", ".zgroup")):
        raise InputError(_no_metadata(path))
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises several kinds for a non-store
        raise InputError(f"cannot open Zarr store {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    from .stores import zarr_windows as tensorstore_windows  # TensorStore reads the windows where installed (client/stores)

    def zarr_windows(array: Any) -> Any:
        return tensorstore_windows(array, fill_missing)

    if isinstance(node, zarr.Array):
        level = image_of_level(path)  # IMAGE.ome.zarr/LEVEL: the image names its axes
        return zarr_windows(node), None if level is None or level[2] is None else _ome_axes(level[1])
    multiscales = multiscales_of(node.attrs.asdict())
    if multiscales:
        return zarr_windows(node[multiscales[0]["datasets"][0]["path"]]), _ome_axes(multiscales)
    arrays = list(node.array_keys())
    if len(arrays) == 1:
        return zarr_windows(node[arrays[0]]), None
    raise InputError(f"{path} is a Zarr group with {len(arrays)} arrays and no OME multiscales; point at one array")


def _no_metadata(path: Path) -> str:
    """The line for a folder without any volume's metadata; it names a precomputed volume
    whose ``info`` is missing (its scales' chunk files are named ``x0-x1_y0-y1_z0-z1``)."""
    import re

    chunk = re.compile(r"^\d+-\d+_\d+-\d+_\d+-\d+$")
    scales = [d for d in sorted(path.iterdir())[:64] if d.is_dir() and any(chunk.match(f.name) for f in list(d.iterdir())[:16])]
    if scales:
        return (f"{path} looks like a Neuroglancer precomputed volume (scale {scales[0].name}) without its info file; "
                "restore info (its metadata) from where the volume came from")
    return (f"{path}: no volume there (no zarr.json / .zarray / .zattrs, attributes.json or info); "
            "point at a Zarr store, an N5 dataset or a precomputed volume")


def _dimension_error(path: Path | StoreUrl, shape: tuple[int, ...], axes: str | None) -> InputError:
    named = f" (axes {axes})" if axes else ""
    return InputError(
        f"{path} has {len(shape)} dimensions {shape}{named}; expected a 3-D stack [Z, Y, X] or [Z, Y, X, C]"
    )


def parse_axes(text: str, shape: Sequence[int], path: Path | StoreUrl) -> str:
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
    path: Path | StoreUrl, shape: tuple[int, ...], axes: str | None, declared: bool = False
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


def _open(path: Path | StoreUrl, fill_missing: bool | None = None) -> tuple[Any, str | None]:
    """The array stored at ``path`` (TIFF, Zarr array, OME-Zarr image), lazily where possible,
    and its axis letters where the file names them. A chunk missing from a chunked store is an
    error when read (``fill_missing`` False), zeros counted (True), or background (None: label
    volumes, whose writers skip chunks of background)."""
    from . import stores

    store = stores.store_of(path)
    if store is not None:  # N5, precomputed, Zarr by URL: TensorStore (client/stores)
        opened = stores.open_volume(store, fill_missing)
        return opened.array, opened.axes
    assert isinstance(path, Path)  # store_of took every StoreUrl
    if not path.exists():
        level = image_of_level(path)
        if level is not None:
            raise InputError(f"{path}: {level[0]} has no level {path.relative_to(level[0]).as_posix()}; "
                             f"its levels are {level_names(level[1])} (or pass --level N)")
        raise InputError(f"input not found: {path}")
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        if not path.is_file():
            raise InputError(f"{path} is not a file")
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {path}: permission denied")
        return _open_tiff(path)
    if name.endswith(ZARR_SUFFIXES) or path.is_dir():
        return _open_zarr(path, fill_missing)
    raise InputError(f"{path}: unknown input format; use a .tif/.tiff file or a .zarr store")


def read_volume(path: str | Path | StoreUrl, channel: int | None = None, axes: str | None = None, *, check_finite: bool = True,
                fill_missing: bool | None = False) -> Volume:
    """Open ``path`` (TIFF, Zarr array, OME-Zarr image) as a single-channel ``[X, Y, Z]`` volume.

    Axes follow the seed (``[Z, Y, X]`` or ``[Z, Y, X, C]`` on disk, in napari's letters) unless
    ``axes`` declares them (``--axes``: ``XYZ``, ``ZCYX``, ...) or the file names them
    (ImageJ/OME TIFF, OME-Zarr), in which case the named channel and Z axes are used. ``channel``
    picks a channel; by default a single channel is taken as is, and with more than 3 channels
    channel 2 is used (the seed's rule); a last axis of more than `MAX_CHANNELS` "channels"
    in the default reading is refused (it is X: ``axes`` names the order). ``check_finite=False`` skips the pass over float input
    that refuses NaN (a blockwise worker's: the client checked it, and each crop is checked too).
    A chunk missing from a chunked store (N5, precomputed, Zarr) is an ``InputError`` when it is
    read, unless ``fill_missing`` (``--fill-missing``): then it reads as zeros, counted
    (`missing_chunks_warning`); None reads it as zeros uncounted (a mask: label-like).

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file; unsupported dimensionality, dtype or channel; bad ``axes``.
    """
    path = Location.of(path).target  # a StoreUrl: N5, precomputed, Zarr by URL
    array, file_axes = _open(path, fill_missing)
    return _as_volume(array, path, file_axes, channel, axes, check_finite)


def missing_chunks(volume: Volume) -> set[tuple[int, ...]]:
    """The chunks a ``fill_missing`` volume has read as zeros so far (grid indices); empty for
    anything but a chunked store."""
    data = volume.data
    while data is not None and not hasattr(data, "filled"):  # through a --roi cutout and the [X, Y, Z] view
        data = getattr(data, "array", None)
    return set(getattr(data, "filled", ()))


def missing_chunks_warning(volume: Volume) -> str | None:
    """How many missing chunks a ``fill_missing`` volume read as zeros, as a warning; or None."""
    from .stores import filled_text

    return filled_text(len(missing_chunks(volume)), volume.path)


def volume_from_array(array: Any, channel: int | None = None, axes: str | None = None) -> Volume:
    """A NumPy, Dask or Zarr array (anything with ``shape``, ``dtype`` and slicing) as a
    single-channel ``[X, Y, Z]`` volume, read as `read_volume` reads a file: ``[Z, Y, X]``
    or ``[Z, Y, X, C]`` unless ``axes`` says otherwise. An array has no file's metadata to
    vouch for its channels: more than 3 need ``channel``, and a last axis longer than
    `MAX_CHANNELS` is refused (it is X; name the axes). Lazy arrays stay lazy: crops are cut
    from a view. Its ``path`` names the kind of array (``<numpy array>``) for messages.

    >>> import numpy as np
    >>> volume_from_array(np.zeros((4, 6, 8), np.uint8)).shape  # [X, Y, Z]: rows, columns, slices
    (6, 8, 4)
    """
    if not all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        raise InputError(f"cannot segment a {type(array).__name__}: give a NumPy, Dask or Zarr array, or a file path")
    kind = type(array).__module__.split(".")[0]
    shape = tuple(int(n) for n in array.shape)
    if axes is None and channel is None and len(shape) == 4 and 3 < shape[3] <= MAX_CHANNELS:
        raise InputError(
            f"<{kind} array> of shape {shape} has {shape[3]} channels (last axis); choose one with channel=0..{shape[3] - 1}"
        )
    return _as_volume(array, Path(f"<{kind} array>"), None, channel, axes, True)


MAX_CHANNELS = 8  # a longer last axis without axis names is X: (2, 48, 384, 384) has 2 channels or time points first


def _many_channels(path: Path | StoreUrl, shape: tuple[int, ...]) -> InputError:
    fix = 'axes="CZYX" (or "TZYX")' if str(path).startswith("<") else "--axes CZYX (or TZYX; axes= in the API)"
    return InputError(f"{path} of shape {shape} would read as [Z, Y, X, C] with {shape[-1]} channels "
                      f"(more than {MAX_CHANNELS}); name its axes, e.g. {fix}")


def _as_volume(array: Any, path: Path | StoreUrl, file_axes: str | None, channel: int | None, axes: str | None,
               check_finite: bool) -> Volume:
    dtype = np.dtype(array.dtype)
    if dtype.name not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path} holds {dtype.name} voxels; SKOOTS reads uint8, uint16, int16 or float (already normalised) — convert it"
        )
    shape = tuple(int(n) for n in array.shape)
    if any(n == 0 for n in shape):
        raise InputError(f"{path} is empty (shape {shape})")
    declared = axes is not None
    axes = parse_axes(axes, shape, path) if axes is not None else file_axes
    spatial, channel_axis = _layout(path, shape, axes, declared)
    axes_from = "--axes" if declared else "file" if _named(axes, shape) else "default"
    read_axes = axes if axes is not None and axes_from != "default" else "ZYX" if channel_axis is None else "ZYXC"
    fixed = {i: 0 for i in range(len(shape)) if i not in spatial and i != channel_axis}
    if axes_from == "default" and channel_axis is not None and shape[channel_axis] > MAX_CHANNELS:
        raise _many_channels(path, shape)
    if channel_axis is None:
        if channel not in (None, 0):
            raise InputError(f"--channel {channel} is out of range: {path} has one channel")
        return refuse_non_finite(Volume(XYZView(array, spatial, fixed), path, axes=read_axes, axes_from=axes_from), check_finite)
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
    view = XYZView(array, spatial, {**fixed, channel_axis: channel})
    return refuse_non_finite(Volume(view, path, channel=channel, channels=channels, channel_from=channel_from, axes=read_axes, axes_from=axes_from), check_finite)


def read_labels(path: str | Path | StoreUrl) -> np.ndarray:
    """Read a 3-D label volume whole, in its stored axis order (``[Z, X, Y]`` for our outputs).

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D, or not integer labels.
    """
    path = Location.of(path).target
    array, _ = _open(path)
    dtype = _label_dtype(path, array)
    if len(array.shape) != 3:
        raise InputError(f"{path} has {len(array.shape)} dimensions {tuple(array.shape)}; a label volume is 3-D [Z, X, Y]")
    labels = np.asarray(array[...])
    if dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{path} holds negative labels; labels are 0 (background) or positive")
    return labels


def _label_dtype(path: Path | StoreUrl, array: Any) -> np.dtype:
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "ui":
        raise InputError(f"{path} holds {dtype.name} values; a label volume holds integers (0 = background): "
                         "give labels (e.g. segment's output), not an intensity image")
    return dtype


def open_labels(path: str | Path | StoreUrl) -> Volume:
    """A label volume as a lazy ``[X, Y, Z]`` view: ``[Z, X, Y]`` on disk, or the axes a file
    names (an NGFF label image's single time point is taken as is). Negative labels are found
    by whoever reads the data.

    Raises
    ------
    InputError
        Missing or unreadable file, not one 3-D volume, or not integer labels.
    """
    path = Location.of(path).target
    array, axes = _open(path)
    _label_dtype(path, array)
    shape = tuple(int(n) for n in array.shape)
    spatial, channel_axis = _layout(path, shape, axes)
    if channel_axis is not None and shape[channel_axis] > 1:
        raise InputError(f"{path} has {shape[channel_axis]} channels; a label volume is 3-D [Z, X, Y]")
    return Volume(XYZView(array, spatial, {i: 0 for i in range(len(shape)) if i not in spatial}), path)


def refuse_non_finite(volume: Volume, check: bool = True, slab_bytes: int = 64 << 20) -> Volume:
    """Refuse float volumes holding NaN or infinity before any crop is sent: the network would
    turn them into NaN vectors and garbage labels. One pass over the volume, a slab at a time."""
    if volume.dtype.kind != "f" or not check:
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
