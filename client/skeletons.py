"""``--skeletons``: each instance's skeleton as a graph, from the skeleton the network predicted.

SKOOTS predicts a skeleton for every object: the (dilated, 6-connected labelled) skeleton
voxels whose component an instance's embeddings were assigned to. Here those voxels, carrying
the instance's final id, are skeletonised by kimimaro's TEASAR (`TEASAR`, anisotropy = the
voxel size in nm) into an osteoid ``Skeleton`` per id: vertices in nm in the volume's physical
frame (Neuroglancer's file axes x = columns, y = rows, z; the precomputed ``voxel_offset``
included, as Igneous places them), edges, and kimimaro's ``radius`` per vertex. They are
written as Neuroglancer precomputed skeletons (`encode_precomputed`, `SKELETON_INFO`) or SWC
(`swc_text`), and measured (`graph_lengths`). Pure functions of arrays; the writers are in
client/stores (precomputed) and `write_swc_folder`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .stores.skeleton_objects import SKELETON_INFO

__all__ = [
    "TEASAR", "SKELETON_INFO", "skeleton_ids", "nanometres", "file_voxels", "merge_fragments", "skeletonize", "empty_skeleton",
    "trace_predicted", "encoded_objects", "encode_precomputed", "swc_text", "swc_folder", "swc_folder_of", "check_skeletons", "write_swc_folder", "graph_lengths", "in_unit", "with_graph_lengths",
]

TEASAR = {"scale": 1.5, "const": 2.0, "pdrf_scale": 100000, "pdrf_exponent": 4}
"""kimimaro's TEASAR parameters: each path invalidates a tube of radius ``scale`` × the distance
to the boundary + ``const`` voxels of the largest voxel side (``const`` here is in voxels;
`skeletonize` turns it into nm): the predicted skeleton is already a thin dilated tube, so a
small constant keeps its branches. The penalty field (``pdrf_*``) and soma handling are kimimaro's defaults."""



