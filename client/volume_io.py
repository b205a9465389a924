"""Read microscopy volumes and write label volumes (TIFF, Zarr, OME-Zarr).

On disk a volume is ``[Z, Y, X]`` or ``[Z, Y, X, C]`` as Fiji and napari name the axes (the
seed's ``[Z, X, Y]``), unless the file or ``--axes`` says otherwise; the runtime works in the
seed's ``[X, Y, Z]`` (X = rows, docs/AXES.md) and writes labels back as ``[Z, Y, X]``. Reading
is lazy where the format allows (memory-mapped TIFF, chunked Zarr): crops are cut from a view.

Not split: not yet. Five jobs (length units and voxel sizes, reading, destination checks, staging,
writers) that issue 19 separates; the unit table already moved to skoots_export.contract.units.
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

from skoots_export.contract.errors import OptionError
from skoots_export.contract.units import LENGTH_UNITS, length_unit

from .atomic import staged
from .destinations import check_destination
from .errors import InputError, OutputError
from .voxel_size import UNKNOWN_VOXEL_SIZE, UnitOption, VoxelSize, ome_zarr_voxel_size

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float16", "float32", "float64")
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


def _tiff_voxel_size(path: Path) -> VoxelSize | None:
    """OME-TIFF ``PhysicalSize{X,Y,Z}`` (+ unit, default µm), else ImageJ ``spacing`` and
    X/Y resolution tags (pixels per unit) with its ``unit``."""
    import xml.etree.ElementTree as ElementTree

    import tifffile

    with _tifffile_log(), tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            pixels = next((e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")), None)
            if pixels is None or "PhysicalSizeX" not in pixels.attrib:
                return None
            sizes, units = [], set()
            for axis in "YXZ":  # runtime X = rows (OME Y), Y = columns (OME X), Z
                sizes.append(float(pixels.attrib.get(f"PhysicalSize{axis}", 1.0)))
                units.add(pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm"))
            try:
                unit = length_unit(units.pop()) if len(units) == 1 else None
            except OptionError:
                unit = None
            return VoxelSize(tuple(sizes), unit) if unit else None  # type: ignore[arg-type]
        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            tags = tif.pages[0].tags

            def size(tag: str) -> float:
                value = tags[tag].value if tag in tags else (1, 1)
                return float(value[1]) / float(value[0]) if value[0] else 1.0

            sizes = (size("YResolution"), size("XResolution"), float(meta.get("spacing", 1.0)))
            try:
                unit = length_unit(str(meta["unit"])) if "unit" in meta else None
            except OptionError:
                unit = None
            if unit is None:
                return None
            return VoxelSize(sizes, unit)
    return None


def _multiscales(attrs: dict[str, Any]) -> Any:
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _image_of_level(path: Path) -> tuple[Path, Any, int | None] | None:
    """For ``IMAGE.ome.zarr/LEVEL`` (a level's array, or a path where one is missing): the
    image, its multiscales and the level's index among its datasets (None when no dataset has
    that path). None when no folder above ``path`` is an OME-Zarr image."""
    import zarr

    for image in list(path.parents)[:2]:
        if not (image / ".zattrs").exists() and not (image / "zarr.json").exists():
            continue
        try:
            multiscales = _multiscales(zarr.open_group(str(image), mode="r").attrs.asdict())
            paths = [str(d["path"]).strip("/") for d in multiscales[0]["datasets"]]
        except Exception:  # noqa: BLE001 - not an image: the path is read as it is
            continue
        inside = path.relative_to(image).as_posix()
        return image, multiscales, paths.index(inside) if inside in paths else None
    return None


def level_names(multiscales: Any) -> str:
    """``0 (s0), 1 (s1), 2 (s2)``: a multiscale image's levels and their paths, for errors."""
    return ", ".join(f"{i} ({d['path']})" for i, d in enumerate(multiscales[0]["datasets"]))


