"""Step 1 of the reference semantics: bring raw voxels to the network's input range, as FP16."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def normalize_crop(
    crop: np.ndarray, *, dataset_mean: float | None = None, dataset_std: float | None = None
) -> np.ndarray:
    """Normalise one crop and return it as float16 (the wire type; libtorch has no UINT16).

    With ``dataset_mean`` / ``dataset_std``: ``(x - mean) / std``. Otherwise the seed's rule:
    ``x / 2**16`` for uint16, ``x / 2**8`` for uint8, and float input taken as already
    normalised. The division runs in float32, as the seed's does.
    """
    if dataset_mean is not None and dataset_std is not None:
        out = (crop.astype(np.float32) - np.float32(dataset_mean)) / np.float32(dataset_std)
    elif crop.dtype == np.uint16:
        out = crop.astype(np.float32) / np.float32(2**16)
    elif crop.dtype == np.uint8:
        out = crop.astype(np.float32) / np.float32(2**8)
    elif crop.dtype.kind == "f":
        out = crop
    else:
        raise InputError(f"cannot normalise {crop.dtype} voxels; SKOOTS reads uint8, uint16 or float")
    if crop.dtype.kind == "f" and not np.isfinite(crop).all():
        raise InputError("the volume holds NaN or infinite values; replace them before segmenting")
    return out.astype(np.float16)
