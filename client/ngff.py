"""OME-NGFF label images: a multiscale label pyramid, standalone or in an image's ``labels/NAME``.

NGFF 0.4 is Zarr v2 (attributes in ``.zattrs``); 0.5 is Zarr v3 (``zarr.json``, attributes
under ``"ome"``). A label image is a multiscale image with ``image-label`` metadata; inside an
image it lives at ``labels/NAME`` and is listed in ``labels/``'s ``"labels"``, with the same
resolution levels as the image (what napari and ome-zarr-py expect).

Pyramid levels are taken by nearest-neighbour sampling: a label value is never blended into
another, and each level is one gather of the full-resolution labels.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .atomic import move_into_place
from .destinations import check_writable
from .errors import OutputError
from .levels import multiscales_of

__all__ = [
    "NGFF_VERSIONS", "MIN_EXTENT", "MAX_LEVELS", "Level", "clean_numbers", "nearest_indices", "pyramid", "spatial_axes",
    "write_zyx", "read_zyx", "level_data", "create_label_image", "add_label_properties", "write_label_image", "ImageLayout",
    "image_layout", "check_labels_into", "write_labels_into", "create_labels_into", "install_labels",
]

if TYPE_CHECKING:
    from zarr.core.chunk_key_encodings import ChunkKeyEncodingParams

NGFF_VERSIONS: dict[str, Literal[2, 3]] = {"0.4": 2, "0.5": 3}  # NGFF version → Zarr format
MIN_EXTENT = 32  # a level is added while its smaller in-plane side stays at least this long
MAX_LEVELS = 5


@dataclass(frozen=True)
class Level:
    """One resolution level: its array path, full shape, scale and translation (in the axes'
    order; the translation puts a coarse voxel's centre where the fine voxels it covers are)."""

    path: str
    shape: tuple[int, ...]
    scale: tuple[float, ...]
    translation: tuple[float, ...] | None = None

    def transformations(self) -> list[dict[str, Any]]:
        """NGFF ``coordinateTransformations``, without float noise (`clean_numbers`)."""
        scale = [{"type": "scale", "scale": clean_numbers(self.scale)}]
        if self.translation is None:
            return scale
        return scale + [{"type": "translation", "translation": clean_numbers(self.translation, self.scale)}]


def clean_numbers(values: Sequence[float], reference: Sequence[float] | None = None) -> list[float]:
    """``values`` rounded to 12 significant digits, as metadata should state them: a level's
    scale computed as ``0.05 * 48 / 24`` is 0.05, not 0.05000000000000001. A value below 1e-9
    of its ``reference`` (the axis' scale, for a translation) is 0: ``(s - s0) / 2`` of two
    scales equal up to rounding is 3.47e-18, meaning none."""
    out = []
    for i, v in enumerate(values):
        v = float(v)
        if reference is not None and abs(v) <= 1e-9 * abs(float(reference[i])):
            v = 0.0
        out.append(float(f"{v:.12g}") + 0.0)  # + 0.0: no -0.0
    return out


def nearest_indices(n_from: int, n_to: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Indices of the voxels of an axis of ``n_from`` that voxels ``start .. stop - 1`` of an
    axis of ``n_to`` sample: the one under each new voxel's centre."""
    return (2 * np.arange(start, n_to if stop is None else stop, dtype=np.int64) + 1) * n_from // (2 * n_to)


def pyramid(shape_zyx: Sequence[int], scale_zyx: Sequence[float], *, min_extent: int = MIN_EXTENT,
            offset_zyx: Sequence[float] | None = None) -> list[Level]:
    """Levels of a label pyramid for a ``[Z, Y, X]`` volume whose first voxel sits at
    ``offset_zyx`` voxels (client/origin.py; none: at the origin).

    Each level halves Y and X (rounding up), and Z too once the Z voxel is no longer than the
    in-plane ones (an anisotropic stack keeps its slices until the levels are near isotropic).
    Levels are added while the smaller in-plane side stays ``>= min_extent``: a 128x128 plane
    gets three levels, a 2048x2048 one five. Every level is translated by the offset (in
    level 0's units) on top of its own half-voxel shift.
    """
    shift = [float(o) * float(s) for o, s in zip(offset_zyx or (0, 0, 0), scale_zyx)]
    levels = [Level("0", tuple(int(n) for n in shape_zyx), tuple(float(s) for s in scale_zyx),
                    tuple(shift) if any(shift) else None)]
    while len(levels) < MAX_LEVELS:
        (z, y, x), (sz, sy, sx) = levels[-1].shape, levels[-1].scale
        if min(-(-y // 2), -(-x // 2)) < min_extent:
            break
        fz = 2 if sz <= min(sy, sx) and z > 1 else 1
        shape = (-(-z // fz), -(-y // 2), -(-x // 2))
        scale = (sz * z / shape[0], sy * y / shape[1], sx * x / shape[2])
        first = levels[0].scale
        levels.append(Level(str(len(levels)), shape, scale, tuple((s - s0) / 2 + t for s, s0, t in zip(scale, first, shift))))
    return levels


def spatial_axes(unit: str | None) -> list[dict[str, str]]:
    return [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]


def write_zyx(array: Any, region_zyx: Sequence[tuple[int, int]], data_zyx: np.ndarray) -> None:
    """Write ``data_zyx`` at ``region_zyx`` (start, stop per axis) of an array whose last axes
    are z, y, x and whose others (time, of an image the labels belong to) have length 1.

    The selection is of the array's full rank and the data of its exact shape: zarr splits an
    assignment that NumPy would broadcast (an integer index on a leading axis, data of one
    more dimension) wrongly across chunks (zarr 3.1.5: "could not broadcast (32,256,400) into
    (32,256,256)" for a t,z,y,x image with planes wider than a chunk)."""
    extra = array.ndim - 3
    selection = (slice(0, 1),) * extra + tuple(slice(lo, hi) for lo, hi in region_zyx)
    array[selection] = np.ascontiguousarray(data_zyx).reshape((1,) * extra + tuple(data_zyx.shape))


def read_zyx(array: Any, selection_zyx: Sequence[Any]) -> np.ndarray:
    """The z, y, x ``selection_zyx`` (slices, or index arrays read orthogonally) of an array
    whose leading axes have length 1, as a ``[Z, Y, X]`` array."""
    extra = array.ndim - 3
    if all(isinstance(s, slice) for s in selection_zyx):
        data = array[(slice(0, 1),) * extra + tuple(selection_zyx)]
    else:
        data = array.get_orthogonal_selection((slice(0, 1),) * extra + tuple(selection_zyx))
    return np.asarray(data).reshape(np.asarray(data).shape[extra:])


def level_data(labels_xyz: np.ndarray, shape_zyx: Sequence[int], z_range: slice) -> np.ndarray:
    """Planes ``z_range`` of the level of shape ``shape_zyx``, as ``[Z, Y, X]``."""
    x, y, z = labels_xyz.shape
    iz = nearest_indices(z, shape_zyx[0])[z_range]
    rows, cols = nearest_indices(x, shape_zyx[1]), nearest_indices(y, shape_zyx[2])
    if shape_zyx[1:] == (x, y):
        slab = labels_xyz[:, :, iz]
    else:
        slab = labels_xyz[rows][:, cols][:, :, iz]
    return np.ascontiguousarray(slab.transpose(2, 0, 1))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def create_label_image(
    path: Path,
    levels: Sequence[Level],
    axes: Sequence[dict[str, str]],
    dtype: Any,
    *,
    version: str = "0.4",
    properties: Sequence[dict[str, Any]] | None = None,
    source_image: str | None = None,
    transformations: Sequence[dict[str, Any]] = (),
    chunks_zyx: Sequence[int] | None = None,
) -> list[Any]:
    """An empty NGFF label image (a new group at ``path``, its metadata written); returns the
    levels' arrays, to be filled by the caller (whole at once, or block by block).

    ``axes`` are the group's axes: z, y, x last, any others (a time axis of an image the labels
    belong to) of length 1 before them. ``properties`` become ``image-label.properties``;
    ``source_image`` its ``source.image`` (``"../../"`` inside an image); ``transformations``
    the multiscale's own ``coordinateTransformations`` (applied after each level's).
    ``chunks_zyx`` caps the chunks (default 32x256x256).
    """
    import zarr

    fmt = NGFF_VERSIONS[version]
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    encoding: ChunkKeyEncodingParams = {"name": "v2", "separator": "/"} if fmt == 2 else {"name": "default", "separator": "/"}
    arrays = []
    for level in levels:
        extra = len(level.shape) - 3
        zyx = level.shape[extra:]
        chunks = (1,) * extra + tuple(min(n, c) for n, c in zip(zyx, chunks_zyx or (32, 256, 256)))
        arrays.append(group.create_array(level.path, shape=level.shape, chunks=chunks, dtype=dtype,
                                         chunk_key_encoding=encoding, fill_value=0))
    multiscale: dict[str, Any] = {
        "name": path.name,
        "axes": list(axes),
        "datasets": [
            {"path": level.path, "coordinateTransformations": level.transformations()} for level in levels
        ],
        **({"coordinateTransformations": list(transformations)} if transformations else {}),
    }
    label: dict[str, Any] = {}
    if properties is not None:
        label["properties"] = list(properties)
    if source_image is not None:
        label["source"] = {"image": source_image}
    if fmt == 2:
        group.attrs.update(_jsonable({"multiscales": [{"version": version, **multiscale}],
                                      "image-label": {"version": version, **label}}))
    else:
        group.attrs["ome"] = _jsonable({"version": version, "multiscales": [multiscale], "image-label": label})
    return arrays


def add_label_properties(path: Path, properties: Sequence[dict[str, Any]]) -> None:
    """Set the ``image-label.properties`` of the label image at ``path`` (written block by
    block, its table known only at the end)."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    attrs: dict[str, Any] = group.attrs.asdict()  # zarr types attributes as JSON, a union the lines below cannot index
    ome = attrs["ome"] if "ome" in attrs else attrs
    ome["image-label"] = {**ome["image-label"], "properties": list(properties)}
    group.attrs.update(_jsonable({"ome": ome} if "ome" in attrs else {"image-label": ome["image-label"]}))


def write_label_image(path: Path, labels_xyz: np.ndarray, levels: Sequence[Level], axes: Sequence[dict[str, str]],
                      **metadata: Any) -> None:
    """Write runtime ``[X, Y, Z]`` labels as an NGFF label image (a new group at ``path``);
    ``metadata`` as `create_label_image` takes it."""
    for level, array in zip(levels, create_label_image(path, levels, axes, labels_xyz.dtype, **metadata)):
        zyx = level.shape[-3:]
        step = array.chunks[-3]
        for z in range(0, zyx[0], step):  # one slab of whole chunks at a time
            data = level_data(labels_xyz, zyx, slice(z, z + step))
            write_zyx(array, ((z, z + data.shape[0]), (0, zyx[1]), (0, zyx[2])), data)


# --- labels inside an image -------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLayout:
    """What the labels of an OME-Zarr image must match: NGFF version, axes and levels, without
    the image's channel axis."""

    version: str
    axes: tuple[dict[str, str], ...]
    levels: tuple[Level, ...]
    transformations: tuple[dict[str, Any], ...] = ()  # the multiscale's own, after each level's

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.levels[0].shape[-3:]  # type: ignore[return-value]


def _multiscale(attrs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """An image's NGFF version as it states it (0.5: ``ome.version``, 0.4: the multiscale's),
    and its first multiscale."""
    multiscales = multiscales_of(attrs)
    if not multiscales:
        raise KeyError("multiscales")
    return (attrs["ome"] if "ome" in attrs else multiscales[0]).get("version"), multiscales[0]


def image_layout(image: Path, option: str = "--labels-into") -> ImageLayout:
    """Read the axes and levels of the OME-Zarr image at ``image`` (not its data)."""
    import zarr

    try:
        group = zarr.open_group(str(image), mode="r")
        version, multiscale = _multiscale(group.attrs.asdict())
        axes = [a if isinstance(a, dict) else {"name": a} for a in multiscale["axes"]]
        names = [str(a["name"]).lower() for a in axes]
        if names[-3:] != ["z", "y", "x"]:
            raise ValueError(f"axes {''.join(names)} do not end in z, y, x")
        kept = [i for i, a in enumerate(axes) if a.get("type") != "channel" and names[i] != "c"]
        levels = []
        for dataset in multiscale["datasets"]:
            array = group[dataset["path"]]
            if not isinstance(array, zarr.Array):
                raise ValueError(f"level {dataset['path']} is a group, not an array")
            shape = array.shape
            given = {t.get("type"): t.get(t.get("type")) for t in dataset.get("coordinateTransformations", [])}
            scale, translation = given.get("scale") or [1.0] * len(axes), given.get("translation")
            levels.append(Level(dataset["path"], tuple(int(shape[i]) for i in kept), tuple(float(scale[i]) for i in kept),
                                None if translation is None else tuple(float(translation[i]) for i in kept)))
        overall = tuple(
            {"type": t["type"], t["type"]: clean_numbers([v for i, v in enumerate(t[t["type"]]) if i in kept])}
            for t in multiscale.get("coordinateTransformations", []) if t.get("type") in ("scale", "translation")
        )
    except (OSError, KeyError, IndexError, TypeError, ValueError, zarr.errors.BaseZarrError) as e:
        raise OutputError(f"{option} {image} is not an OME-Zarr image ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                          "give the image's .ome.zarr folder, or use --out") from e
    fmt = group.metadata.zarr_format
    if version not in NGFF_VERSIONS or NGFF_VERSIONS[version] != fmt:
        version = "0.5" if fmt == 3 else "0.4"
    return ImageLayout(version, tuple(axes[i] for i in kept), tuple(levels), overall)


def check_labels_into(image: Path, name: str, shape_xyz: Sequence[int], overwrite: bool) -> ImageLayout:
    """Fail before any work if labels of ``shape_xyz`` cannot go into ``image``'s ``labels/name``."""
    if not name or name.startswith(".") or "/" in name or name in (".", ".."):
        raise OutputError(f"--label-name {name!r} is not a folder name; use letters, digits, - or _")
    layout = image_layout(image)
    x, y, z = shape_xyz
    if layout.shape_zyx != (z, x, y):
        raise OutputError(f"--labels-into {image} holds an image of z {layout.shape_zyx[0]}, y {layout.shape_zyx[1]}, x {layout.shape_zyx[2]}, "
                          f"but the volume segmented is z {z}, y {x}, x {y}; give the image the input came from")
    check_writable("--labels-into", image, image)  # a probe file: root ignores permission bits, a read-only mount does not
    if (image / "labels" / name).exists() and not overwrite:
        raise OutputError(f"--labels-into {image}: labels/{name} exists; pass --overwrite to replace it, or another --label-name")
    return layout


def write_labels_into(
    image: Path, name: str, labels_xyz: np.ndarray, *, overwrite: bool = False,
    properties: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write labels into ``image/labels/name`` with the image's levels, axes, scales and NGFF
    version, and list them in ``labels/``. The image's own arrays are not touched; the label
    group appears whole or not at all (written aside, then renamed into place)."""
    layout = check_labels_into(image, name, labels_xyz.shape, overwrite)
    staged = Path(tempfile.mkdtemp(prefix=f".labels-{name}.partial-", dir=image))
    try:
        write_label_image(staged / name, labels_xyz, layout.levels, layout.axes, version=layout.version,
                          properties=properties, source_image="../../", transformations=layout.transformations)
        return install_labels(image, name, staged / name, layout, overwrite=True)
    except OSError as e:
        raise OutputError(f"cannot write {image / 'labels' / name}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def create_labels_into(path: Path, layout: ImageLayout, dtype: Any, chunks_zyx: Sequence[int]) -> list[Any]:
    """An empty label image at ``path`` (a staging place) with ``layout``'s levels, axes and
    transformations, to be filled block by block and then installed by `install_labels`."""
    return create_label_image(path, layout.levels, layout.axes, dtype, version=layout.version, source_image="../../",
                              transformations=layout.transformations, chunks_zyx=chunks_zyx)


def install_labels(image: Path, name: str, staged: Path, layout: ImageLayout, *, overwrite: bool) -> Path:
    """Move the finished label image ``staged`` to ``image/labels/name`` (copied first when it
    lies on another filesystem) and list it in ``labels/``. Raises ``OutputError`` if the labels
    are there and ``overwrite`` is not given; ``OSError`` if the image cannot be written."""
    import zarr

    target = image / "labels" / name
    if target.exists() and not overwrite:
        raise OutputError(f"--labels-into {image}: labels/{name} exists; pass --overwrite to replace it, or another --label-name")
    labels = zarr.open_group(str(image / "labels"), mode="a", zarr_format=NGFF_VERSIONS[layout.version])
    move_into_place(staged, target)  # copied first from another file system
    attrs: dict[str, Any] = labels.attrs.asdict()  # zarr types attributes as JSON, a union list() and dict() do not take
    if layout.version == "0.4":
        listed = list(attrs.get("labels", []))
        labels.attrs["labels"] = listed + ([name] if name not in listed else [])
    else:
        ome = dict(attrs.get("ome", {}))
        listed = list(ome.get("labels", []))
        labels.attrs["ome"] = {**ome, "version": layout.version, "labels": listed + ([name] if name not in listed else [])}
    return target
