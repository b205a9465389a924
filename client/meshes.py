"""Instance surfaces as Neuroglancer precomputed legacy meshes: a labels block in, per-id
triangle meshes out (NumPy only; writing them is stores/meshes.py's).

The mesher is zmesh (marching cubes, then quadric simplification), as Igneous uses it: a
reduction of ``REDUCTION`` (Igneous's default: about 1 triangle in 100 kept on large flat
surfaces, far fewer on small objects) within ``max_error`` of the marching-cubes surface, by
default the voxel's smallest side (Igneous's fixed 40 nm is 5 voxels of 8 x 8 x 40 nm EM in x and
y, and zmesh's own default, a voxel's largest side, as much; the smallest side keeps every mesh
within a voxel of its labels along every axis, at any scale).
Vertices are voxel centred: voxel ``i`` spans ``[i, i+1)`` times the resolution, as
Neuroglancer draws the labels, so an instance's mesh lies within its bounding box.

A volume is meshed box by box (a blockwise write region, or the in-memory writer's box): each
box is read with one voxel more on its high sides, so the marching cubes of neighbouring boxes
meet on a shared plane of voxel centres without a gap or an overlap; the volume's own faces are
padded with background, so every mesh is closed there. Each box gives one fragment per id in it,
named `fragment_name`; an id's manifest lists its fragments (`manifest`).

Axes: labels come in the runtime's ``[X (rows), Y (columns), Z]``; meshes are in the precomputed
file order x (columns), y (rows), z, in nanometres, the volume's ``voxel_offset`` included.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

__all__ = ["REDUCTION", "MESH_DIR", "MESH_INFO", "Mesh", "Box", "mesh_box", "encode_fragment", "decode_fragment",
           "fragment_name", "manifest", "surface_area", "read_extent"]

REDUCTION = 100  # zmesh's reduction_factor, Igneous's default simplification_factor
MESH_DIR = "mesh"  # the folder the info's ``mesh`` key names
MESH_INFO = {"@type": "neuroglancer_legacy_mesh"}

Mesh = tuple[np.ndarray, np.ndarray]  # vertices (n, 3) float32 nm, file order x, y, z; faces (m, 3) uint32
Box = Sequence[tuple[int, int]]  # (start, stop) per runtime axis X, Y, Z


def mesh_box(labels_xyz: np.ndarray, box: Box, shape_xyz: Sequence[int], resolution: Sequence[float],
             voxel_offset: Sequence[int] = (0, 0, 0), *, reduction: int = REDUCTION,
             max_error: float | None = None) -> dict[int, Mesh]:
    """Mesh every nonzero id of the labels of ``box`` (runtime ``[X, Y, Z]``) of a volume of
    ``shape_xyz``; ``labels_xyz`` holds the box and one voxel more on each high side that the
    volume has (`read_extent`). ``resolution`` (nm) and ``voxel_offset`` (voxels) are the
    precomputed scale's, in file order; ``max_error`` (nm) defaults to the smallest of them. Returns id → (vertices in nm, faces), ids without a
    triangle left out.

    Raises
    ------
    ValueError
        Labels that are not the box's read extent.
    """
    import zmesh

    max_error = float(min(resolution)) if max_error is None else max_error
    extent = read_extent(box, shape_xyz)
    if tuple(labels_xyz.shape) != tuple(hi - lo for lo, hi in extent):
        raise ValueError(f"labels of shape {labels_xyz.shape} are not box {list(box)}'s read extent {extent}")
    low = [int(lo == 0) for lo, _ in box]  # the volume's own faces get a background voxel: meshes close there
    high = [int(hi == n) for (_, hi), n in zip(box, shape_xyz)]
    padded = np.pad(labels_xyz, list(zip(low, high)))
    file_order = np.asfortranarray(padded.transpose(1, 0, 2))  # x (columns), y (rows), z
    low_file = [low[1], low[0], low[2]]
    start_file = [box[1][0], box[0][0], box[2][0]]
    shift = np.array([(s - p + o) * r for s, p, o, r in zip(start_file, low_file, voxel_offset, resolution)], np.float64)
    mesher = zmesh.Mesher(tuple(float(r) for r in resolution))
    mesher.mesh(file_order, close=False)
    meshes: dict[int, Mesh] = {}
    for label in mesher.ids():
        made = mesher.get(label, normals=False, reduction_factor=reduction, max_error=max_error, voxel_centered=True)
        if len(made.faces) == 0:
            continue
        vertices = (made.vertices.astype(np.float64) + shift).astype(np.float32)
        meshes[int(label)] = (vertices, made.faces.astype(np.uint32))
    mesher.clear()
    return meshes


def read_extent(box: Box, shape_xyz: Sequence[int]) -> list[tuple[int, int]]:
    """The voxels `mesh_box` reads for ``box``: the box and one more on each high side inside the volume."""
    return [(lo, min(hi + 1, n)) for (lo, hi), n in zip(box, shape_xyz)]


def encode_fragment(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A legacy mesh fragment: uint32 vertex count, float32 x, y, z per vertex, uint32 vertex
    indices per triangle, little-endian."""
    return (struct.pack("<I", len(vertices)) + np.ascontiguousarray(vertices, "<f4").tobytes()
            + np.ascontiguousarray(faces, "<u4").tobytes())


def decode_fragment(data: bytes) -> Mesh:
    """`encode_fragment`'s vertices and faces back."""
    (count,) = struct.unpack_from("<I", data)
    vertices = np.frombuffer(data, "<f4", 3 * count, 4).reshape(count, 3)
    return vertices, np.frombuffer(data, "<u4", offset=4 + 12 * count).reshape(-1, 3)


def fragment_name(label: int, box: Box) -> str:
    """``{id}:0:{x0}-{x1}_{y0}-{y1}_{z0}-{z1}``: the fragment of ``label`` meshed from ``box``
    (runtime axes), its bounds named in file order as Igneous names its fragments."""
    (x0, x1), (y0, y1), (z0, z1) = box
    return f"{int(label)}:0:{y0}-{y1}_{x0}-{x1}_{z0}-{z1}"


def manifest(names: Sequence[str]) -> bytes:
    """An id's legacy manifest (the object ``{id}:0``): its fragments' names."""
    return json.dumps({"fragments": sorted(names)}).encode()


def surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    """The summed area of the triangles (nm²)."""
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2)
