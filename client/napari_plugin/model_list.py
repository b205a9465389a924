"""What a repository's model runs on in this process, as the widget's "List models" shows it."""

from __future__ import annotations

from pathlib import Path

from ..choices import Runtime
from ..errors import ClientError

__all__ = ["runs_here"]

_RUNS_ON = {Runtime.OPENVINO: "OpenVINO on CPU", Runtime.TORCHSCRIPT: "TorchScript on CPU", Runtime.CUDA: "TorchScript on CUDA GPU"}


def runs_here(repository: Path, model: str, runtime: Runtime | str) -> str:
    """What ``model`` of ``repository`` runs on in this process with ``runtime`` (``auto``: the
    fastest this machine has), e.g. ``OpenVINO on CPU``; not the backend it was exported for,
    which only a Triton server runs. A model that cannot run here says why."""
    from ..model_source import embedded_model
    from ..runtimes import plan_runtime

    try:
        _, version_dir = embedded_model(repository, model)
        chosen, _ = plan_runtime(version_dir, runtime)
    except ClientError as e:
        return f"cannot run here: {e}"
    return _RUNS_ON[chosen]
