"""dispatch(): answers for every batch, and failures reach the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skoots_client.dispatch import dispatch
from skoots_client.errors import InputError
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
        for key, outputs in dispatch(jobs(), [model]):
            answers.append(key)
    assert set(answers) <= {0, 1}
