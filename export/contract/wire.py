"""The wire contract: the tensors a SKOOTS model takes and returns, and the constants its
Triton config carries.

``ModelParameters`` holds every constant a client needs to segment with a model; export
writes it into ``config.pbtxt`` and the client reads it back, from the file or from a
server's ``get_model_config``, with `parameters_from_config`. Configs are Triton's own
``ModelConfig`` protobuf, so what is written is what Triton parses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from .triples import parse_triple
from .units import LENGTH_UNITS

__all__ = [
    "CONTRACT_VERSION", "TORCH_VERSION", "TensorSpec", "INPUT", "VECTORS", "SKELETON", "PROBABILITY", "OUTPUTS",
    "ModelParameters", "config_to_text", "config_from_text", "contract_problems", "parameters_from_config",
]

CONTRACT_VERSION = "1"
TORCH_VERSION = "torch_version"  # config parameter: the torch release that saved model.pt


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the wire contract; ``dims`` omit the batch axis (-1 = any length)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


INPUT = TensorSpec("input__0", "TYPE_FP16", (1, -1, -1, -1))
VECTORS = TensorSpec("vectors__0", "TYPE_FP16", (3, -1, -1, -1))
SKELETON = TensorSpec("skeleton__1", "TYPE_UINT8", (1, -1, -1, -1))
PROBABILITY = TensorSpec("probability__2", "TYPE_FP16", (1, -1, -1, -1))
OUTPUTS = (VECTORS, SKELETON, PROBABILITY)


@dataclass(frozen=True)
class ModelParameters:
    """The constants of docs/SEMANTICS.md's reference semantics; defaults are the seed's.

    ``dataset_mean`` / ``dataset_std`` set ``(x - mean) / std`` normalisation; without them
    uint16 input is divided by 2**16 and uint8 by 2**8. ``minimum_size`` is the shortest axis
    the network accepts (2 ** its number of stride-2 levels); shorter volumes are padded.
    ``training_voxel_size`` (X, Y, Z, in ``voxel_unit``) is the voxel size the model was trained
    at, when its card says so: the client can compare it with the input's.
    """

    crop: tuple[int, int, int] = (300, 300, 20)
    overlap: tuple[int, int, int] = (10, 10, 5)
    vector_scaling: tuple[float, float, float] = (60.0, 60.0, 12.0)
    anisotropy: tuple[float, float, float] = (1.0, 1.0, 3.0)
    prob_threshold: float = 0.5
    skeleton_threshold: float = 0.8
    dilations_3d: int = 1
    dilations_2d: int = 3
    embedding_iterations: int = 2
    dataset_mean: float | None = None
    dataset_std: float | None = None
    minimum_size: int = 8
    training_voxel_size: tuple[float, float, float] | None = None
    voxel_unit: str | None = None

    def __post_init__(self) -> None:
        for name in ("crop", "overlap", "vector_scaling", "anisotropy", "training_voxel_size"):
            if getattr(self, name) is not None and len(getattr(self, name)) != 3:
                raise ValueError(f"{name} needs 3 values (X,Y,Z), got {getattr(self, name)}")
        if any(c < 1 for c in self.crop):
            raise ValueError(f"crop {self.crop} must be positive on every axis")
        for name in ("vector_scaling", "anisotropy", "dataset_mean", "dataset_std", "training_voxel_size"):
            value = getattr(self, name)
            if value is not None and not all(math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
                raise ValueError(f"{name} = {value} must be finite")
        if any(o < 0 for o in self.overlap):
            raise ValueError(f"overlap {self.overlap} must not be negative")
        if any(c - 2 * o <= 0 for c, o in zip(self.crop, self.overlap)):
            raise ValueError(
                f"crop {self.crop} with overlap {self.overlap} keeps nothing of a crop: "
                "each crop size must exceed twice its overlap"
            )
        for name in ("prob_threshold", "skeleton_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} = {getattr(self, name)} must lie in [0, 1)")
        if self.dilations_3d < 0 or self.dilations_2d < 0:
            raise ValueError("dilation counts must not be negative")
        if self.minimum_size < 1:
            raise ValueError(f"minimum_size = {self.minimum_size} must be at least 1")
        if any(c < self.minimum_size for c in self.crop):
            raise ValueError(
                f"crop {self.crop} is below the network's minimum of {self.minimum_size} voxels per axis "
                f"(2 to the power of its stride-2 levels); choose a crop of at least {self.minimum_size} on every axis"
            )
        if self.embedding_iterations < 1:
            raise ValueError(f"embedding_iterations = {self.embedding_iterations} must be at least 1")
        if (self.dataset_mean is None) != (self.dataset_std is None):
            raise ValueError("dataset_mean and dataset_std come together")
        if self.dataset_std is not None and not self.dataset_std > 0:
            raise ValueError(f"dataset_std = {self.dataset_std} must be positive")
        if self.training_voxel_size is not None and not all(v > 0 for v in self.training_voxel_size):
            raise ValueError(f"training_voxel_size = {self.training_voxel_size} must be positive on every axis")
        if (self.training_voxel_size is None) != (self.voxel_unit is None):
            raise ValueError("training_voxel_size and voxel_unit come together")
        if self.voxel_unit is not None and self.voxel_unit not in LENGTH_UNITS:
            raise ValueError(f"voxel_unit {self.voxel_unit!r} is not one of {', '.join(sorted(LENGTH_UNITS))}")

    @property
    def normalization(self) -> str:
        return "dtype_range" if self.dataset_mean is None else "mean_std"

    def replace(self, **changes: Any) -> ModelParameters:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_strings(self) -> dict[str, str]:
        """The ``parameters`` map of config.pbtxt (Triton parameters are strings)."""
        out = {"contract_version": CONTRACT_VERSION, "normalization": self.normalization}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            out[field.name] = ",".join(_fmt(v) for v in value) if isinstance(value, tuple) else _fmt(value)
        return out

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> ModelParameters:
        """Inverse of `to_strings`; raises ``ValueError`` naming a missing or bad key."""
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = values.get(field.name)
            if raw is None:
                if field.name in _OPTIONAL:
                    continue
                raise ValueError(f"model config has no parameter '{field.name}'")
            kind = _FIELD_KINDS[field.name]
            try:
                kwargs[field.name] = kind(raw) if kind in (int, float, str) else parse_triple(raw, kind[0])
            except ValueError as e:
                raise ValueError(f"model config parameter '{field.name}' = {raw!r} is malformed") from e
        return cls(**kwargs)


_OPTIONAL = ("dataset_mean", "dataset_std", "minimum_size", "training_voxel_size", "voxel_unit")
_FIELD_KINDS: dict[str, Any] = {
    "minimum_size": int,
    "crop": (int,),
    "overlap": (int,),
    "vector_scaling": (float,),
    "anisotropy": (float,),
    "prob_threshold": float,
    "skeleton_threshold": float,
    "dilations_3d": int,
    "dilations_2d": int,
    "embedding_iterations": int,
    "dataset_mean": float,
    "dataset_std": float,
    "training_voxel_size": (float,),
    "voxel_unit": str,
}


def _fmt(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def config_to_text(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def config_from_text(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt; raises ``text_format.ParseError`` on a malformed file."""
    return text_format.Parse(text, pb.ModelConfig())


def contract_problems(config: pb.ModelConfig) -> list[str]:
    """What keeps ``config`` from speaking the wire contract (empty when it does)."""
    problems = []
    inputs = {t.name: t for t in config.input}
    outputs = {t.name: t for t in config.output}
    for spec, table, role in [(INPUT, inputs, "input")] + [(s, outputs, "output") for s in OUTPUTS]:
        found = table.get(spec.name)
        if found is None:
            problems.append(f"no {role} '{spec.name}'")
        elif pb.DataType.Name(found.data_type) != spec.data_type:
            problems.append(f"{role} '{spec.name}' is {pb.DataType.Name(found.data_type)}, not {spec.data_type}")
        elif len(found.dims) != len(spec.dims) or found.dims[0] != spec.dims[0]:
            problems.append(f"{role} '{spec.name}' has dims {list(found.dims)}, not {list(spec.dims)}")
    return problems


def parameters_from_config(config: pb.ModelConfig) -> ModelParameters:
    """Read the segmentation constants back from a model config (file or server)."""
    return ModelParameters.from_strings({k: v.string_value for k, v in config.parameters.items()})