def level_path(path: Path, level: int) -> Path:
    """``--level N``: the path of level ``N`` (its ``N``-th dataset) of the OME-Zarr image at ``path``."""
    import zarr

    try:
        multiscales = _multiscales(zarr.open_group(str(path), mode="r").attrs.asdict())
        datasets = multiscales[0]["datasets"]
    except Exception:  # noqa: BLE001 - whatever it is, it has no levels
        raise InputError(f"--level {level}: {path} is not an OME-Zarr image with resolution levels; drop --level") from None
    if not 0 <= level < len(datasets):
        raise InputError(f"--level {level}: {path} has levels {level_names(multiscales)}; choose one of them")
    return path / str(datasets[level]["path"]).strip("/")


def read_voxel_size(path: str | Path) -> VoxelSize | None:
    """The voxel size a file states (OME-Zarr scale and units, OME-TIFF physical sizes,
    ImageJ spacing/resolution, our plain Zarr attributes), or None when it states none."""
    from . import stores

    store = stores.store_of(path)
    if store is not None:  # N5, precomputed, Zarr by URL: their own metadata (client/stores)
        return stores.read_voxel_size(store)
    path = Path(path)
    try:
        if path.name.lower().endswith(TIFF_SUFFIXES):
            return _tiff_voxel_size(path)
        import zarr

        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 - unreadable files are reported when their data is read
        return None
    attrs = node.attrs.asdict()
    multiscales = _multiscales(attrs)
    if multiscales:
        return ome_zarr_voxel_size(multiscales)
    level = _image_of_level(path) if isinstance(node, zarr.Array) else None
    if level is not None and level[2] is not None:
        return ome_zarr_voxel_size(level[1], level[2])
    if "voxel_size_zyx" in attrs:
        z, x, y = (float(v) for v in attrs["voxel_size_zyx"])
        return VoxelSize((x, y, z), attrs.get("unit"))
    return None


def resolve_voxel_size(
    option: VoxelSize | UnitOption | None, stated: VoxelSize | None, path: Path, warn: Any = None
) -> VoxelSize:
    """The voxel size to use: ``--voxel-size`` wins over what ``path`` states; a disagreement
    is reported through ``warn`` (one line). Unknown when neither says. ``--unit`` alone
    (:class:`UnitOption`) names the unit of a scale ``path`` states without one."""
    if isinstance(option, UnitOption):
        symbol = LENGTH_UNITS[option.unit][0]
        if stated is None:
            raise InputError(f"--unit needs --voxel-size: {path} states no scale for {symbol} to apply to; "
                             f"give both, e.g. --voxel-size 0.5,0.5,2 --unit {symbol}")
        if stated.unit is not None and stated.unit != option.unit:
            raise InputError(f"--unit {symbol}: {path} states its voxel size in {stated.unit} ({stated.describe()}); "
                             "drop --unit, or give --voxel-size with it")
        return VoxelSize(stated.xyz, option.unit)
    if option is not None and stated is not None and warn is not None:
        same = (option.unit is None) == (stated.unit is None) and np.allclose(option.in_metres(), stated.in_metres(), rtol=1e-6, atol=0)
        if not same:
            warn(f"--voxel-size {option.describe()} differs from {path}'s metadata {stated.describe()}; using --voxel-size")
    return option or stated or UNKNOWN_VOXEL_SIZE


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
    from .stores.reader import zarr_windows  # TensorStore reads the windows where installed (client/stores)

    if isinstance(node, zarr.Array):
        level = _image_of_level(path)  # IMAGE.ome.zarr/LEVEL: the image names its axes
        return zarr_windows(node), None if level is None or level[2] is None else _ome_axes(level[1])
    multiscales = _multiscales(node.attrs.asdict())
    if multiscales:
        return zarr_windows(node[multiscales[0]["datasets"][0]["path"]]), _ome_axes(multiscales)
    arrays = list(node.array_keys())
    if len(arrays) == 1:
        return zarr_windows(node[arrays[0]]), None
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
    from . import stores

    store = stores.store_of(path)
    if store is not None:  # N5, precomputed, Zarr by URL: TensorStore (client/stores)
        opened = stores.open_volume(store)
        return opened.array, opened.axes
    if not path.exists():
        level = _image_of_level(path)
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
        return _open_zarr(path)
    raise InputError(f"{path}: unknown input format; use a .tif/.tiff file or a .zarr store")


