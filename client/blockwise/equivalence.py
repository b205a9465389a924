"""Step 7 across blocks: labels that touch across a block face are one skeleton component.

Each block labels its own skeleton (``postprocess.label_skeleton``, 6-connected); across a face
only the two voxels facing each other are neighbours, so the equivalences are the pairs of
nonzero labels at the same place on either side. One union-find over all blocks' labels
(``scipy.sparse.csgraph.connected_components``) then gives each block a table from its own
labels to the volume's components: the same partition as labelling the volume at once.
Pure functions on arrays; the coordinating process holds one entry per block label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["face_pairs", "components", "global_order"]


def face_pairs(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Unique ``(below label, above label)`` pairs where two facing planes are both nonzero.

    Examples
    --------
    >>> face_pairs(np.array([[1, 0], [2, 2]]), np.array([[5, 5], [0, 6]]))
    array([[1, 5],
           [2, 6]], dtype=uint32)
    """
    if below.shape != above.shape:
        raise ValueError(f"facing planes differ in shape: {below.shape} and {above.shape}")
    touching = (below != 0) & (above != 0)
    pairs = np.stack([below[touching], above[touching]], axis=1).astype(np.uint32)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def components(counts: Sequence[int], edges: Sequence[tuple[int, int, np.ndarray]]) -> tuple[list[np.ndarray], int]:
    """The volume's skeleton components from per-block label counts and face equivalences.

    ``counts[b]`` is block ``b``'s number of labels (1..n); each edge ``(a, b, pairs)`` joins
    label ``pairs[:, 0]`` of block ``a`` to ``pairs[:, 1]`` of block ``b``. Returns one table per
    block, ``table[local label] = component`` (1..C, ``table[0] = 0``), and ``C``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    total = int(offsets[-1])
    if total == 0:
        return [np.zeros(1, np.uint32) for _ in counts], 0
    rows = [offsets[a] + p[:, 0].astype(np.int64) - 1 for a, _, p in edges]
    cols = [offsets[b] + p[:, 1].astype(np.int64) - 1 for _, b, p in edges]
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(row), np.int8), (row, col)), shape=(total, total)).tocsr()
    count, which = connected_components(graph, directed=False)
    dtype = np.uint32 if count < 2**32 else np.uint64
    which = which.astype(dtype) + dtype(1)
    return [np.concatenate(([0], which[offsets[b] : offsets[b + 1]])).astype(dtype) for b in range(len(counts))], int(count)


def global_order(firsts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The volume's order of first appearance from each block's ``(labels, smallest linear
    index)``: sorted labels and the number 1..K each gets (step 10, renumbering)."""
    labels = np.concatenate([f[0] for f in firsts]) if firsts else np.zeros(0, np.uint64)
    at = np.concatenate([f[1] for f in firsts]) if firsts else np.zeros(0, np.int64)
    by_index = np.argsort(at, kind="stable")
    labels, at = labels[by_index], at[by_index]
    unique, first = np.unique(labels, return_index=True)  # each label's smallest index
    rank = np.empty(len(unique), np.int64)
    rank[np.argsort(at[first], kind="stable")] = np.arange(1, len(unique) + 1)
    return unique, rank
