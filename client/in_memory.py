"""Steps 1-10 for a whole volume: tile, infer through endpoints, stitch, post-process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from skoots_export.contract.wire import ModelParameters

from . import postprocess
from .dispatch import Endpoint, dispatch
from .normalize import Normalization, model_rule
from .progress import Watch
from .run_stats import RunStats
from .skeletons import skeleton_ids
from .skip import SkipRule
from .specs import OutputSpec
from .tiling import Crop, crop_grid
from .volume import Volume, release_pages
from .workdir import Piece, WorkDir

__all__ = ["REFERENCE_ASSIGN_FRAME", "reference_interior", "infer_pieces", "segment_volume"]

# The reference assigns instances in 500x500x50 blocks and never writes their outer
# 50/50/5 voxels; --reference-borders keeps that frame background.
REFERENCE_ASSIGN_FRAME = (50, 50, 5)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - start

_NO_OUTPUT = OutputSpec()  # segment_volume's default: labels kept in memory only, nothing written



def _padding(size: Sequence[int], minimum: int) -> list[tuple[int, int]]:
    """Pad at the far end of axes shorter than the network's minimum (volumes smaller than it)."""
    return [(0, max(0, minimum - n)) for n in size]


def _batches(
    volume: Volume, grid: Sequence[Crop], batch_size: int, parameters: ModelParameters, normalization: Normalization
) -> Iterator[tuple[int, np.ndarray]]:
    for first in range(0, len(grid), batch_size):
        crops = grid[first : first + batch_size]
        padding = _padding(crops[0].size, parameters.minimum_size)
        padded = any(after for _, after in padding)
        # Each crop is normalised straight into its slot of the request's batch.
        batch = np.empty((len(crops), 1, *(n + after for n, (_, after) in zip(crops[0].size, padding))), np.float16)
        for j, c in enumerate(crops):
            raw = np.asarray(volume.data[c.window])
            slot = batch[j, 0][tuple(slice(0, n) for n in c.size)]
            normalization.apply(raw, out=slot)
            if padded:
                batch[j, 0] = np.pad(slot, padding, mode="symmetric")
        yield first, batch


def reference_interior(shape: Sequence[int]) -> list[tuple[int, int]]:
    """``[lo, hi)`` per axis of what ``--reference-borders`` keeps: all but the reference's
    unwritten frame."""
    return [(min(f, n), max(min(f, n), n - f)) for f, n in zip(REFERENCE_ASSIGN_FRAME, shape)]


def infer_pieces(
    volume: Volume,
    crops: Sequence[Crop],
    parameters: ModelParameters,
    endpoints: Sequence[Endpoint],
    normalization: Normalization,
    *,
    batch_size: int,
    xp: Any = np,
    probability: bool = False,
    on_endpoint_lost: Callable[[str, BaseException], None] | None = None,
) -> Iterator[tuple[Sequence[Crop], list[Piece]]]:
    """Infer ``crops`` (steps 1-6) in batches of ``batch_size`` over ``endpoints``; yield each
    answered batch's crops with their pieces (owned region of the dilated skeleton, of the
    vectors and, with ``probability``, of the probability), in completion order. Every crop is
    normalised by ``normalization`` (one for the whole volume, so crops anywhere map alike)."""
    half_widths = postprocess.dilation_half_widths(parameters.dilations_3d, parameters.dilations_2d)
    for first, outputs in dispatch(
        _batches(volume, crops, batch_size, parameters, normalization), endpoints, probability=probability, on_endpoint_lost=on_endpoint_lost
    ):
        batch = crops[first : first + batch_size]
        pieces = []
        for j, crop in enumerate(batch):
            # Dilated within the crop only, and only near what it keeps: the owned region widened
            # by the dilation's half-widths (clipped to the crop) dilates to the same owned voxels.
            near = tuple(slice(max(0, k.start - h), min(n, k.stop + h)) for k, h, n in zip(crop.local, half_widths, crop.size))
            dilated = postprocess.dilate_skeleton(xp.asarray(outputs[1][j, 0][near]), half_widths)
            kept = tuple(slice(k.start - w.start, k.stop - w.start) for k, w in zip(crop.local, near))
            pieces.append(Piece(dilated[kept], outputs[0][j][(slice(None), *crop.local)],
                                outputs[2][j, 0][crop.local] if probability else None))
        yield batch, pieces


def _warn_lost(watch: Watch) -> Callable[[str, BaseException], None]:
    def lost(name: str, error: BaseException) -> None:
        watch.warn(f"{name} dropped out ({error}); carrying on with the others")

    return lost


