"""The scratch encodings (encoding.py) round-trip, and a block resolved at infer then finished at
assign (resolve.py) equals ``postprocess.assign_window`` bitwise."""

from __future__ import annotations

import numpy as np
import pytest
from blockwise_support import local_cluster, tubes  # noqa: F401 - a fixture

from skoots_client import postprocess
from skoots_client.blockwise import encoding, resolve
from skoots_client.blockwise.blocks import grow


class _Objects:
    """Objects in a dict with the store's read API, counting the bytes fetched."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fetched = 0

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        self.fetched += stop - start
        return self.objects[key][start:stop]


@pytest.mark.parametrize("dtype", [np.float16, np.uint32, np.uint64, np.uint16])
def test_encode_round_trips_and_reads_planes_alone(dtype, monkeypatch) -> None:
    monkeypatch.setattr(encoding, "SLAB_BYTES", 3 * 7 * 5 * 2 * 4)  # slabs of a few planes
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 29, 7, 5)) * 100).astype(dtype)
    if dtype == np.float16:
        array[0, 3, 2, 1] = -0.0
    data = encoding.encode(array)
    back = encoding.decode(data)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back.view(f"u{back.itemsize}"), array.view(f"u{array.itemsize}"))  # bits, -0.0 too
    damaged = bytearray(data)
    damaged[-3] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        encoding.decode(bytes(damaged))
    store = _Objects()
    store.objects["k"] = data
    for lo, hi in ((0, 1), (5, 9), (27, 29), (0, 29)):
        store.fetched = 0
        part = np.empty((3, hi - lo, 5, 3), dtype)
        encoding.read_box(store, "k", (slice(lo, hi), slice(1, 6), slice(2, 5)), part)
        assert np.array_equal(part.view(f"u{part.itemsize}"), array[:, lo:hi, 1:6, 2:5].view(f"u{array.itemsize}"))
        if hi - lo < 4:
            assert store.fetched < len(data) / 2  # only the slabs that hold the planes


def test_a_constant_block_compresses_to_almost_nothing() -> None:
    own = np.full((200, 200, 50), 7, np.uint32)
    own[100:] = 9
    assert len(encoding.encode(own)) < own.nbytes / 1000


def _fields(kind: str, shape, scaling, seed: int):
    if kind == "tubes":  # what a trained network answers: vectors toward the nearest skeleton
        return tubes(shape, 40, scaling, radius=6.0, seed=seed)
    rng = np.random.default_rng(seed)
    vectors = rng.uniform(-1, 1, size=(3, *shape)).astype(np.float16)
    vectors[:, rng.random(shape) < 0.2] = 0
    skeleton = (rng.random(shape) < 0.05).astype(np.uint8)
    return vectors, skeleton


@pytest.mark.parametrize("kind", ["tubes", "random"])
@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("small_halos", [False, True], ids=["halos", "too-small-halos"])
def test_resolved_then_finished_equals_assign_window(kind, iterations, small_halos) -> None:
    shape, scaling = (41, 37, 19), (4.0, 3.0, 2.0)
    vectors, skeleton = _fields(kind, shape, scaling, seed=iterations)
    labels, _ = postprocess.label_skeleton(skeleton)
    labels = labels.astype(np.uint32)
    label_halo, vector_halo = postprocess.halo_widths(scaling, iterations)
    if small_halos:
        label_halo, vector_halo = (2, 1, 1), (1, 1, 1)
    seen = set()
    for region in (((0, 14), (0, 37), (0, 7)), ((14, 30), (10, 25), (7, 12)), ((30, 41), (25, 37), (12, 19)), ((0, 41), (0, 37), (0, 19))):
        at = tuple(slice(a, b) for a, b in region)
        own, landed_at, landed_to = resolve.resolve_block(vectors[(slice(None), *at)], labels[at], region, shape, scaling, iterations)
        seen |= {"resolved"} if (own < resolve.LANDED).any() else set()
        seen |= {"landed"} if len(landed_at) else set()
        seen |= {"pending"} if (own == resolve.PENDING).any() else set()
        lw, vw = grow(region, label_halo, shape), grow(region, vector_halo, shape)
        lwin, vwin = tuple(slice(a, b) for a, b in lw), (slice(None), *(slice(a, b) for a, b in vw))
        expected = postprocess.assign_window(vectors[vwin], [a for a, _ in vw], labels[lwin], [a for a, _ in lw], region, shape,
                                             scaling, iterations)
        table = np.arange(labels.max() + 1, dtype=np.uint32)  # the block's labels are the volume's here
        out = np.zeros(expected.shape, np.uint32)
        landed = np.stack([landed_at.astype(np.int64), landed_to])
        resolve.finish(own, table, landed, (labels[lwin], [a for a, _ in lw]), (vectors[vwin], [a for a, _ in vw]),
                       region, shape, scaling, iterations, out)
        assert np.array_equal(out, expected), (kind, iterations, region)
    assert seen >= ({"resolved", "landed"} | ({"pending"} if iterations > 1 else set()))
    if iterations == 1:
        assert "pending" not in seen  # N = 1 reads no vector but its own


def test_infer_intermediates_are_gone_once_assign_ends_and_the_labels_stay_equal(local_cluster, tmp_path) -> None:
    """Scratch holds what later stages still need: when write starts, every block's resolved
    labels, landings, vectors' shell, skeleton labels and faces are deleted, its assigned ids
    are there; at assign they were there. Dense tubes over several blocks, N = 2 and 3."""
    from blockwise_support import CROP, OVERLAP, answers_store, blockwise_labels, in_memory_labels

    from skoots_client.progress import Watch
    from skoots_export.contract.wire import ModelParameters

    shape = (70, 61, 23)
    for iterations in (2, 3):
        parameters = ModelParameters(crop=CROP, overlap=OVERLAP, vector_scaling=(4.0, 4.0, 2.0), embedding_iterations=iterations)
        vectors, skeleton = tubes(shape, 150, parameters.vector_scaling, radius=6.0, seed=5)
        assert np.any(vectors != 0, axis=0).mean() > 0.5  # dense
        folder = tmp_path / str(iterations)
        folder.mkdir()
        path = answers_store(folder, vectors, skeleton)
        seen: dict[str, dict[str, int]] = {}

        def progress(stage: str, done: int, total: int, folder=folder, seen=seen) -> None:
            if stage not in seen:
                work = folder / "work"
                seen[stage] = {kind: len([p for p in (work / kind).glob("*") if not p.name.startswith(".")])
                               for kind in ("own", "landed", "vectors", "labels", "faces", "assigned")}

        got, result = blockwise_labels(folder, path, shape, parameters, (2, 2, 2), scheduler=local_cluster.scheduler_address,
                                       watch=Watch(quiet=True, progress=progress))
        blocks = result.blocks
        assert blocks > 4 and np.array_equal(got, in_memory_labels(vectors, skeleton, parameters))
        assert seen["assign"] == {"own": blocks, "landed": blocks, "vectors": blocks, "labels": 3 * blocks, "faces": blocks, "assigned": 0}
        assert seen["write"] == {"own": 0, "landed": 0, "vectors": 0, "labels": 0, "faces": 0, "assigned": blocks}


def test_an_assign_whose_inferred_block_is_gone_infers_it_again(local_cluster, tmp_path) -> None:
    """A block's resolved labels go once its ids are written; a rerun of its task (Dask redoes a
    task whose worker died after it finished), or one whose resolved labels are damaged, infers
    the block again and assigns it bitwise."""
    from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, blockwise_labels, in_memory_labels

    from skoots_client.progress import Watch

    shape = (70, 61, 23)
    vectors, skeleton = tubes(shape, 150, PARAMETERS_FOR_TESTS.vector_scaling, radius=6.0, seed=6)
    path = answers_store(tmp_path, vectors, skeleton)
    gone = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "assign" and not gone:
            for kind in ("own", "landed"):
                (tmp_path / "work" / kind / "0.0.0.bin").unlink()
            damaged = tmp_path / "work" / "own" / "0.1.0.bin"
            data = bytearray(damaged.read_bytes())
            data[-8:] = bytes(8)
            damaged.write_bytes(bytes(data))
            gone.append(True)

    got, _ = blockwise_labels(tmp_path, path, shape, PARAMETERS_FOR_TESTS, (2, 2, 2), scheduler=local_cluster.scheduler_address,
                              watch=Watch(quiet=True, progress=progress))
    assert gone and np.array_equal(got, in_memory_labels(vectors, skeleton, PARAMETERS_FOR_TESTS))
