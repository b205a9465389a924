"""``--reference-borders`` against the seed's protocol run with upstream skoots' own functions.

The seed's loop (the original SKOOTS inference protocol) is replayed step by step with ``skoots.lib``
(``tests/upstream_seed.py``) on the same TorchScript network, and the labels are compared with
ours on volumes that fit one reference block (≤ 500x500x50).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
import torch
from reference_pipeline import same_partition
from upstream_seed import seed_protocol

import skoots_client

pytest.importorskip("skoots.lib.flood_fill", reason="install skoots==0.0.5, bism==0.0.6 (--no-deps) and tqdm")


@pytest.mark.slow
@pytest.mark.parametrize("shape_zxy,seed", [((40, 300, 300), 0), ((23, 157, 203), 1)])
def test_reference_borders_equal_the_seed_protocol(e2e_seed_repository: Path, tmp_path: Path, shape_zxy, seed: int) -> None:
    from test_segment_e2e import blobs_volume

    volume = blobs_volume(shape_zxy, seed=seed)
    tifffile.imwrite(tmp_path / "v.tif", volume)
    skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "ours.tif", repository=e2e_seed_repository, device="cpu",
                          reference_borders=True, quiet=True)
    ours = tifffile.imread(tmp_path / "ours.tif").transpose(1, 2, 0)
    model = torch.jit.load(str(e2e_seed_repository / "skoots" / "1" / "model.pt"))
    theirs = seed_protocol(volume, model, (24, 24, 8), (4, 4, 2), (4.0, 4.0, 2.0))
    assert ours.max() > 5
    assert same_partition(ours, theirs)
