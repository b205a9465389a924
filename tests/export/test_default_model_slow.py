"""Issue 2's acceptance: the default-cfg export reproduces upstream on a 300x300x20 crop, in
TorchScript and (issue 12) in the OpenVINO IR."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoints import skoots_cfg, write_checkpoint

from skoots_export.contract.choices import Device
from skoots_export.exporter import export_checkpoint

upstream_utils = pytest.importorskip(
    "skoots.lib.utils", reason="install skoots==0.0.5 and bism==0.0.6 with --no-deps"
)


@pytest.mark.slow
def test_default_cfg_export_reproduces_upstream_with_reference_thresholds(tmp_path: Path) -> None:
    cfg = skoots_cfg()  # upstream defaults: dims 32-64-128-64-32, kernel 7
    checkpoint = write_checkpoint(tmp_path / "default.trch", cfg, seed=5)
    export_checkpoint(checkpoint, repository=tmp_path / "repo", device=Device.CPU)
    model = torch.jit.load(str(tmp_path / "repo" / "skoots" / "1" / "model.pt"))

    upstream = upstream_utils.cfg_to_bism_model(cfg)
    upstream.load_state_dict(torch.load(checkpoint, weights_only=False)["model_state_dict"])
    crop = (torch.rand((1, 1, 300, 300, 20), generator=torch.Generator().manual_seed(0)) * 2**16).floor()
    # The wire carries FP16 (docs/SEMANTICS.md): both see the crop / 2**16 that the client sends.
    x = crop.div(2**16).half()
    with torch.inference_mode():
        out = upstream.train()(x.float())  # the seed runs .train(); with drop path 0 that is eval
        vectors, skeleton, prob = model(x)
    # The seed's step 4 on the upstream output.
    mask = out[:, [-1]].gt(0.5)
    reference_vectors = (out[:, 0:3] * mask).half()
    reference_skeleton = (out[:, [-2]].float() * mask).gt(0.8)
    near = (out[:, [-1]] - 0.5).abs().lt(1e-4) | (out[:, [-2]] - 0.8).abs().lt(1e-4)
    assert 0 < int(skeleton.sum()) and 0 < int(mask.sum()) < mask.numel()
    from skoots_export.contract.openvino_runtime import OpenVinoHead

    ir = OpenVinoHead(str(tmp_path / "repo" / "skoots" / "1" / "model.xml"))  # FP32
    for got_vectors, got_skeleton, got_prob in [(vectors, skeleton, prob), tuple(torch.from_numpy(o) for o in ir(x.numpy()))]:
        assert float(((got_vectors.float() - reference_vectors.float()).abs() * ~near).max()) <= 1e-3
        assert torch.equal(got_skeleton.bool() & ~near, reference_skeleton & ~near)
        assert float((got_prob.float() - out[:, [-1]]).abs().max()) <= 1e-3