def skeleton_ids(components: np.ndarray, keys: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """The final id of each skeleton voxel: ``components`` (its 6-connected skeleton component)
    through ``keys`` (the components that became instances) to ``ids`` (their final ids; default
    1..K in the order of ``keys``); components no instance kept (assigned nothing, or removed by
    ``--min-size``) give 0.

    >>> skeleton_ids(np.array([3, 1, 2], np.uint16), np.array([3, 1])).tolist()
    [1, 2, 0]
    """
    keys = np.asarray(keys, dtype=np.int64)
    ids = np.arange(1, len(keys) + 1) if ids is None else np.asarray(ids)
    top = int(max(np.asarray(components).max(initial=0), keys.max(initial=0)))
    lut = np.zeros(top + 1, dtype=np.uint64 if ids.max(initial=0) >= 2**32 else np.uint32)
    lut[keys] = ids
    return lut[np.asarray(components)]


def nanometres(voxel_size: Any) -> np.ndarray:
    """The voxel size in nm per file axis (x = columns, y = rows, z), as the precomputed
    ``resolution``; a size without a unit is taken as nm as it is (as client/stores does)."""
    x, y, z = voxel_size.in_metres() if voxel_size.unit else voxel_size.xyz
    scale = 1e9 if voxel_size.unit else 1.0
    return np.array([y, x, z], dtype=np.float64) * scale


def file_voxels(offset_xyz: Sequence[float] | None) -> np.ndarray:
    """Runtime X, Y, Z voxels (an offset, rounded as the labels' ``voxel_offset`` is) in file order x, y, z."""
    x, y, z = (int(v) for v in (offset_xyz or (0, 0, 0)))
    return np.array([y, x, z], dtype=np.int64)


def empty_skeleton(segid: int) -> Any:
    """A skeleton without vertices (an instance whose predicted skeleton is gone), with a radius."""
    from osteoid import Skeleton

    skeleton = Skeleton(segid=segid)
    skeleton.radius = np.zeros(0, np.float32)
    return skeleton


def skeletonize(ids_xyz: np.ndarray, voxel_size: Any, origin_xyz: Sequence[float] | None = None, *,
                fix_borders: bool = True) -> dict[int, Any]:
    """TEASAR skeletons (kimimaro) of each nonzero id of ``ids_xyz`` (runtime ``[X, Y, Z]``,
    its first voxel at ``origin_xyz`` voxels of the volume's frame), vertices in nm in file
    order: (voxel + origin) × resolution, computed alike in every block, so the fragments of
    neighbouring blocks share their border vertices bitwise. One per id present, with
    ``radius`` (nm, float32). ``fix_borders`` centres paths that touch the array's faces, so
    that those fragments meet there."""
    import kimimaro

    if not ids_xyz.any():
        return {}
    resolution = nanometres(voxel_size)
    params = {**TEASAR, "const": TEASAR["const"] * float(resolution.max())}
    _osteoid_on_numpy_1()
    found = kimimaro.skeletonize(np.asfortranarray(ids_xyz.transpose(1, 0, 2)), teasar_params=params,
                                 anisotropy=tuple(float(r) for r in resolution), dust_threshold=0, progress=False,
                                 fix_branching=True, fix_borders=fix_borders, parallel=1)
    out = {}
    for segid, skeleton in found.items():
        voxels = np.rint(skeleton.vertices.astype(np.float64) / resolution) + file_voxels(origin_xyz)
        skeleton.vertices = (voxels * resolution).astype(np.float32)
        skeleton.radius = np.asarray(skeleton.radius, np.float32)
        skeleton.extra_attributes = [{"id": "radius", "data_type": "float32", "num_components": 1}]
        out[int(segid)] = skeleton
    return out


def _osteoid_on_numpy_1() -> None:
    """Give osteoid's ``Skeleton`` a ``simple_merge`` that works on NumPy 1.26: kimimaro joins
    each object's paths with it, and osteoid 0.7 counts vertices in a 0-d array of the edges'
    dtype, which ``+=`` of a Python int refuses under NumPy 1's promotion rules (the project
    keeps 1.26). Ours is the same concatenation with the count a Python int: no global NumPy
    state is touched, so threads beside it (a napari viewer, a worker's other tasks) compute as
    they would without it. Installed once per process."""
    from osteoid import Skeleton

    if getattr(Skeleton.__dict__["simple_merge"].__func__, "skoots", False):
        return
    Skeleton.simple_merge = classmethod(_concatenated)


def _concatenated(cls: Any, skeletons: Any) -> Any:
    """osteoid's ``simple_merge``: the skeletons' vertices, edges (renumbered) and vertex
    attributes one after the other, in the first one's space, no edges added between them."""
    if len(skeletons) and isinstance(skeletons[0], np.ndarray):
        skeletons = [skeletons]
    skeletons = [s for s in skeletons if not s.empty()]
    if not skeletons:
        return cls()
    first = skeletons[0]
    starts = np.cumsum([0] + [s.vertices.shape[0] for s in skeletons[:-1]])
    edges = np.concatenate([s.edges.astype(np.int64) + int(at) for s, at in zip(skeletons, starts)]).astype(first.edges.dtype)
    placed = [s.voxel_space() if first.space == "voxel" else s.physical_space() for s in skeletons]
    if any(s.extra_attributes != first.extra_attributes for s in placed[1:]):
        raise ValueError("skeletons with different vertex attributes cannot be merged")
    merged = cls(vertices=np.concatenate([s.vertices for s in placed], axis=0), edges=edges, segid=first.id,
                 extra_attributes=placed[0].extra_attributes, space=first.space, transform=placed[0].transform)
    for attribute in placed[0].extra_attributes:
        setattr(merged, attribute["id"], np.concatenate([getattr(s, attribute["id"]) for s in placed], axis=0))
    return merged


_concatenated.skoots = True  # type: ignore[attr-defined]


def trace_predicted(voxels: tuple[np.ndarray, np.ndarray], shape_xyz: Sequence[int], voxel_size: Any,
                    offset_xyz: Sequence[float] | None = None) -> dict[int, Any]:
    """Every instance's skeleton from the predicted skeleton's voxels (flat C-order indices into
    ``shape_xyz`` and their final ids, `skeleton_ids`), in the volume's physical frame."""
    at, ids = voxels
    dense = np.zeros(tuple(shape_xyz), dtype=ids.dtype if ids.dtype.kind == "u" else np.uint32)
    dense.reshape(-1)[at] = ids
    return skeletonize(dense, voxel_size, offset_xyz)


def merge_fragments(parts: Sequence[Any]) -> Any:
    """One instance's graph from its blocks' fragments: concatenated, then the vertices they
    share (the one-voxel overlap) made one and duplicate edges dropped (osteoid)."""
    from osteoid import Skeleton

    _osteoid_on_numpy_1()
    merged = Skeleton.simple_merge(list(parts)).consolidate()
    merged.id = parts[0].id
    merged.vertices = np.asarray(merged.vertices, np.float32)
    merged.radius = np.asarray(getattr(merged, "radius", np.zeros(len(merged.vertices))), np.float32)
    return merged


def encoded_objects(skeletons: Mapping[int, Any], ids: Iterable[int]) -> dict[int, bytes]:
    """Each of ``ids``' precomputed object (an empty skeleton where it has none)."""
    return {int(i): encode_precomputed(skeletons.get(int(i)) or empty_skeleton(int(i))) for i in ids}


def encode_precomputed(skeleton: Any) -> bytes:
    """Neuroglancer's precomputed skeleton: uint32 vertex and edge counts, float32 xyz vertices,
    uint32 edge pairs, then the float32 ``radius`` per vertex; little-endian."""
    vertices = np.ascontiguousarray(skeleton.vertices, dtype="<f4").reshape(-1, 3)
    edges = np.ascontiguousarray(skeleton.edges, dtype="<u4").reshape(-1, 2)
    radius = np.ascontiguousarray(getattr(skeleton, "radius", np.zeros(len(vertices))), dtype="<f4").reshape(-1)
    if len(radius) != len(vertices):
        raise ValueError(f"skeleton {skeleton.id}: {len(radius)} radii for {len(vertices)} vertices")
    return struct.pack("<II", len(vertices), len(edges)) + vertices.tobytes() + edges.tobytes() + radius.tobytes()


def _unit_nm(voxel_size: Any) -> float:
    """How many nm one unit of ``voxel_size`` is (1 when it has no unit: lengths are as stored)."""
    if not voxel_size.unit:
        return 1.0
    from skoots_export.contract.units import LENGTH_UNITS

    return float(LENGTH_UNITS[voxel_size.unit][1]) * 1e9


def swc_text(skeleton: Any, voxel_size: Any) -> str:
    """``skeleton`` as SWC (id, type 0, x y z, radius, parent; roots -1) in ``voxel_size``'s unit
    (µm for most light microscopy: SWC's own convention, what Fiji's SNT and napari's SWC readers
    take), x = columns, y = rows, z = slices, the volume's physical frame."""
    scale = _unit_nm(voxel_size)
    vertices = np.asarray(skeleton.vertices, np.float64) / scale
    radius = np.asarray(skeleton.radius, np.float64) / scale
    parents = _parents(len(vertices), np.asarray(skeleton.edges, np.int64).reshape(-1, 2))
    symbol = voxel_size.symbol
    lines = [f"# skoots-triton skeleton of instance {skeleton.id}; coordinates and radius in {symbol}",
             "# id type x y z radius parent"]
    lines += [f"{i + 1} 0 {v[0]:.6g} {v[1]:.6g} {v[2]:.6g} {r:.6g} {p + 1 if p >= 0 else -1}"
              for i, (v, r, p) in enumerate(zip(vertices, radius, parents))]
    return "\n".join(lines) + "\n"


def _parents(count: int, edges: np.ndarray) -> np.ndarray:
    """Each vertex's parent on a breadth-first walk of each component (-1 at its root, the
    component's first vertex): SWC's tree."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    parents = np.full(count, -1, np.int64)
    if count == 0:
        return parents
    graph = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    seen = np.zeros(count, bool)
    for root in range(count):
        if seen[root]:
            continue
        order, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)
        seen[order] = True
        inner = order[1:]
        parents[inner] = pred[inner]
    return parents


def swc_folder(labels_path: Path) -> Path:
    """Where the SWC files of local labels go: ``<labels stem>_skeletons/`` beside them."""
    labels_path = Path(labels_path)
    return labels_path.with_name(labels_path.name.split(".")[0] + "_skeletons")


def write_swc_folder(folder: Path, skeletons: Mapping[int, Any], voxel_size: Any, ids: Iterable[int]) -> Path:
    """``folder/{id}.swc`` for each of ``ids`` (an empty file body for an instance without a
    skeleton), built aside and moved into place (client/atomic.py)."""
    from .atomic import staged

    with staged(Path(folder)) as target:
        target.mkdir()
        for segid in ids:
            (target / f"{segid}.swc").write_text(swc_text(skeletons.get(segid) or empty_skeleton(segid), voxel_size))
    return Path(folder)


def swc_folder_of(output: Any) -> Path | None:
    """Where ``--skeletons`` writes SWC for ``output`` (an OutputSpec): beside a local ``out``, or
    beside the image of ``labels_into`` (``IMAGE_NAME_skeletons``); None for a precomputed ``out``."""
    from .stores import Location

    if output.out is not None and Location.of(output.out).url is None:
        return swc_folder(output.out)
    if output.out is None and output.labels_into is not None:
        image = Path(output.labels_into)
        return image.with_name(f"{image.name.split('.')[0]}_{output.label_name}_skeletons")
    return None


def check_skeletons(output: Any, inputs: Sequence[Path] = (), blockwise: bool = False) -> None:
    """Refuse ``--skeletons`` where nothing could hold them, before any work: without an output
    on disk, to an N5 output, blockwise to anything but precomputed, or over an existing SWC
    folder without ``--overwrite``."""
    from .destinations import check_not_input
    from .errors import InputError, OutputError
    from .extras import require
    from .stores import Location, output_format

    if not output.skeletons:
        return
    if output.out is None and output.labels_into is None:
        raise InputError("--skeletons are written beside the labels: give --out (precomputed://… for Neuroglancer, "
                         "or a local .tif/.zarr/.ome.zarr for SWC) or --labels-into, or drop --skeletons")
    url = Location.of(output.out).url if output.out is not None else None
    if url is not None and output_format(url) != "precomputed":
        raise InputError(f"--skeletons: {output_format(url)}:// has no skeleton format; write --out precomputed://… "
                         "(Neuroglancer skeletons) or a local .tif/.zarr/.ome.zarr (SWC), or drop --skeletons")
    if blockwise and url is None:
        raise InputError("--skeletons with --blockwise are written into a precomputed:// --out; use one, or segment "
                         "without --blockwise for SWC beside a local output")
    folder = swc_folder_of(output)
    if folder is not None:
        check_not_input("--skeletons", folder, inputs)
        if folder.exists() and not output.overwrite:
            raise OutputError(f"--skeletons: {folder} exists; pass --overwrite to replace it")
    require("kimimaro", "--skeletons", "neuroglancer")


def in_unit(lengths_nm: np.ndarray, voxel_size: Any) -> np.ndarray:
    """Lengths in nm (the vertices' unit) in ``voxel_size``'s unit, as the table states them."""
    return np.asarray(lengths_nm, np.float64) / _unit_nm(voxel_size)


def graph_lengths(skeletons: Mapping[int, Any], labels: Sequence[int] | np.ndarray, voxel_size: Any) -> np.ndarray:
    """Each of ``labels``' written graph length (the sum of its edges' lengths over the float32
    vertices as written, ``Skeleton.cable_length``) in ``voxel_size``'s unit; 0 without a skeleton."""
    out = np.zeros(len(labels), np.float64)
    for i, segid in enumerate(np.asarray(labels).tolist()):
        skeleton = skeletons.get(int(segid))
        if skeleton is None or len(skeleton.edges) == 0:
            continue
        vertices = np.asarray(skeleton.vertices, np.float32).astype(np.float64)
        edges = np.asarray(skeleton.edges, np.int64).reshape(-1, 2)
        out[i] = float(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1).sum())
    return out / _unit_nm(voxel_size)


def with_graph_lengths(table: Any, lengths: np.ndarray) -> Any:
    """``table`` (an InstanceTable) with ``skeleton_graph_length_<u>`` after the thinned
    ``skeleton_length_<u>`` (or before ``touches_border``)."""
    name = f"skeleton_graph_length_{table.voxel_size.symbol}"
    columns = list(table.items())
    after = next((i + 1 for i, (k, _) in enumerate(columns) if k.startswith("skeleton_length_")),
                 next((i for i, (k, _) in enumerate(columns) if k == "touches_border"), len(columns)))
    columns.insert(after, (name, np.asarray(lengths, np.float64)))
    out = type(table)(columns)
    out.voxel_size = table.voxel_size
    return out
