"""Compile the inference head to TorchScript and prove the compiled module is the same model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .errors import VerificationError
from .head import InferenceHead

__all__ = ["script_head", "Reference", "reference_answer", "matches_reference", "verify_scripted"]

# float32 kernels may reorder sums between eager and scripted graphs; anything larger is a bug.
_RAW_TOLERANCE = 1e-4


def script_head(head: InferenceHead) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the head. Scripting (not tracing) keeps the CPU/CUDA branch
    and lets any crop shape through, which tracing would freeze."""
    return torch.jit.script(head.eval())


def _near(value: torch.Tensor, threshold: float) -> torch.Tensor:
    return (value - threshold).abs() <= _RAW_TOLERANCE


@dataclass(frozen=True)
class Reference:
    """The eager head's answer to one random crop, which every compiled form must reproduce.

    ``settled`` marks the voxels whose raw probabilities lie farther than the float tolerance
    from a threshold: only there must thresholded outputs agree exactly.
    """

    crop: torch.Tensor
    raw: torch.Tensor
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    settled: torch.Tensor


@torch.inference_mode()
def reference_answer(eager: InferenceHead, crop: tuple[int, int, int], seed: int = 0) -> Reference:
    generator = torch.Generator().manual_seed(seed)
    crop_input = torch.rand((1, 1, *crop), generator=generator).half()
    raw = eager.network(crop_input.float())
    ambiguous = _near(raw[:, 4:5], eager.prob_threshold) | _near(raw[:, 3:4], eager.skeleton_threshold)
    return Reference(crop_input, raw, eager(crop_input), ~ambiguous)


def matches_reference(reference: Reference, outputs: tuple[torch.Tensor, ...]) -> bool:
    """Skeletons equal at settled voxels; vectors and probabilities within 1e-3."""
    vectors, skeleton, prob = reference.outputs
    c_vectors, c_skeleton, c_prob = outputs
    settled = reference.settled
    vector_error = (vectors.float() - c_vectors.float()).abs() * settled
    return (
        torch.equal(skeleton[settled], c_skeleton[settled])
        and float(vector_error.max()) <= 1e-3
        and float((prob.float() - c_prob.float()).abs().max()) <= 1e-3
    )


@torch.inference_mode()
def verify_scripted(
    eager: InferenceHead, scripted: nn.Module, crop: tuple[int, int, int], seed: int = 0, reference: Reference | None = None
) -> Reference:
    """Run both on one random crop; raise `VerificationError` if they disagree.

    Raw network outputs must agree within 1e-4 and every thresholded output must be equal,
    except at voxels whose raw value lies within that tolerance of a threshold. Returns the
    eager answer, for checking other compiled forms against it.
    """
    reference = reference or reference_answer(eager, crop, seed)
    raw_scripted = cast(nn.Module, scripted.network)(reference.crop.float())
    difference = float((reference.raw - raw_scripted).abs().max())
    if not difference <= _RAW_TOLERANCE:
        raise VerificationError(
            f"TorchScript differs from the eager network by {difference:.3g} (> {_RAW_TOLERANCE}); "
            "nothing was written — report this with the checkpoint's cfg"
        )
    if not matches_reference(reference, scripted(reference.crop)):
        raise VerificationError(
            "TorchScript head's thresholded outputs differ from the eager head; nothing was written"
        )
    return reference