def segment_volume(
    volume: Volume,
    parameters: ModelParameters,
    endpoints: Sequence[Endpoint],
    *,
    batch_size: int,
    xp: Any = np,
    reference_borders: bool = False,
    output: OutputSpec = _NO_OUTPUT,
    watch: Watch | None = None,
    work: WorkDir | None = None,
    normalization: Normalization | None = None,
    skip: SkipRule | None = None,
) -> RunStats:
    """Segment ``volume`` with the model behind ``endpoints`` (docs/SEMANTICS.md steps 1-10).

    Crops go out in batches of ``batch_size`` in grid order; answers are dilated per crop and
    stitched as they arrive, in any order, with the same result. With ``work``, crops it holds
    are stitched from it instead of inferred, and each answered batch is saved to it. With
    ``skip``, crops it rules out are not sent: their owned region stays background (zero
    skeleton and vectors), and crops that are inferred are stitched exactly as without it.
    ``normalization`` defaults to the model's rule (``parameters``' mean/std, else the dtype's).
    Of ``output``: instances of fewer than ``min_size`` voxels become background before
    renumbering; the labels are ``postprocess.labels_dtype(instances, labels_dtype)``; with
    ``save_intermediates`` the stitched answers are kept (``intermediates``). ``watch`` gets the
    crops' progress (stage ``"infer"``) and a warning for each server that drops out.
    """
    save_intermediates, min_size, labels_dtype = output.save_intermediates, output.min_size, output.labels_dtype.value
    progress = watch.stage("infer", "crops") if watch is not None else None
    if normalization is None:
        normalization = model_rule(parameters.dataset_mean, parameters.dataset_std)
    seconds: dict[str, float] = {}
    shape = volume.shape
    grid = crop_grid(shape, parameters.crop, parameters.overlap, reference_borders)
    skeleton = xp.zeros(shape, dtype=xp.uint8)
    vectors = xp.zeros((3, *shape), dtype=xp.float16)
    probability = np.zeros(shape, dtype=np.float16) if save_intermediates else None

    started = time.perf_counter()
    restored = set()
    for crop, piece in work.restore(grid) if work is not None else ():
        skeleton[crop.source] = xp.asarray(piece.skeleton)
        vectors[(slice(None), *crop.source)] = xp.asarray(piece.vectors)
        if probability is not None:
            probability[crop.source] = piece.probability
        restored.add(crop.index)
    todo = [crop for crop in grid if crop.index not in restored]
    skipped = 0
    if skip is not None:
        with _timed(seconds, "skip-check"):
            kept = [crop for crop in todo if not skip.skips(volume, crop)]
        skipped, todo = len(todo) - len(kept), kept
        started = time.perf_counter()
    done = len(grid) - len(todo)
    if progress:
        progress(done, len(grid))
    for crops, pieces in infer_pieces(
        volume, todo, parameters, endpoints, normalization,
        batch_size=batch_size, xp=xp, probability=save_intermediates,
        on_endpoint_lost=_warn_lost(watch) if watch is not None else None,
    ):
        for crop, piece in zip(crops, pieces):
            skeleton[crop.source] = piece.skeleton
            vectors[(slice(None), *crop.source)] = xp.asarray(piece.vectors)
            if probability is not None:
                probability[crop.source] = piece.probability
        if work is not None:
            work.save(crops, pieces)
        done += len(crops)
        if progress:
            progress(done, len(grid))
    seconds["infer+stitch"] = time.perf_counter() - started
    release_pages(volume)  # the input is read: its mapped pages need not stay resident

    # Each full-size array is dropped as soon as the next step no longer needs it: the peak of
    # the in-memory mode is the assignment's vectors + skeleton labels + labels.
    with _timed(seconds, "label"):
        skeleton_labels, _ = postprocess.label_skeleton(skeleton)
        # --skeletons: the predicted skeleton's voxels and their components, kept sparse
        predicted = _sparse(skeleton_labels) if output.skeletons else None
    if not save_intermediates:
        del skeleton
    with _timed(seconds, "assign"):
        labels = postprocess.assign_instances(
            vectors, skeleton_labels, parameters.vector_scaling, parameters.embedding_iterations
        )
        del skeleton_labels
        if not save_intermediates:
            del vectors
        if reference_borders:
            postprocess.clear_outside(labels, [(0, n) for n in shape], reference_interior(shape))
    with _timed(seconds, "renumber"):
        labels = postprocess.remove_small_instances(labels, min_size)
        if predicted is not None:  # where each surviving component first appears, to read its final id there
            keys, first = postprocess.first_appearances(labels.get() if hasattr(labels, "get") else labels)
        labels, count = postprocess.renumber_labels(labels, labels_dtype)
        if predicted is not None:
            predicted = _instance_skeletons(predicted, keys, first, labels)
    intermediates = {}
    if save_intermediates:
        intermediates = {"skeleton": skeleton, "vectors": vectors, "probability": probability}
    note = postprocess.labels_dtype_note(int(count), labels_dtype)
    return RunStats(instances=int(count), crops=len(grid), tile=tuple(max(n, parameters.minimum_size) for n in grid[0].size), seconds=seconds, skipped=skipped, resumed={"infer": len(restored)},
                    labels=labels, intermediates=intermediates, inferred=len(todo), notes=[note] if note else [],
                    skeleton_voxels=predicted)


def _instance_skeletons(predicted: tuple[np.ndarray, np.ndarray], keys: np.ndarray, first: np.ndarray,
                        labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The predicted skeleton's voxels with their instances' final ids (``keys``' labels where
    each first appears, ``first``), kept where the voxel itself was assigned to that
    instance: each instance's own skeleton. ``labels`` NumPy or CuPy; the result on the CPU."""
    def host(flat_at: np.ndarray) -> np.ndarray:
        values = labels.reshape(-1)[postprocess.array_module(labels).asarray(flat_at)]
        return values.get() if hasattr(values, "get") else values

    at, components = predicted
    ids = skeleton_ids(components, keys, host(first))
    keep = (ids != 0) & (host(at) == ids)
    return at[keep], ids[keep]


def _sparse(skeleton_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The flat (C-order) indices of the labelled skeleton's voxels and their components, on the CPU."""
    flat = skeleton_labels.reshape(-1)
    at = flat.nonzero()[0]
    components = flat[at]
    if hasattr(at, "get"):
        at, components = at.get(), components.get()
    return at, components
