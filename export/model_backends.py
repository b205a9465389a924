"""Which models of a repository a server can load, given the backends it has.

The wheel's ``tritonserver`` has the Python backend; Triton's PyTorch backend joins it once
``skoots build-backend pytorch`` has built it (CPU only). ``skoots serve`` loads what these
backends can run and says in one line per model why it leaves the others out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contract.wire import config_from_text

__all__ = [
    "BUILD_STEP", "RepositoryModel", "repository_models", "unservable_reason", "servable_models", "ServePlan", "plan_models",
]

BUILD_STEP = "skoots build-backend pytorch"


@dataclass(frozen=True)
class RepositoryModel:
    """A model of a repository: its name, the Triton backend that runs it, and whether an
    instance group asks for a GPU."""

    name: str
    backend: str
    wants_gpu: bool


def _backend_of(config) -> str:
    """``pytorch`` for the ``pytorch_libtorch`` platform, else the config's backend or platform."""
    if config.platform == "pytorch_libtorch" or config.backend == "pytorch":
        return "pytorch"
    return config.backend or config.platform.split("_")[0] or "unknown"


def repository_models(repository: Path) -> list[RepositoryModel]:
    """The models in ``repository`` with a readable ``config.pbtxt``, by name (a broken config
    is the server's to report)."""
    from tritonclient.grpc import model_config_pb2 as pb

    models = []
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        try:
            config = config_from_text(config_path.read_text())
        except Exception:  # noqa: BLE001 - the server says what is wrong with it
            continue
        gpu = any(group.kind == pb.ModelInstanceGroup.KIND_GPU for group in config.instance_group)
        models.append(RepositoryModel(config_path.parent.name, _backend_of(config), gpu))
    return models


def unservable_reason(model: RepositoryModel, backends: frozenset[str]) -> str | None:
    """Why a server with ``backends`` (the wheel's, plus what was built here) cannot load
    ``model``, as one line naming the fix; None when it can."""
    if model.backend == "pytorch":
        if "pytorch" not in backends:
            return f"{model.name} (pytorch_libtorch) needs Triton's PyTorch backend: build it with {BUILD_STEP}"
        if model.wants_gpu:
            return (
                f"{model.name} (pytorch_libtorch) has a KIND_GPU instance group and the PyTorch backend built here is CPU only: "
                "export with skoots export --device cpu to serve it here, or serve it on a GPU server (docs/GPU_SERVING.md)"
            )
        return None
    if model.backend == "openvino" and "openvino" not in backends:
        return (
            f"{model.name} needs Triton's OpenVINO backend, which the nvidia-pytriton tritonserver lacks and which does not build "
            "against the pip openvino (benchmarks/RESULTS.md); its _python twin runs the same IR (docs/GPU_SERVING.md for the container route)"
        )
    if model.backend not in backends:
        return f"{model.name} needs Triton's {model.backend} backend, which this tritonserver lacks (docs/GPU_SERVING.md)"
    return None


def servable_models(repository: Path, backends: frozenset[str]) -> tuple[list[str], list[str]]:
    """The models of ``repository`` a server with ``backends`` can load, and one line for each
    it cannot (what to do about it)."""
    names, reasons = [], []
    for model in repository_models(repository):
        reason = unservable_reason(model, backends)
        if reason is None:
            names.append(model.name)
        else:
            reasons.append(reason)
    return names, reasons


@dataclass(frozen=True)
class ServePlan:
    """What ``skoots serve`` asks of tritonserver: the models to load (empty: all), the PyTorch
    backend to add (the wheel's server only), each model's backend for the banner, and one
    warning line for each model left out."""

    models: tuple[str, ...]
    pytorch_backend: Path | None
    backends: dict[str, str]
    warnings: tuple[str, ...]


def plan_models(repository: Path, binary, requested: tuple[str, ...], pytorch_backend: Path | None) -> ServePlan:
    """The models ``binary`` (a ``server._Binary``) serves from ``repository``: the ``requested``
    ones, else every one it has a backend for. The wheel's server gets the PyTorch backend from
    ``pytorch_backend`` or, when that is None, from the build cached for this torch.

    Raises
    ------
    ServerError
        ``pytorch_backend`` holds no backend or is given to a tritonserver with its own backends;
        a requested model cannot be served; no model can.
    """
    from .backend_build import LIBRARY, cached_backend
    from .errors import ServerError

    models = {m.name: m for m in repository_models(repository)}
    described = {name: m.backend for name, m in models.items()}
    if not binary.python_only:
        if pytorch_backend is not None:
            raise ServerError("--pytorch-backend is for the nvidia-pytriton tritonserver; the tritonserver on PATH brings its own backends")
        return ServePlan(requested, None, described, ())
    if pytorch_backend is not None and not (Path(pytorch_backend) / LIBRARY).is_file():
        raise ServerError(f"--pytorch-backend {pytorch_backend} has no {LIBRARY}; build one with {BUILD_STEP}")
    backend = pytorch_backend or cached_backend()
    backends = frozenset({"python", "pytorch"} if backend is not None else {"python"})
    if requested:
        for name in requested:
            reason = unservable_reason(models[name], backends) if name in models else None
            if reason:
                raise ServerError(reason)
        return ServePlan(requested, _needed(backend, requested, described), described, ())
    names, reasons = servable_models(repository, backends)
    if not names:
        why = "; ".join(reasons) or "it holds no model"
        raise ServerError(f"{repository} has no model this tritonserver can serve ({why}); export one with skoots export --backend python, both or all")
    return ServePlan(tuple(names), _needed(backend, names, described), described, tuple(reasons))


def _needed(backend: Path | None, names, described: dict[str, str]) -> Path | None:
    """``backend`` when one of ``names`` runs on it: a server loads no backend it does not use."""
    return backend if any(described.get(name) == "pytorch" for name in names) else None
