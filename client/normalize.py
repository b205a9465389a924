"""Step 1 of the reference semantics: bring raw voxels to the network's input range, as FP16."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def normalize_crop(
    crop: np.ndarray,
    *,
    dataset_mean: float | None = None,
    dataset_std: float | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise one crop and return it as float16 (the wire type; libtorch has no UINT16).

    With ``dataset_mean`` / ``dataset_std``: ``(x - mean) / std``. Otherwise the seed's rule:
    ``x / 2**16`` for uint16, ``x / 2**8`` for uint8, and float input taken as already
    normalised. The division runs in float32, as the seed's does. ``out`` (float16, the
    crop's shape), when given, receives the result: a slot of a request's batch, so the
    batch needs no second copy.
    """
    if crop.dtype.kind == "f":
        if not np.isfinite(crop).all():
            raise InputError("the volume holds NaN or infinite values; replace them before segmenting")
        if dataset_mean is None or dataset_std is None:
            if out is None:
                return crop.astype(np.float16)
            out[...] = crop
            return out
    elif crop.dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot normalise {crop.dtype} voxels; SKOOTS reads uint8, uint16 or float")
    scaled = crop.astype(np.float32)  # the one float32 temporary, then in place
    if dataset_mean is not None and dataset_std is not None:
        scaled -= np.float32(dataset_mean)
        scaled /= np.float32(dataset_std)
    else:
        scaled /= np.float32(2**16 if crop.dtype == np.uint16 else 2**8)
    if out is None:
        return scaled.astype(np.float16)
    out[...] = scaled
    return out
