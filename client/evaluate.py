"""Instance-segmentation scores of a predicted label volume against a ground truth.

Everything is computed from one sparse contingency table — the voxel count of every
(predicted label, true label) pair that occurs — found with a single ``np.unique`` over the
paired labels, so the cost is one pass over the volume whatever the number of instances.
Label 0 is background in both volumes.

* **Matching** at an IoU threshold ``t``: a predicted and a true instance may match when their
  intersection over union is at least ``t``; the true positives are a maximum one-to-one
  matching of those pairs (for ``t > 0.5`` every instance has at most one candidate, so the
  matching is unique; at exactly 0.5 ties are possible and the maximum matching resolves them).
  This is the matching of StarDist's and cellpose's ``matching`` / ``average_precision``.
* **Precision** TP / (TP + FP), **recall** TP / (TP + FN), **F1** 2TP / (2TP + FP + FN).
* **AP** at ``t`` in the sense of the instance-segmentation field (StarDist, cellpose, the 2018
  Data Science Bowl): TP / (TP + FP + FN) at that single threshold — not the area under a
  precision-recall curve of object detection.
* **Adjusted Rand index** (Hubert & Arabie 1985) of the two partitions of all voxels,
  background included as one cluster.
* **Variation of information** (Meilă 2007) in bits, split into ``H(pred | true)`` — *split*:
  true objects cut into several predicted ones — and ``H(true | pred)`` — *merge*: predicted
  objects covering several true ones; 0 and 0 for identical partitions. Background counts as
  a cluster here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .volume import describe_shape

__all__ = [
    "IOU_THRESHOLDS", "Contingency", "MatchScores", "Scores", "contingency_table", "instance_ious", "match_instances",
    "adjusted_rand_index", "variation_of_information", "evaluate", "evaluate_files", "INTENSITY_EQUAL_NEIGHBOURS",
    "intensity_like", "format_scores",
]

IOU_THRESHOLDS = (0.5, 0.75)


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table of two label volumes.

    ``pred``/``true`` hold the label pair of each non-empty cell and ``count`` its voxels;
    ``pred_sizes``/``true_sizes`` map every label (0 included) to its voxel count.
    """

    pred: np.ndarray
    true: np.ndarray
    count: np.ndarray
    pred_labels: np.ndarray
    pred_sizes: np.ndarray
    true_labels: np.ndarray
    true_sizes: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.count.sum())


@dataclass(frozen=True)
class MatchScores:
    """Instance matching at one IoU threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float


@dataclass(frozen=True)
class Scores:
    """All scores of a prediction against a ground truth (see the module docstring)."""

    pred_instances: int
    true_instances: int
    matches: tuple[MatchScores, ...]
    adjusted_rand_index: float
    vi_split: float
    vi_merge: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def contingency_table(pred: np.ndarray, true: np.ndarray) -> Contingency:
    """Count voxels of every (pred, true) label pair that occurs, in one ``np.unique`` pass.

    Raises
    ------
    ValueError
        The volumes differ in shape, or hold something other than non-negative integers.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"label volumes differ in shape: {pred.shape} and {true.shape}")
    for name, array in (("prediction", pred), ("ground truth", true)):
        if array.dtype.kind not in "ui" and array.dtype != bool:
            raise ValueError(f"{name} holds {array.dtype} values; labels must be integers")
        if array.dtype.kind == "i" and array.size and array.min() < 0:
            raise ValueError(f"{name} holds negative labels; labels must be 0 (background) or positive")
    pred_labels, pred_index = np.unique(pred.ravel(), return_inverse=True)
    true_labels, true_index = np.unique(true.ravel(), return_inverse=True)
    pairs = pred_index.astype(np.int64) * len(true_labels) + true_index
    cells, count = np.unique(pairs, return_counts=True)
    pred_cell, true_cell = np.divmod(cells, len(true_labels))
    return Contingency(
        pred=pred_labels[pred_cell],
        true=true_labels[true_cell],
        count=count.astype(np.int64),
        pred_labels=pred_labels,
        pred_sizes=np.bincount(pred_index.ravel(), minlength=len(pred_labels)).astype(np.int64),
        true_labels=true_labels,
        true_sizes=np.bincount(true_index.ravel(), minlength=len(true_labels)).astype(np.int64),
    )


