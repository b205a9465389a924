"""Cancelling a blockwise run: it stops within the stage it is in and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, blockwise_labels, local_cluster, tubes  # noqa: F401 - a fixture

from skoots_client.progress import Cancelled, Watch

SHAPE = (70, 61, 23)


def test_cancelling_stops_the_stage_and_leaves_nothing(local_cluster, tmp_path: Path) -> None:
    vectors, skeleton = tubes(SHAPE, 20, PARAMETERS_FOR_TESTS.vector_scaling, seed=1)
    (tmp_path / "answers").mkdir()
    answers = answers_store(tmp_path / "answers", vectors, skeleton)
    run = tmp_path / "run"
    run.mkdir()
    calls: list[tuple[str, int, int]] = []

    def progress(stage: str, done: int, total: int) -> bool:
        calls.append((stage, done, total))
        return done < 1

    with pytest.raises(Cancelled, match=r"^cancelled by the progress callback at infer 1/\d+$"):
        blockwise_labels(run, answers, SHAPE, PARAMETERS_FOR_TESTS, (1, 1, 1), scheduler=local_cluster.scheduler_address,
                         watch=Watch(True, progress))
    assert [c[:2] for c in calls] == [("infer", 0), ("infer", 1)] and calls[0][2] > 1
    assert list(run.iterdir()) == []  # neither labels nor work directory
