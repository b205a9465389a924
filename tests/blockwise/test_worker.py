"""A blockwise worker's state: made once per process, released whole when a run ends."""

from __future__ import annotations

import numpy as np
import pytest

from skoots_client.blockwise import worker


def test_release_closes_the_endpoints_and_drops_everything() -> None:
    closed: list[object] = []

    class Endpoint:
        def close(self) -> None:
            closed.append(self)

    made = worker.endpoints("source", lambda: [Endpoint(), Endpoint()])
    assert worker.endpoints("source", lambda: pytest.fail("connected twice")) is made
    assert worker.cached("grid", lambda: 1) == 1 == worker.cached("grid", lambda: pytest.fail("made twice"))
    assert worker.scratch("slot", (2, 3), np.uint16).shape == (2, 3)
    worker.release()
    assert closed == made
    assert worker.STATE.opened == {} and worker.STATE.endpoints == {} and worker.STATE.scratch == {}
