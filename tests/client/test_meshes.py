"""client/meshes.py: a labels box in, per-id legacy meshes out, in nm in the precomputed file
order with the voxel offset; boxes meshed apart (one voxel of overlap on their high sides) make
exactly the surface of the whole when not simplified."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from skoots_client.errors import InputError
from skoots_client.meshes import fragment_name, mesh_box, read_extent, surface_area
from skoots_client.plan import check_meshes
from skoots_client.specs import OutputSpec
from skoots_client.stores import parse

RESOLUTION = (4.0, 8.0, 40.0)  # file order x (the runtime's Y), y (its X), z


def labels() -> np.ndarray:
    out = np.zeros((20, 17, 9), np.uint32)  # runtime [X, Y, Z]
    out[2:9, 3:15, 1:7] = 1
    out[10:19, 0:6, 0:9] = 2  # touches the volume's faces: closed there
    out[12, 10, 4] = 3  # one voxel
    return out


def whole(data: np.ndarray, **options) -> dict:
    box = [(0, n) for n in data.shape]
    return mesh_box(data, box, data.shape, RESOLUTION, (5, 6, 7), **options)


def test_vertices_are_nanometres_in_file_order_with_the_offset_and_voxel_centred() -> None:
    meshes = whole(labels(), reduction=0)
    vertices, _ = meshes[1]
    # runtime X 2:9 -> file y, Y 3:15 -> file x, Z 1:7; offset (5, 6, 7) voxels in file order
    assert np.allclose(vertices.min(0), [(3 + 5) * 4, (2 + 6) * 8, (1 + 7) * 40])
    assert np.allclose(vertices.max(0), [(15 + 5) * 4, (9 + 6) * 8, (7 + 7) * 40])
    assert sorted(meshes) == [1, 2, 3] and len(meshes[3][1]) > 0


@pytest.mark.parametrize("cut", [(7, 8, 4), (10, 6, 5), (3, 9, 2)])
def test_boxes_meshed_apart_make_the_whole_surface(cut) -> None:
    data = labels()
    reference = whole(data, reduction=0)
    parts: dict[int, list] = {}
    axes = [[(0, c), (c, n)] for c, n in zip(cut, data.shape)]
    for box in itertools.product(*axes):
        window = tuple(slice(lo, hi) for lo, hi in read_extent(box, data.shape))
        for label, mesh in mesh_box(data[window], box, data.shape, RESOLUTION, (5, 6, 7), reduction=0).items():
            parts.setdefault(label, []).append(mesh)
    assert sorted(parts) == sorted(reference)
    for label, meshes in parts.items():
        vertices = np.concatenate([v for v, _ in meshes])
        area = sum(surface_area(v, f) for v, f in meshes)
        assert np.allclose(vertices.min(0), reference[label][0].min(0)) and np.allclose(vertices.max(0), reference[label][0].max(0))
        assert area == pytest.approx(surface_area(*reference[label]), rel=1e-5), label


def test_simplified_meshes_stay_within_a_voxel_of_their_labels() -> None:
    data = labels()
    for label, (vertices, faces) in whole(data).items():
        where = np.argwhere(data == label)[:, [1, 0, 2]] + (5, 6, 7)
        low, high = where.min(0) * RESOLUTION, (where.max(0) + 1) * RESOLUTION
        assert len(faces) and (vertices >= low - RESOLUTION).all() and (vertices <= high + RESOLUTION).all(), label
    assert len(whole(data)[1][1]) < len(whole(data, reduction=0)[1][1])  # simplified


def test_a_box_must_come_with_its_overlap() -> None:
    data = labels()
    with pytest.raises(ValueError, match=r"not box .* read extent"):
        mesh_box(data[:10], [(0, 10), (0, 17), (0, 9)], data.shape, RESOLUTION)
    assert fragment_name(7, [(0, 10), (20, 30), (1, 2)]) == "7:0:20-30_0-10_1-2"


def test_meshes_go_only_into_a_precomputed_out(tmp_path) -> None:
    check_meshes(OutputSpec(out=parse(f"precomputed://{tmp_path}/seg"), meshes=True))
    check_meshes(OutputSpec(out=tmp_path / "labels.tif"))  # off: nothing to check
    with pytest.raises(InputError, match=r"^--meshes are written into a Neuroglancer precomputed output: give --out precomputed://PATH"):
        check_meshes(OutputSpec(meshes=True))
    with pytest.raises(InputError, match=r"not --out \S+labels\.zarr: write --out precomputed://PATH, or drop --meshes$"):
        check_meshes(OutputSpec(out=tmp_path / "labels.zarr", meshes=True))
    with pytest.raises(InputError, match=r"not --out n5://\S+: write --out precomputed://PATH"):
        check_meshes(OutputSpec(out=parse(f"n5://{tmp_path}/seg.n5"), meshes=True))
    with pytest.raises(InputError, match=r"not --labels-into: add --out precomputed://PATH"):
        check_meshes(OutputSpec(out=parse(f"precomputed://{tmp_path}/seg"), labels_into=tmp_path / "i.ome.zarr", meshes=True))
