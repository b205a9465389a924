"""dispatch(): answers for every batch, and failures reach the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skoots_client.dispatch import dispatch
from skoots_client.errors import InputError, ServerUnavailableError
from skoots_client.model_source import EmbeddedModel


def test_a_failure_reading_the_first_batch_is_raised_not_swallowed(exported_repository: Path) -> None:
    """The feeder failing before any batch went out must not look like "no work": that once
    gave an all-background segmentation and exit code 0 for a volume holding NaN."""
    model = EmbeddedModel(exported_repository, "skoots")

    def jobs():
        raise InputError("cannot read the first crop")
        yield  # pragma: no cover

    with pytest.raises(InputError, match="cannot read the first crop"):
        list(dispatch(jobs(), [model]))


def test_a_failure_after_some_batches_is_raised(exported_repository: Path) -> None:
    model = EmbeddedModel(exported_repository, "skoots")
    batch = np.zeros((1, 1, 8, 8, 8), np.float16)

    def jobs():
        yield 0, batch
        yield 1, batch
        raise InputError("cannot read the third crop")

    answers = []
    with pytest.raises(InputError, match="third crop"):
        for key, _outputs in dispatch(jobs(), [model]):
            answers.append(key)
    assert set(answers) <= {0, 1}


class Unreachable:
    """An endpoint whose server has gone for good: every call fails as TritonEndpoint's do
    once their retries run out (the server-side version: test_server_restart.py)."""

    def __init__(self, concurrency: int) -> None:
        self.name, self.concurrency, self.calls = "gone", concurrency, 0

    def infer(self, batch, probability=False):
        self.calls += 1
        raise ServerUnavailableError("gone: UNAVAILABLE after 2 attempts")


def test_an_endpoint_that_fails_for_good_drops_out_once_and_the_others_finish(exported_repository: Path) -> None:
    model = EmbeddedModel(exported_repository, "skoots")
    gone = Unreachable(concurrency=3)
    batch = np.zeros((1, 1, 8, 8, 8), np.float16)
    lost = []
    answers = list(dispatch(((k, batch) for k in range(6)), [gone, model], on_endpoint_lost=lambda name, e: lost.append(name)))
    assert sorted(key for key, _ in answers) == list(range(6))
    assert lost == ["gone"], "one warning for the endpoint, not one per worker"
    assert gone.calls <= 3, "its other workers stopped taking batches once it failed"


def test_when_every_endpoint_fails_the_last_error_is_raised() -> None:
    gone = Unreachable(concurrency=2)
    with pytest.raises(ServerUnavailableError, match="UNAVAILABLE after 2 attempts"):
        list(dispatch(((k, np.zeros((1, 1, 8, 8, 8), np.float16)) for k in range(4)), [gone], on_endpoint_lost=lambda *_: pytest.fail("no warning for the last one")))
