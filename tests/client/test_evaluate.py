"""Segmentation scores against slow, obviously correct oracles written with naive loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from skoots_client.evaluate import (
    adjusted_rand_index,
    contingency_table,
    evaluate,
    format_scores,
    match_instances,
    variation_of_information,
)

# ---------------------------------------------------------------- oracles: loops over labels


def oracle_iou(pred: np.ndarray, true: np.ndarray) -> dict[tuple[int, int], float]:
    out = {}
    for p in np.unique(pred):
        for t in np.unique(true):
            if p == 0 or t == 0:
                continue
            a, b = pred == p, true == t
            inter = int(np.logical_and(a, b).sum())
            if inter:
                out[(int(p), int(t))] = inter / int(np.logical_or(a, b).sum())
    return out


def oracle_tp(pred: np.ndarray, true: np.ndarray, threshold: float) -> int:
    """Largest one-to-one matching of pairs with IoU >= threshold, by trying every subset of pairs."""
    pairs = [k for k, v in oracle_iou(pred, true).items() if v >= threshold]
    for size in range(len(pairs), 0, -1):
        for chosen in itertools.combinations(pairs, size):
            if len({p for p, _ in chosen}) == size and len({t for _, t in chosen}) == size:
                return size
    return 0


def oracle_ari(pred: np.ndarray, true: np.ndarray) -> float:
    """Rand index over all voxel pairs, adjusted with the permutation model's expectation."""
    a, b = pred.ravel(), true.ravel()
    n = a.size
    same_a = a[:, None] == a[None, :]
    same_b = b[:, None] == b[None, :]
    upper = np.triu(np.ones((n, n), bool), 1)
    index = int((same_a & same_b & upper).sum())
    pairs_a, pairs_b = int((same_a & upper).sum()), int((same_b & upper).sum())
    expected = pairs_a * pairs_b / math.comb(n, 2)
    maximum = (pairs_a + pairs_b) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


def oracle_vi(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """H(pred | true) and H(true | pred) from per-voxel probabilities, in bits."""
    a, b = pred.ravel().tolist(), true.ravel().tolist()
    n = len(a)
    joint, pa, pb = {}, {}, {}
    for x, y in zip(a, b):
        joint[(x, y)] = joint.get((x, y), 0) + 1
        pa[x] = pa.get(x, 0) + 1
        pb[y] = pb.get(y, 0) + 1
    split = -sum(c / n * math.log2(c / pb[y]) for (x, y), c in joint.items())
    merge = -sum(c / n * math.log2(c / pa[x]) for (x, y), c in joint.items())
    return split, merge


# ---------------------------------------------------------------- small random label volumes


def blobs(rng: np.random.Generator, shape=(7, 6, 5), count=6) -> np.ndarray:
    """Instances as boxes painted over each other, on background."""
    labels = np.zeros(shape, np.uint16)
    for i in range(1, count + 1):
        lo = [rng.integers(0, n - 1) for n in shape]
        hi = [rng.integers(l + 1, n + 1) for l, n in zip(lo, shape)]
        labels[tuple(slice(l, h) for l, h in zip(lo, hi))] = i
    return labels


def perturbed(rng: np.random.Generator, true: np.ndarray) -> np.ndarray:
    """A prediction near ``true``: relabelled, one merge, one split, some voxels flipped."""
    ids = np.unique(true)
    mapping = np.zeros(int(ids.max()) + 1, np.int64)
    mapping[ids[ids > 0]] = rng.permutation(len(ids) - 1) + 1
    pred = mapping[true]
    if len(ids) > 3:
        pred[pred == pred.max()] = 1  # merge two instances
    split = (pred == 2) & (np.indices(pred.shape)[0] % 2 == 0)
    pred[split] = 99  # split one instance
    noise = rng.random(pred.shape) < 0.08
    pred[noise] = rng.integers(0, 5, size=int(noise.sum()))
    return pred.astype(np.uint32)


CASES = [(seed, kind) for seed in range(12) for kind in ("perturbed", "independent")]


@pytest.mark.parametrize("seed,kind", CASES)
def test_scores_equal_the_loop_oracles_on_random_volumes(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    true = blobs(rng)
    pred = perturbed(rng, true) if kind == "perturbed" else blobs(rng, count=5).astype(np.int32)
    table = contingency_table(pred, true)
    assert adjusted_rand_index(table) == pytest.approx(oracle_ari(pred, true), abs=1e-12)
    assert variation_of_information(table) == pytest.approx(oracle_vi(pred, true), abs=1e-12)
    n_pred, n_true = len(np.unique(pred[pred > 0])), len(np.unique(true[true > 0]))
    for threshold in (0.3, 0.5, 0.75):
        tp = oracle_tp(pred, true, threshold)
        m = match_instances(table, threshold)
        assert (m.tp, m.fp, m.fn) == (tp, n_pred - tp, n_true - tp)
        denominators = (n_pred, n_true, n_pred + n_true, n_pred + n_true - tp)
        for got, num, den in zip((m.precision, m.recall, m.f1, m.ap), (tp, tp, 2 * tp, tp), denominators):
            assert got == pytest.approx(num / den if den else 1.0)


def test_contingency_table_counts_every_label_pair_once() -> None:
    rng = np.random.default_rng(3)
    pred, true = rng.integers(0, 4, (6, 5, 4)), rng.integers(0, 3, (6, 5, 4)).astype(np.uint8)
    table = contingency_table(pred, true)
    expected = {(p, t): int(((pred == p) & (true == t)).sum()) for p in range(4) for t in range(3)}
    got = dict(zip(zip(table.pred.tolist(), table.true.tolist()), table.count.tolist()))
    assert got == {k: v for k, v in expected.items() if v}
    assert table.voxels == pred.size


def test_a_tie_at_iou_one_half_is_matched_once() -> None:
    true = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 2, 2]])  # both halves have IoU exactly 0.5 with the one true object
    m = match_instances(contingency_table(pred, true), 0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0) == (oracle_tp(pred, true, 0.5), 1, 0)


