"""Steps 6-10 as array functions, against oracles: scipy, the seed's procedure, a literal transcription."""

from __future__ import annotations

import numpy as np
import pytest
from reference_pipeline import reference_assign, same_partition
from scipy import ndimage

from skoots_client import postprocess as pp


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    if request.param == "numpy":
        return np
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001
        pytest.skip("no GPU")
    return cupy


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.mark.parametrize("shape", [(9, 7, 5), (1, 1, 1), (0, 4, 4), (12, 3, 1), (30, 31, 6)])
@pytest.mark.parametrize("half_widths", [(4, 4, 1), (0, 0, 0), (1, 2, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, bool])
def test_dilation_is_a_box_dilation_zero_outside(xp, shape, half_widths, dtype) -> None:
    skeleton = (np.random.default_rng(sum(shape)).random(shape) > 0.95).astype(dtype)
    box = np.ones(tuple(2 * h + 1 for h in half_widths), bool)
    expected = ndimage.binary_dilation(skeleton, structure=box) if skeleton.size else skeleton.astype(bool)
    got = host(pp.dilate_skeleton(xp.asarray(skeleton), half_widths))
    assert got.dtype == np.uint8 and got.shape == shape
    assert np.array_equal(got.astype(bool), expected)


@pytest.mark.parametrize("seed", range(3))
def test_dilation_equals_the_seeds_max_filters_then_threshold(xp, seed) -> None:
    """The seed: a 3x3x3 max filter, three 3x3x1 max filters, then > 0.8 — on a float map."""
    rng = np.random.default_rng(seed)
    prob = rng.random((40, 36, 12)).astype(np.float32) ** 8
    seed_map = ndimage.maximum_filter(prob, size=3, mode="constant", cval=0)
    for _ in range(3):
        seed_map = ndimage.maximum_filter(seed_map, size=(3, 3, 1), mode="constant", cval=0)
    expected = seed_map > 0.8
    got = host(pp.dilate_skeleton(xp.asarray((prob > 0.8).astype(np.uint8)), pp.dilation_half_widths(1, 3)))
    assert np.array_equal(got.astype(bool), expected)
    assert pp.dilation_half_widths(1, 3) == (4, 4, 1)


def test_labelling_is_six_connected_and_exact(xp) -> None:
    skeleton = np.random.default_rng(0).random((40, 30, 20)) > 0.7
    labels, count = pp.label_skeleton(xp.asarray(skeleton))
    expected, expected_count = ndimage.label(skeleton)
    assert count == expected_count and host(labels).dtype == np.uint16, "uint16 while the count fits"
    assert same_partition(host(labels), expected)


def test_labelling_does_not_overflow(xp) -> None:
    skeleton = np.zeros((96, 96, 32), bool)
    skeleton[::2, ::2, ::2] = True  # 48*48*16 = 36864 isolated voxels
    skeleton[1::4, 1::4, 1::2] = True  # + 24*24*16 = 9216
    skeleton = np.concatenate([skeleton, skeleton], axis=2)  # 92160 > 65535
    labels, count = pp.label_skeleton(xp.asarray(skeleton))
    assert count == 2 * (36864 + 9216) == int(host(labels).max())
    assert host(labels).dtype == np.uint32


@pytest.mark.parametrize("iterations", [1, 2, 3, 10])
@pytest.mark.parametrize("shape", [(17, 13, 7), (1, 5, 2), (32, 32, 8)])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
def test_assignment_equals_the_literal_transcription(xp, iterations, shape, dtype, masked) -> None:
    rng = np.random.default_rng(iterations)
    vectors = rng.uniform(-1, 1, (3, *shape)).astype(np.float16)
    if masked:  # as step 4 makes them: background is +0.0 or -0.0; some voxels zero on one axis only
        vectors = vectors * (rng.random(shape) < 0.3).astype(np.float16)
        vectors[0, rng.random(shape) < 0.2] = 0
        assert np.signbit(vectors[vectors == 0]).any()
    labels = rng.integers(0, 50, shape).astype(dtype)
    scaling = (6.0, 5.0, 2.5)  # reaches outside the volume: clamping matters
    got = host(pp.assign_instances(xp.asarray(vectors), xp.asarray(labels), scaling, iterations))
    assert got.dtype == dtype
    assert np.array_equal(got, reference_assign(vectors, labels, scaling, iterations))


def test_assignment_rounds_half_to_even(xp) -> None:
    vectors = np.zeros((3, 6, 1, 1), np.float16)
    vectors[0] = 0.5  # x + 0.5: 0.5→0, 1.5→2, 2.5→2, 3.5→4, 4.5→4, 5.5→5 (clamped)
    labels = np.arange(1, 7, dtype=np.uint32).reshape(6, 1, 1)
    got = host(pp.assign_instances(xp.asarray(vectors), xp.asarray(labels), (1.0, 1.0, 1.0), 1))
    assert got.ravel().tolist() == [1, 3, 3, 5, 5, 6]


def tubes(shape=(64, 64, 24), count=6, seed=0):
    """Ground-truth tubes around random straight-ish curves, never touching."""
    rng = np.random.default_rng(seed)
    instances = np.zeros(shape, np.uint32)
    skeleton = np.zeros(shape, np.uint32)
    placed = 0
    while placed < count:
        start = rng.uniform((6, 6, 4), np.array(shape) - (6, 6, 4))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        points = np.array([start + t * direction for t in np.linspace(-10, 10, 60)])
        points = np.clip(points, (3, 3, 3), np.array(shape) - 4).round().astype(int)
        curve = np.zeros(shape, bool)
        curve[tuple(points.T)] = True
        tube = ndimage.distance_transform_edt(~curve) <= 2.5
        if (ndimage.binary_dilation(tube, iterations=2) & (instances > 0)).any():
            continue
        placed += 1
        instances[tube] = placed
        skeleton[curve] = placed
    return instances, skeleton


@pytest.mark.parametrize("iterations", [1, 2])
def test_ideal_network_outputs_give_back_the_instances(xp, iterations) -> None:
    instances, skeleton = tubes()
    scaling = np.array([8.0, 8.0, 8.0], np.float32)
    _, nearest = ndimage.distance_transform_edt(skeleton == 0, return_indices=True)
    grid = np.indices(instances.shape)
    vectors = np.clip((nearest - grid) / scaling.reshape(3, 1, 1, 1), -1, 1)
    vectors = (vectors * (instances > 0)).astype(np.float16)
    dilated = pp.dilate_skeleton(xp.asarray((skeleton > 0).astype(np.uint8)), (1, 1, 0))
    labels, count = pp.label_skeleton(dilated)
    assigned = pp.assign_instances(xp.asarray(vectors), labels, tuple(scaling), iterations)
    result, found = pp.renumber_labels(host(assigned) * (instances > 0))
    assert found == count == instances.max()
    assert same_partition(result, instances)


@pytest.mark.parametrize("asked,dtype", [("uint32", np.uint32), ("uint64", np.uint64)])
@pytest.mark.parametrize("maximum", [255, 256, 65536])
def test_renumbering_gives_the_asked_dtype_with_the_same_values(xp, maximum, asked, dtype) -> None:
    """uint32 by default whatever the count (not the smallest type that holds it), uint64 when asked."""
    labels = np.zeros(maximum + 10, np.uint32)
    labels[10:] = np.arange(1, maximum + 1, dtype=np.uint32) * 7
    out, count = pp.renumber_labels(xp.asarray(labels.reshape(-1, 1, 1)), asked)
    out = host(out)
    assert count == maximum and out.dtype == dtype
    assert out[:10].max() == 0 and np.array_equal(out.ravel()[10:], np.arange(1, maximum + 1))
    assert host(pp.renumber_labels(xp.asarray(labels.reshape(-1, 1, 1)))[0]).dtype == np.uint32


def test_the_labels_dtype_rule() -> None:
    """uint32 unless the instances do not fit it (then uint64, with a note); uint64 when asked.
    A count past 2**32 - 1 cannot be produced here: the rule is tested as a function."""
    assert pp.labels_dtype(0) == pp.labels_dtype(2**32 - 1) == np.uint32
    assert pp.labels_dtype(2**32) == pp.labels_dtype(0, "uint64") == pp.labels_dtype(2**64 - 1, "uint32") == np.uint64
    assert pp.labels_dtype_note(2**32 - 1) is None and pp.labels_dtype_note(2**40, "uint64") is None
    note = pp.labels_dtype_note(2**32)
    assert note is not None and "uint64" in note and str(2**32) in note and "--labels-dtype uint32" in note
    with pytest.raises(ValueError, match="do not fit 64 bits"):
        pp.labels_dtype(2**64)


def test_device_choice() -> None:
    assert pp.device_array_module("cpu") is np
    with pytest.raises(ValueError, match="auto, cpu or gpu"):
        pp.device_array_module("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert pp.device_array_module("auto") is np
        with pytest.raises(ValueError, match=r'pip install "cupy-cuda12x>=13"'):
            pp.device_array_module("gpu")


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
@pytest.mark.parametrize("min_size", [0, 1, 2, 7, 40, 10**6])
def test_remove_small_instances_equals_a_naive_loop(dtype, min_size: int) -> None:
    labels = np.random.default_rng(min_size).integers(0, 60, (13, 11, 7)).astype(dtype)
    labels[labels > 40] = 0
    expected = labels.copy()
    for value in np.unique(labels[labels > 0]):
        if (labels == value).sum() < min_size:
            expected[labels == value] = 0
    got = pp.remove_small_instances(labels.copy(), min_size)
    assert got.dtype == dtype and np.array_equal(got, expected)
    assert not pp.remove_small_instances(np.zeros((0, 3, 3), dtype), 5).size
    with pytest.raises(ValueError, match="min_size -1 must not be negative"):
        pp.remove_small_instances(labels, -1)


@pytest.mark.parametrize("seed", range(20))
def test_clear_outside_keeps_exactly_the_voxels_inside_the_box(xp, seed: int) -> None:
    """One block (or the whole volume) keeps what lies inside ``keep``, also where ``keep``
    misses the block or is empty (--reference-borders on a volume smaller than its frame)."""
    rng = np.random.default_rng(seed)
    shape = rng.integers(1, 12, 3)
    region = [(int(lo), int(lo + n)) for lo, n in zip(rng.integers(0, 8, 3), shape, strict=True)]
    keep = [(int(a), int(a + b)) for a, b in zip(rng.integers(0, 14, 3), rng.integers(0, 8, 3), strict=True)]
    labels = rng.integers(1, 9, tuple(shape)).astype(np.uint32)
    inside = np.ones(labels.shape, bool)
    for axis, ((lo, _), (first, last)) in enumerate(zip(region, keep, strict=True)):
        at = np.arange(labels.shape[axis]) + lo
        inside &= ((at >= first) & (at < last)).reshape([-1 if a == axis else 1 for a in range(3)])
    out = host(pp.clear_outside(xp.asarray(labels), region, keep))
    np.testing.assert_array_equal(out, np.where(inside, labels, 0))