def read_volume(path: str | Path, channel: int | None = None, axes: str | None = None, *, check_finite: bool = True) -> Volume:
    """Open ``path`` (TIFF, Zarr array, OME-Zarr image) as a single-channel ``[X, Y, Z]`` volume.

    Axes follow the seed (``[Z, Y, X]`` or ``[Z, Y, X, C]`` on disk, in napari's letters) unless
    ``axes`` declares them (``--axes``: ``XYZ``, ``ZCYX``, ...) or the file names them
    (ImageJ/OME TIFF, OME-Zarr), in which case the named channel and Z axes are used. ``channel``
    picks a channel; by default a single channel is taken as is, and with more than 3 channels
    channel 2 is used (the seed's rule). ``check_finite=False`` skips the pass over float input
    that refuses NaN (a blockwise worker's: the client checked it, and each crop is checked too).

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file; unsupported dimensionality, dtype or channel; bad ``axes``.
    """
    path = path if _is_store(path) else Path(path)  # a StoreUrl: N5, precomputed, Zarr by URL
    array, file_axes = _open(path)
    return _as_volume(array, path, file_axes, channel, axes, check_finite)


def volume_from_array(array: Any, channel: int | None = None, axes: str | None = None) -> Volume:
    """A NumPy, Dask or Zarr array (anything with ``shape``, ``dtype`` and slicing) as a
    single-channel ``[X, Y, Z]`` volume, read as :func:`read_volume` reads a file: ``[Z, Y, X]``
    or ``[Z, Y, X, C]`` unless ``axes`` says otherwise. Lazy arrays stay lazy: crops are cut
    from a view. Its ``path`` names the kind of array (``<numpy array>``) for messages.

    >>> import numpy as np
    >>> volume_from_array(np.zeros((4, 6, 8), np.uint8)).shape  # [X, Y, Z]: rows, columns, slices
    (6, 8, 4)
    """
    if not all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        raise InputError(f"cannot segment a {type(array).__name__}: give a NumPy, Dask or Zarr array, or a file path")
    kind = type(array).__module__.split(".")[0]
    return _as_volume(array, Path(f"<{kind} array>"), None, channel, axes, True)


