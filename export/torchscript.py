"""Compile the inference head to TorchScript and prove the compiled module is the same model."""

from __future__ import annotations

import torch
from torch import nn

from .errors import VerificationError
from .head import InferenceHead

# float32 kernels may reorder sums between eager and scripted graphs; anything larger is a bug.
_RAW_TOLERANCE = 1e-4


def script_head(head: InferenceHead) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the head. Scripting (not tracing) keeps the CPU/CUDA branch
    and lets any crop shape through, which tracing would freeze."""
    return torch.jit.script(head.eval())


def _near(value: torch.Tensor, threshold: float) -> torch.Tensor:
    return (value - threshold).abs() <= _RAW_TOLERANCE


@torch.inference_mode()
def verify_scripted(eager: InferenceHead, scripted: nn.Module, crop: tuple[int, int, int], seed: int = 0) -> None:
    """Run both on one random crop; raise :class:`VerificationError` if they disagree.

    Raw network outputs must agree within 1e-4 and every thresholded output must be equal,
    except at voxels whose raw value lies within that tolerance of a threshold.
    """
    generator = torch.Generator().manual_seed(seed)
    crop_input = torch.rand((1, 1, *crop), generator=generator).half()
    raw = eager.network(crop_input.float())
    raw_scripted = scripted.network(crop_input.float())
    difference = float((raw - raw_scripted).abs().max())
    if not difference <= _RAW_TOLERANCE:
        raise VerificationError(
            f"TorchScript differs from the eager network by {difference:.3g} (> {_RAW_TOLERANCE}); "
            "nothing was written — report this with the checkpoint's cfg"
        )
    vectors, skeleton, prob = eager(crop_input)
    s_vectors, s_skeleton, s_prob = scripted(crop_input)
    ambiguous = _near(raw[:, 4:5], eager.prob_threshold) | _near(raw[:, 3:4], eager.skeleton_threshold)
    settled = ~ambiguous
    vector_error = (vectors.float() - s_vectors.float()).abs() * settled
    agree = (
        torch.equal(skeleton[settled], s_skeleton[settled])
        and float(vector_error.max()) <= 1e-3
        and float((prob.float() - s_prob.float()).abs().max()) <= 1e-3
    )
    if not agree:
        raise VerificationError(
            "TorchScript head's thresholded outputs differ from the eager head; nothing was written"
        )