def _size_of(labels: np.ndarray, sizes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    return sizes[np.searchsorted(labels, wanted)]


def instance_ious(table: Contingency) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pred, true, iou)`` for every pair of foreground instances that overlap."""
    foreground = (table.pred != 0) & (table.true != 0)
    pred, true, inter = table.pred[foreground], table.true[foreground], table.count[foreground]
    union = _size_of(table.pred_labels, table.pred_sizes, pred) + _size_of(table.true_labels, table.true_sizes, true) - inter
    return pred, true, inter / union


def _instances(labels: np.ndarray) -> int:
    return int(np.count_nonzero(labels))


def match_instances(table: Contingency, threshold: float) -> MatchScores:
    """TP, FP, FN and the scores derived from them at IoU ``threshold`` (see the module docstring)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU threshold {threshold} must lie in (0, 1]")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    pred, true, iou = instance_ious(table)
    keep = iou >= threshold
    pred, true = pred[keep], true[keep]
    n_pred, n_true = _instances(table.pred_labels), _instances(table.true_labels)
    if len(pred) == 0:
        tp = 0
    elif len(np.unique(pred)) == len(pred) and len(np.unique(true)) == len(true):
        tp = len(pred)  # every candidate pair is disjoint from the others: the usual case
    else:
        rows = np.unique(pred, return_inverse=True)[1]
        cols, col_index = np.unique(true, return_inverse=True)
        graph = coo_matrix((np.ones(len(pred)), (rows, col_index)), shape=(rows.max() + 1, len(cols))).tocsr()
        tp = int(np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0))
    fp, fn = n_pred - tp, n_true - tp
    return MatchScores(
        threshold=threshold,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        ap=_ratio(tp, tp + fp + fn),
    )


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, and 1.0 for 0/0 (nothing to find and nothing found is perfect)."""
    return 1.0 if denominator == 0 else numerator / denominator


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def adjusted_rand_index(table: Contingency) -> float:
    """Adjusted Rand index of the two partitions of the voxels (background is a cluster).

    ``(index - expected) / (max - expected)`` with ``index = sum C(n_ij, 2)``,
    ``expected = sum C(a_i, 2) sum C(b_j, 2) / C(n, 2)`` and ``max`` the mean of the two row
    sums; 1.0 when both partitions are the same, including the degenerate one-cluster case.
    """
    n = table.voxels
    index = _pairs(table.count)
    a, b = _pairs(table.pred_sizes), _pairs(table.true_sizes)
    total = n * (n - 1) / 2
    expected = a * b / total if total else 0.0
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def variation_of_information(table: Contingency) -> tuple[float, float]:
    """``(split, merge)`` = ``(H(pred | true), H(true | pred))`` in bits."""
    n = table.voxels
    if n == 0:
        return 0.0, 0.0
    joint = table.count / n
    p_pred = _size_of(table.pred_labels, table.pred_sizes, table.pred) / n
    p_true = _size_of(table.true_labels, table.true_sizes, table.true) / n
    split = -float((joint * np.log2(joint / p_true)).sum())
    merge = -float((joint * np.log2(joint / p_pred)).sum())
    return max(0.0, split), max(0.0, merge)  # no -0.0 from rounding


def evaluate(pred: np.ndarray, true: np.ndarray, thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> Scores:
    """Score ``pred`` against ``true`` (label volumes of one shape; 0 is background).

    Examples
    --------
    >>> a = np.array([[0, 1, 1], [2, 2, 0]])
    >>> s = evaluate(a, a)
    >>> s.matches[0].f1, s.adjusted_rand_index, s.vi_split
    (1.0, 1.0, 0.0)
    """
    table = contingency_table(pred, true)
    split, merge = variation_of_information(table)
    return Scores(
        pred_instances=_instances(table.pred_labels),
        true_instances=_instances(table.true_labels),
        matches=tuple(match_instances(table, t) for t in thresholds),
        adjusted_rand_index=adjusted_rand_index(table),
        vi_split=split,
        vi_merge=merge,
    )


def evaluate_files(prediction: Any, ground_truth: Any, warn: Callable[[str], None] | None = None) -> Scores:
    """Read two label volumes and score the first against the second: whatever ``segment``
    reads and writes (TIFF, Zarr, OME-Zarr images and label groups; N5, precomputed and Zarr v3
    by path or URL such as ``n5:///data/labels.n5``), each in the axis order its file names, as
    ``measure`` reads labels (volume_read.open_labels).

    Raises
    ------
    InputError
        A volume is missing or unreadable, holds no integer labels or negative ones, or the
        two differ in shape (named as z, y, x).

    An integer volume that looks like intensities (`intensity_like`) is scored with a
    ``warn`` (default: a ``warning:`` line on stderr): scores of a raw image are meaningless.
    """
    from .summary import warn_on_stderr

    pred, true = _labels(prediction, "prediction"), _labels(ground_truth, "ground truth")
    if pred.shape != true.shape:
        raise InputError(f"{pred.path} is {describe_shape(pred.shape)} but {true.path} is {describe_shape(true.shape)}; "
                         "evaluate labels of the same volume")
    arrays = {"prediction": _whole(pred), "ground truth": _whole(true)}
    for (name, array), volume in zip(arrays.items(), (pred, true)):
        if intensity_like(array):
            (warn or warn_on_stderr)(f"the {name} {volume.path} looks like an intensity image, not labels (most neighbouring voxels "
                                     f"differ); its scores mean nothing — give its label volume (e.g. segment's output)")
    return evaluate(arrays["prediction"], arrays["ground truth"])


INTENSITY_EQUAL_NEIGHBOURS = 0.25
"""Labels are piecewise constant: an instance ``w`` voxels wide along x gives ``(w - 1) / (w + 1)``
equal neighbour pairs (3 wide: a half; below a quarter, under 2 wide on average). Intensities
rarely repeat: measured 0.0003 on smooth uint16 blobs, 0.06 as uint8, 0.13 for dim Poisson
uint8 noise; 0.84 for their labels."""


def intensity_like(labels: np.ndarray) -> bool:
    """Whether an integer volume looks like an intensity image rather than labels: fewer than
    `INTENSITY_EQUAL_NEIGHBOURS` of its voxels equal their neighbour along the last axis,
    among voxels that are not both background.

    >>> intensity_like(np.repeat(np.arange(4), 5).reshape(1, 2, 10)), intensity_like(np.arange(20).reshape(1, 2, 10))
    (False, True)
    """
    if labels.ndim < 1 or labels.shape[-1] < 2:
        return False
    left, right = labels[..., :-1], labels[..., 1:]
    pairs = (left != 0) | (right != 0)
    counted = int(np.count_nonzero(pairs))
    return counted > 0 and np.count_nonzero((left == right) & pairs) < INTENSITY_EQUAL_NEIGHBOURS * counted


def _labels(location: Any, option: str) -> Any:
    """A label volume ``[X, Y, Z]`` named by a path, a URL's text or a StoreUrl; a refusal
    names which argument it is."""
    from .stores import Location
    from .volume_read import open_labels

    try:
        return open_labels(Location.parse(location, option=option).target)
    except InputError as e:
        raise InputError(f"{option}: {e}") from None


def _whole(volume: Any) -> np.ndarray:
    labels = np.asarray(volume.data)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{volume.path} holds negative labels; labels are 0 (background) or positive")
    return labels


def format_scores(scores: Scores) -> str:
    """The scores as a small plain-text table for a terminal."""
    lines = [
        f"instances   predicted {scores.pred_instances}, ground truth {scores.true_instances}",
        f"{'IoU':>6} {'TP':>6} {'FP':>6} {'FN':>6} {'precision':>10} {'recall':>7} {'F1':>6} {'AP':>6}",
    ]
    for m in scores.matches:
        lines.append(
            f"{m.threshold:>6.2f} {m.tp:>6d} {m.fp:>6d} {m.fn:>6d} {m.precision:>10.3f} {m.recall:>7.3f} {m.f1:>6.3f} {m.ap:>6.3f}"
        )
    lines.append(f"adjusted Rand index {scores.adjusted_rand_index:.4f}")
    lines.append(f"variation of information  split {scores.vi_split:.4f}  merge {scores.vi_merge:.4f} (bits)")
    return "\n".join(lines)
