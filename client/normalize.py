"""Step 1 of the reference semantics: bring raw voxels to the network's input range, as FP16.

The model's rule (its dataset mean/std, else the seed's dtype range) is the default; ``segment
--normalize`` chooses another at segment time (`parse_normalize`, `resolve_normalization`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "normalize_crop", "RULES", "DEFAULT_PERCENTILES", "NormalizeChoice", "parse_normalize", "Normalization", "model_rule",
    "resolve_normalization",
]


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
    normalised; int16 (signed EM and CT data, which the seed never read) by
    ``(x + 2**15) / 2**16``, its range onto [0, 1) as uint16's is: ``x`` as int16 gives the
    very input ``x + 2**15`` as uint16 gives. The division runs in float32, as the seed's does. ``out`` (float16, the
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
    elif crop.dtype not in (np.uint8, np.uint16, np.int16):
        raise InputError(f"cannot normalise {crop.dtype} voxels; SKOOTS reads uint8, uint16, int16 or float")
    if out is None or crop.ndim != 3 or crop.dtype.kind == "f":
        if out is None:
            return _scaled(crop, dataset_mean, dataset_std).astype(np.float16)
        out[...] = _scaled(crop, dataset_mean, dataset_std)
        return out
    # An integer crop has at most 2**16 distinct voxels: each one's float16 is looked up in a
    # table made by the very operations above, so the result is theirs bit for bit, in one
    # pass (NumPy casts float32 to float16 one element at a time: most of the cost otherwise).
    table = _table(crop.dtype, dataset_mean, dataset_std)
    _kernel()(crop.view(np.uint16) if crop.dtype == np.int16 else crop, table, out.view(np.uint16))
    return out


_tables: dict[tuple[Any, ...], np.ndarray] = {}
_kernels: list[Any] = []


def _table(dtype: np.dtype, dataset_mean: float | None, dataset_std: float | None) -> np.ndarray:
    """The float16 bits of every value of ``dtype`` (indexed as unsigned), normalised."""
    key = (np.dtype(dtype).str, dataset_mean, dataset_std)
    if key not in _tables:
        values = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
        half = _scaled(values, dataset_mean, dataset_std).astype(np.float16).view(np.uint16)
        table = np.empty_like(half)
        table[values.view(np.uint16) if dtype == np.int16 else values] = half  # int16 -1 sits at 0xFFFF
        _tables[key] = table
    return _tables[key]


def _kernel() -> Any:
    if not _kernels:
        import numba

        @numba.njit(cache=True, nogil=True)
        def gather(crop, table, out):  # pragma: no cover - compiled
            for i in range(crop.shape[0]):
                for j in range(crop.shape[1]):
                    for k in range(crop.shape[2]):
                        out[i, j, k] = table[crop[i, j, k]]

        _kernels.append(gather)
    return _kernels[0]


def _scaled(crop: np.ndarray, dataset_mean: float | None, dataset_std: float | None) -> np.ndarray:
    """``crop`` as float32, normalised in place (the rule `normalize_crop` documents)."""
    scaled = crop.astype(np.float32)
    if dataset_mean is not None and dataset_std is not None:
        scaled -= np.float32(dataset_mean)
        scaled /= np.float32(dataset_std)
    else:
        if crop.dtype == np.int16:
            scaled += np.float32(2**15)  # exact: every sum is an integer below 2**16
        scaled /= np.float32(2**8 if crop.dtype == np.uint8 else 2**16)
    return scaled


RULES = "auto, dtype, minmax, percentile[:LOW,HIGH] or mean-std:M,S"
DEFAULT_PERCENTILES = (1.0, 99.8)  # csbdeep's upper percentile; the lower one ignores the darkest 1 %


@dataclass(frozen=True)
class NormalizeChoice:
    """What ``--normalize`` asked for, before the volume is looked at; ``explicit`` when given."""

    rule: str = "auto"
    values: tuple[float, ...] = ()
    explicit: bool = False


def parse_normalize(text: str | None) -> NormalizeChoice:
    """``--normalize`` text → `NormalizeChoice`; ``InputError`` naming the forms otherwise."""
    if text is None:
        return NormalizeChoice()
    rule, _, rest = text.strip().lower().partition(":")

    def bad(why: str) -> InputError:
        return InputError(f"--normalize {text!r}: {why}")

    try:
        values = tuple(float(v) for v in rest.split(",")) if rest else ()
    except ValueError:
        raise bad(f"{rest!r} is not two numbers, e.g. percentile:1,99.8 or mean-std:120,30") from None
    if not all(math.isfinite(v) for v in values):
        raise bad("the numbers must be finite")
    if rule in ("auto", "dtype", "minmax") and not rest:
        return NormalizeChoice(rule, (), True)
    if rule == "percentile":
        values = values or DEFAULT_PERCENTILES
        if len(values) != 2 or not 0 <= values[0] < values[1] <= 100:
            raise bad("give two percentiles LOW < HIGH within 0..100, e.g. percentile:1,99.8")
        return NormalizeChoice(rule, values, True)
    if rule == "mean-std":
        if len(values) != 2 or not values[1] > 0:
            raise bad("give the mean and a positive standard deviation, e.g. mean-std:120,30")
        return NormalizeChoice(rule, values, True)
    raise bad(f"choose {RULES}")


@dataclass(frozen=True)
class Normalization:
    """A resolved rule: ``(x - offset) / scale`` in float32, or with ``offset`` None the seed's
    dtype rule. The numbers are global (the model's, the user's, or the volume's statistics,
    computed once), so a voxel's input does not depend on the crop or block it is cut in."""

    rule: str
    offset: float | None = None
    scale: float | None = None
    detail: str = ""

    def apply(self, crop: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return normalize_crop(crop, dataset_mean=self.offset, dataset_std=self.scale, out=out)

    def describe(self, dtype: Any) -> str:
        """One line for the summary: the rule and the formula it ran."""
        dtype = np.dtype(dtype)
        if self.offset is None:
            formula = "float taken as is" if dtype.kind == "f" else f"x / {2 ** (8 * dtype.itemsize)}"
            if dtype == np.int16:
                formula = "(x + 32768) / 65536"
            return f"dtype ({formula}){self.detail}"
        return f"{self.rule}{self.detail}: (x - {self.offset:.6g}) / {self.scale:.6g}"

    def to_dict(self) -> dict[str, Any]:
        """For a work directory's fingerprint: resuming under another rule is refused."""
        return {"rule": self.rule, "offset": self.offset, "scale": self.scale}


def model_rule(dataset_mean: float | None, dataset_std: float | None) -> Normalization:
    """The model's own rule (``--normalize auto``): its dataset mean/std, else the dtype range."""
    if dataset_mean is not None and dataset_std is not None:
        return Normalization("mean-std", dataset_mean, dataset_std, " (the model's)")
    return Normalization("dtype", detail=", the model's rule")


def resolve_normalization(
    choice: NormalizeChoice, dataset_mean: float | None, dataset_std: float | None, sample: np.ndarray
) -> Normalization:
    """The rule ``choice`` means for this model and volume. ``sample`` (finite voxels of the
    volume, e.g. `sanity.sample_voxels`) gives ``minmax`` and ``percentile`` their numbers."""
    if choice.rule == "auto":
        return model_rule(dataset_mean, dataset_std)
    if choice.rule == "dtype":
        return Normalization("dtype")
    if choice.rule == "mean-std":
        mean, std = choice.values
        return Normalization("mean-std", mean, std)
    if choice.rule == "minmax":
        low, high, detail, what = float(sample.min()), float(sample.max()), "", "minimum and maximum"
    else:
        low, high = (float(v) for v in np.percentile(sample, choice.values))
        detail, what = " {:g}-{:g}".format(*choice.values), "percentiles {:g} and {:g}".format(*choice.values)
    if not high > low:
        raise InputError(
            f"--normalize {choice.rule}: the volume's {what} are both {low:g}, so there is no range to stretch; "
            f"use --normalize dtype{' or percentiles further apart' if detail else ''}"
        )
    return Normalization(choice.rule, low, high - low, detail)