def _as_volume(array: Any, path: Path, file_axes: str | None, channel: int | None, axes: str | None,
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
    read_as = dict(axes_from=axes_from, axes=axes if axes_from != "default" else "ZYX" if channel_axis is None else "ZYXC")
    fixed = {i: 0 for i in range(len(shape)) if i not in spatial and i != channel_axis}
    if channel_axis is None:
        if channel not in (None, 0):
            raise InputError(f"--channel {channel} is out of range: {path} has one channel")
        return _finite(Volume(_XYZView(array, spatial, fixed), path, **read_as), check_finite)
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
    return _finite(Volume(view, path, channel=channel, channels=channels, channel_from=channel_from, **read_as), check_finite)


def read_labels(path: str | Path) -> np.ndarray:
    """Read a 3-D label volume whole, in its stored axis order (``[Z, X, Y]`` for our outputs).

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D, or not integer labels.
    """
    path = path if _is_store(path) else Path(path)
    array, _ = _open(path)
    dtype = _label_dtype(path, array)
    if len(array.shape) != 3:
        raise InputError(f"{path} has {len(array.shape)} dimensions {tuple(array.shape)}; a label volume is 3-D [Z, X, Y]")
    labels = np.asarray(array[...])
    if dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{path} holds negative labels; labels are 0 (background) or positive")
    return labels


def _is_store(path: Any) -> bool:
    """Whether ``path`` is a :class:`~skoots_client.stores.StoreUrl` (N5, precomputed, Zarr by URL)."""
    from .stores import is_store

    return is_store(path)


def _label_dtype(path: Path, array: Any) -> np.dtype:
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "ui":
        raise InputError(f"{path} holds {dtype.name} values; a label volume holds integers (0 = background)")
    return dtype


def open_labels(path: str | Path) -> Volume:
    """A label volume as a lazy ``[X, Y, Z]`` view: ``[Z, X, Y]`` on disk, or the axes a file
    names (an NGFF label image's single time point is taken as is). Negative labels are found
    by whoever reads the data.

    Raises
    ------
    InputError
        Missing or unreadable file, not one 3-D volume, or not integer labels.
    """
    path = path if _is_store(path) else Path(path)
    array, axes = _open(path)
    _label_dtype(path, array)
    shape = tuple(int(n) for n in array.shape)
    spatial, channel_axis = _layout(path, shape, axes)
    if channel_axis is not None and shape[channel_axis] > 1:
        raise InputError(f"{path} has {shape[channel_axis]} channels; a label volume is 3-D [Z, X, Y]")
    return Volume(_XYZView(array, spatial, {i: 0 for i in range(len(shape)) if i not in spatial}), path)


def _finite(volume: Volume, check: bool = True, slab_bytes: int = 64 << 20) -> Volume:
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
    try:
        with staged(path) as target:
            yield target
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def write_labels(
    path: str | Path, labels_xyz: np.ndarray, *, overwrite: bool = False, voxel_size: VoxelSize | None = None,
    properties: list[dict[str, Any]] | None = None, ngff_version: str = "0.4",
) -> Path:
    """Write ``[X, Y, Z]`` labels as ``[Z, X, Y]`` at ``path``, atomically, with their voxel size.

    ``.tif``: zlib-compressed; ImageJ hyperstack metadata (axes ZYX, spacing, resolution and
    unit, so Fiji shows physical sizes) for uint8/uint16, an OME-TIFF (``PhysicalSize*``) for
    uint32 (ImageJ format has no 32-bit integers). ``.ome.zarr``: an OME-NGFF label image with a
    multiscale pyramid, scale and units (napari opens it as labels), NGFF ``ngff_version``, with
    ``properties`` (one dict per label) in its ``image-label``; ``.zarr``: a plain array with the
    voxel size in its attributes. Planes are transposed one slab at a time.
    """
    from . import stores
    from .ngff import pyramid, spatial_axes, write_label_image

    if stores.is_store(path):  # precomputed:// or n5:// (client/stores)
        return stores.write_labels(path, labels_xyz, overwrite=overwrite, voxel_size=voxel_size, properties=properties)
    path = Path(path)
    size = voxel_size or UNKNOWN_VOXEL_SIZE
    with _staged(path, overwrite) as target:
        if path.name.lower().endswith(TIFF_SUFFIXES):
            _write_tiff(target, labels_xyz, size)
        elif path.name.lower().endswith(".ome.zarr"):
            write_label_image(target, labels_xyz, pyramid(_zxy_shape(labels_xyz), size.zyx), spatial_axes(size.unit),
                              version=ngff_version, properties=properties)
        else:
            _write_zarr(target, labels_xyz, size)
    return path


def _zxy_shape(labels_xyz: np.ndarray) -> tuple[int, int, int]:
    x, y, z = labels_xyz.shape
    return (z, x, y)


def _tiff_size_metadata(size: VoxelSize, imagej: bool) -> dict[str, Any]:
    """tifffile arguments stating ``size``: ImageJ spacing/unit + resolution, or OME sizes."""
    if size.unit is None:
        return {"metadata": {"axes": "ZYX"}}
    x, y, z = size.xyz  # file columns are the runtime's Y: TIFF X resolution is 1 / Y size
    if imagej:
        return {"resolution": (1 / y, 1 / x), "metadata": {"axes": "ZYX", "spacing": z, "unit": size.symbol}}
    unit = "µm" if size.unit == "micrometer" else size.symbol.replace("A", "Å")
    return {"ome": True, "metadata": {"axes": "ZYX", "PhysicalSizeX": y, "PhysicalSizeY": x, "PhysicalSizeZ": z,
                                      **{f"PhysicalSize{a}Unit": unit for a in "XYZ"}}}


def _write_tiff(path: Path, labels_xyz: np.ndarray, size: VoxelSize) -> None:
    import tifffile

    imagej = labels_xyz.dtype in (np.uint8, np.uint16)
    tifffile.imwrite(
        path,
        (np.ascontiguousarray(labels_xyz[:, :, z]) for z in range(labels_xyz.shape[2])),
        shape=_zxy_shape(labels_xyz),
        dtype=labels_xyz.dtype,
        imagej=imagej,
        compression="zlib",
        photometric="minisblack",
        **_tiff_size_metadata(size, imagej),
    )


def _write_zarr(path: Path, labels_xyz: np.ndarray, size: VoxelSize) -> None:
    shape = _zxy_shape(labels_xyz)
    chunks = (min(shape[0], 32), min(shape[1], 256), min(shape[2], 256))
    array = create_labels_array(path, shape, labels_xyz.dtype, chunks, voxel_size=size)
    for z in range(0, shape[0], chunks[0]):  # one slab of whole chunks at a time
        array[z : z + chunks[0]] = labels_xyz[:, :, z : z + chunks[0]].transpose(2, 0, 1)


def keep_labels(error: BaseException, labels_xyz: np.ndarray, voxel_size: VoxelSize, destinations: Sequence[Path],
                folders: Sequence[Path] = (), written: Sequence[Path] = ()) -> OutputError:
    """The one-line error for a write that failed after the labels were computed, with the
    labels kept: saved as a plain Zarr array ``NAME.partial-XXXX.zarr`` in the first folder of
    the destinations' own, then ``folders``, then the temporary folder, that takes it.

    Labels cost a whole inference; a full disk, a destination that went away or a writer's bug
    must not throw them away. ``error`` is the failure (a ``ClientError`` keeps its text,
    anything else is named by its type)."""
    from .errors import ClientError

    reason = str(error) if isinstance(error, ClientError) else (
        f"writing the labels failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'})")
    if written:
        return OutputError(f"{reason} — the labels were written to {written[0]}")
    stem = destinations[0].name.split(".")[0] if destinations else "labels"
    tried = []
    for folder in [*(d.parent for d in destinations), *folders, Path(tempfile.gettempdir())]:
        try:
            saved = Path(tempfile.mkdtemp(prefix=f"{stem}.partial-", suffix=".zarr", dir=folder))
        except OSError as e:
            tried.append(f"{folder}: {e.strerror or e}")
            continue
        try:
            _write_zarr(saved, labels_xyz, voxel_size)
        except Exception as e:  # noqa: BLE001 - try the next place
            shutil.rmtree(saved, ignore_errors=True)
            tried.append(f"{folder}: {e.strerror if isinstance(e, OSError) and e.strerror else e}")
            continue
        return OutputError(f"{reason} — the labels are kept in {saved} (a Zarr array [Z, Y, X] with the voxel size; "
                           "napari, zarr and skoots-client measure open it); free the destination and copy them from there")
    return OutputError(f"{reason} — and the labels could not be kept anywhere ({'; '.join(tried)})")


def create_labels_array(
    path: Path, shape_zxy: tuple[int, int, int], dtype: Any, chunks: tuple[int, int, int], *,
    voxel_size: VoxelSize | None = None, ngff_version: str = "0.4",
) -> Any:
    """An empty ``[Z, X, Y]`` label array at ``path`` for writing block by block, stating its
    voxel size as :func:`write_labels` does: a plain Zarr array (``voxel_size_attrs``), or for
    ``.ome.zarr`` an NGFF ``ngff_version`` label image with :func:`write_labels`'s levels, scales
    and translations, whose level ``0`` is returned. Every level is chunked by ``chunks``
    (capped by its shape), so the coarser levels can be filled region by region from level 0
    once it is written (blockwise/pyramid.py)."""
    from .ngff import create_label_image, pyramid, spatial_axes

    size = voxel_size or UNKNOWN_VOXEL_SIZE
    if not path.name.lower().endswith(".ome.zarr"):
        import zarr

        array = zarr.open_array(str(path), mode="w", shape=shape_zxy, chunks=chunks, dtype=dtype)
        array.attrs.update(voxel_size_attrs(size))
        return array
    return create_label_image(path, pyramid(shape_zxy, size.zyx), spatial_axes(size.unit), dtype,
                              version=ngff_version, chunks_zyx=chunks)[0]


def voxel_size_attrs(size: VoxelSize) -> dict[str, Any]:
    """Attributes of a plain Zarr output that state its voxel size (read back by read_voxel_size)."""
    return {"voxel_size_zyx": list(size.zyx), "unit": size.unit}


def write_intermediates(out: Path, arrays: dict[str, Any], *, overwrite: bool = False, voxel_size: VoxelSize | None = None) -> Path:
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
        group.attrs.update(voxel_size_attrs(voxel_size or UNKNOWN_VOXEL_SIZE))
    return path
