"""A server restarted mid-run: the client retries with backoff and the labels are unchanged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from skoots_client.model_source import TritonEndpoint
from skoots_client.run import segment_file
from skoots_client.tiling import crop_grid


def test_client_rides_out_a_server_restart(e2e_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skoots_export.errors import ServerError
    from skoots_export.server import ServerConfig, TritonServer, find_binary
    from test_segment_e2e import blobs_volume

    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(str(e))
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((24, 90, 80), seed=2))
    segment_file(tmp_path / "v.tif", out=tmp_path / "expected.tif", repository=e2e_repository, device="cpu", batch=1, quiet=True)

    first = TritonServer(ServerConfig(repository=e2e_repository), binary).start()
    config = ServerConfig(repository=e2e_repository, grpc_port=first.grpc_port, http_port=first.http_port, metrics_port=first.metrics_port)
    second = TritonServer(config, binary)
    answered = []
    real_infer = TritonEndpoint.infer

    def counting_infer(self, batch, probability=False):
        out = real_infer(self, batch, probability)
        answered.append(1)
        return out

    outcome: list[BaseException] = []

    def segment() -> None:
        try:
            segment_file(
                tmp_path / "v.tif", out=tmp_path / "served.tif", urls=[first.grpc_url], device="cpu",
                batch=1, window=1, retries=8, quiet=True,
            )
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            outcome.append(e)

    monkeypatch.setattr(TritonEndpoint, "infer", counting_infer)  # counts answers; server and model are real
    client = threading.Thread(target=segment)
    client.start()
    try:
        while len(answered) < 5 and client.is_alive():
            time.sleep(0.05)
        first.stop()
        second.start()
        client.join(timeout=600)
    finally:
        first.stop()
        second.stop()
    assert not outcome, outcome
    assert np.array_equal(tifffile.imread(tmp_path / "served.tif"), tifffile.imread(tmp_path / "expected.tif"))
    crops = len(crop_grid((90, 80, 24), (24, 24, 8), (4, 4, 2)))
    assert len(answered) == crops, "each crop answered once: only unanswered crops were resent"