def test_identical_volumes_score_perfectly_whatever_the_label_values() -> None:
    rng = np.random.default_rng(0)
    true = blobs(rng)
    relabelled = np.where(true > 0, true.astype(np.uint32) * 1000 + 7, 0)
    s = evaluate(relabelled, true)
    assert all((m.precision, m.recall, m.f1, m.ap) == (1.0, 1.0, 1.0, 1.0) for m in s.matches)
    assert (s.adjusted_rand_index, s.vi_split, s.vi_merge) == (1.0, 0.0, 0.0)
    assert s.pred_instances == s.true_instances == len(np.unique(true)) - 1


def test_disjoint_instances_find_nothing() -> None:
    true = np.zeros((4, 6, 3), np.uint8)
    pred = np.zeros_like(true)
    true[:2, :2], true[2:, 4:] = 1, 2
    pred[:2, 3:], pred[3:, :2] = 5, 6
    s = evaluate(pred, true)
    for m in s.matches:
        assert (m.tp, m.fp, m.fn, m.precision, m.recall, m.f1, m.ap) == (0, 2, 2, 0.0, 0.0, 0.0, 0.0)
    assert s.adjusted_rand_index < 0.1
    assert s.vi_split > 0 and s.vi_merge > 0


def test_empty_prediction_and_empty_truth() -> None:
    empty = np.zeros((3, 3, 3), np.uint8)
    full = np.ones_like(empty)
    s = evaluate(empty, full)
    assert (s.matches[0].tp, s.matches[0].fn, s.matches[0].recall, s.matches[0].precision) == (0, 1, 0.0, 1.0)
    both = evaluate(empty, empty)
    assert both.matches[0].f1 == 1.0 and both.adjusted_rand_index == 1.0


def test_split_and_merge_are_told_apart() -> None:
    true = np.array([[1, 1, 2, 2]])
    merged = evaluate(np.array([[1, 1, 1, 1]]), true)
    split = evaluate(np.array([[1, 2, 3, 4]]), true)
    assert merged.vi_merge == pytest.approx(1.0) and merged.vi_split == 0.0
    assert split.vi_split == pytest.approx(1.0) and split.vi_merge == 0.0


def test_format_table_shows_every_score() -> None:
    text = format_scores(evaluate(np.array([[1, 1, 0]]), np.array([[1, 1, 0]])))
    for word in ("predicted 1", "0.50", "0.75", "precision", "F1", "AP", "adjusted Rand index 1.0000", "split 0.0000"):
        assert word in text


@pytest.mark.parametrize(
    "pred,true,match",
    [
        (np.zeros((2, 3)), np.zeros((2, 3), np.uint8), "float64 values"),
        (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), "differ in shape"),
        (np.full((2, 3), -1, np.int16), np.zeros((2, 3), np.int16), "negative labels"),
    ],
)
def test_bad_label_volumes_are_refused(pred: np.ndarray, true: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        contingency_table(pred, true)


def test_threshold_outside_zero_one_is_refused() -> None:
    table = contingency_table(np.ones((2, 2), np.uint8), np.ones((2, 2), np.uint8))
    with pytest.raises(ValueError, match="must lie in"):
        match_instances(table, 0.0)
