"""Issue 29: a block whose task fails after its retries is never reported done; the stage's
other blocks finish and are kept, the run says which blocks failed and why (one line each) and
each stage's done / failed / remaining blocks, and ``--resume`` redoes only what is missing.
Real Dask clusters on 127.0.0.1 and real stores; the faults are real (bytes overwritten in a
chunk file, a worker's memory limit passed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, blockwise_labels, in_memory_labels, local_cluster, tubes  # noqa: F401 - a fixture

from skoots_client.blockwise.blocks import BlockGrid
from skoots_client.blockwise.stage_runner import RETRIES
from skoots_client.blockwise.store import BlockStore
from skoots_client.errors import BlockFailures
from skoots_client.run_stats import SHOWN_FAILURES, FailedBlock, RunStats

SHAPE = (70, 61, 23)
PARAMETERS = PARAMETERS_FOR_TESTS


def _overlaps(region, box) -> bool:
    return all(lo < b1 and b0 < hi for (lo, hi), (b0, b1) in zip(region, box))


def _erred_and_tries(scheduler) -> dict[str, int]:
    """The tasks the scheduler marked erred, with how many times each was sent to a worker
    (once, and once more per retry: Dask's ``retries=``), from its transition log."""
    log = list(scheduler.transition_log)
    erred = {str(t[0]) for t in log if t[2] == "erred"}
    return {key: sum(str(t[0]) == key and t[2] == "processing" for t in log) for key in erred}


def test_a_corrupt_answers_chunk_fails_its_blocks_after_the_retries_and_resume_redoes_only_them(local_cluster, tmp_path: Path) -> None:
    vectors, skeleton = tubes(SHAPE, 30, PARAMETERS.vector_scaling, seed=5)
    (tmp_path / "answers").mkdir()
    answers = answers_store(tmp_path / "answers", vectors, skeleton)
    chunk = answers / "skeleton" / "c" / "1" / "0" / "0"  # [X, Y, Z] 32:64, 0:32, 0:16
    good = chunk.read_bytes()
    chunk.write_bytes(b"\xff" * len(good))
    per_block = (1, 1, 2)
    grid = BlockGrid(SHAPE, PARAMETERS.crop, PARAMETERS.overlap, per_block)
    hit = sorted(b.name for b in grid.blocks if _overlaps(b.region, ((32, 64), (0, 32), (0, 16))))
    assert 0 < len(hit) < len(grid.blocks)
    before = set(_erred_and_tries(local_cluster.scheduler))
    with pytest.raises(BlockFailures) as caught:
        blockwise_labels(tmp_path, answers, SHAPE, PARAMETERS, per_block, scheduler=local_cluster.scheduler_address)
    failures = caught.value.failures
    assert [f.name for f in failures] == hit and {f.stage for f in failures} == {"infer"}
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{len(hit)} of {len(grid.blocks)} infer blocks failed; the finished blocks are kept in {tmp_path / 'work'}:"
    for line, name in zip(lines[1:-2], hit):
        region = re.escape(f"(z {grid.block(tuple(map(int, name.split('.')))).region[2][0]}:")
        assert re.fullmatch(rf"  infer block {name} {region}\d+, y \d+:\d+, x \d+:\d+\): \w+: .+", line), line
    assert len(lines) == len(hit) + 3 and "run the same command again with --resume" in lines[-1]
    # never reported done: no marker, not counted; the others are marked and kept
    assert sorted(BlockStore(tmp_path / "work").done("infer")) == sorted(b.name for b in grid.blocks if b.name not in hit)
    stats = caught.value.stats
    n = len(grid.blocks)
    assert stats.stage_counts() == {"infer": (n - len(hit), len(hit), 0), "label": (0, 0, n), "assign": (0, 0, n),
                                     "write": (0, 0, len(grid.write_regions()))}
    assert lines[-2] == stats.counts_line()
    # not a user error: Dask ran each failed task RETRIES more times before giving up
    tries = {k: v for k, v in _erred_and_tries(local_cluster.scheduler).items() if k not in before}
    assert sorted(tries.values()) == [RETRIES + 1] * len(hit), tries

    chunk.write_bytes(good)
    got, result = blockwise_labels(tmp_path, answers, SHAPE, PARAMETERS, per_block, scheduler=local_cluster.scheduler_address,
                                   resume=True)
    assert result.resumed["infer"] == n - len(hit) and result.done["infer"] == len(hit)
    assert np.array_equal(got, in_memory_labels(vectors, skeleton, PARAMETERS))
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_block_past_its_workers_memory_limit_is_named_with_the_cause(tmp_path: Path) -> None:
    """A worker that passes its memory limit is stopped by its nanny; each block it was running
    is one line that says so and names the fix. The blocks are large (about 19 M voxels, some
    700 MB at a task's peak) on workers allowed 600 MiB (an idle one holds about 270 MB)."""
    import dask
    from distributed import LocalCluster

    vectors, skeleton = tubes((64, 64, 32), 10, PARAMETERS.vector_scaling, seed=1)
    (tmp_path / "answers").mkdir()
    answers = answers_store(tmp_path / "answers", vectors, skeleton)  # repeated periodically over the larger volume
    shape, per_block = (768, 768, 64), (24, 100, 100)  # 2 blocks of 384 x 768 x 64
    memory = {"distributed.worker.memory.pause": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.target": False, "distributed.scheduler.allowed-failures": 0}
    with dask.config.set(memory):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               memory_limit="600MiB")
    try:
        with pytest.raises(BlockFailures) as caught:
            blockwise_labels(tmp_path, answers, shape, PARAMETERS, per_block, scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    failures = caught.value.failures
    assert failures
    for failure in failures:
        assert re.fullmatch(r"KilledWorker: its worker went past its memory limit and was stopped \(at \d+ MiB; 1 worker died running "
                            r"it\) — pass a smaller --block or give the workers more memory", failure.error), failure.error
        assert failure.name not in BlockStore(tmp_path / "work").done(failure.stage)  # type: ignore[arg-type]
        assert f"  {failure.line()}" in str(caught.value).splitlines()
    stage = failures[0].stage
    done, failed, remaining = caught.value.stats.stage_counts()[stage]
    assert failed == len(failures) and done + failed + remaining == caught.value.stats.totals[stage]
    assert (tmp_path / "work").is_dir() and not (tmp_path / "labels.zarr" / "zarr.json").exists()


def test_run_stats_count_each_stages_done_failed_and_remaining_blocks() -> None:
    stats = RunStats(blocks=30, workers=2, seconds={"infer": 2.0}, totals={"infer": 30, "label": 30, "assign": 30, "write": 12},
                     done={"infer": 5}, resumed={"infer": 1})
    stats.failures = [FailedBlock("infer", f"0.0.{i}", ((0, 8), (0, 9), (i, i + 1)), "ValueError: bad") for i in range(SHOWN_FAILURES + 4)]
    assert stats.stage_counts() == {"infer": (6, 24, 0), "label": (0, 0, 30), "assign": (0, 0, 30), "write": (0, 0, 12)}
    text = stats.failures_text("/w").splitlines()
    assert text[0] == "24 of 30 infer blocks failed; the finished blocks are kept in /w:"
    assert text[1] == "  infer block 0.0.0 (z 0:1, y 0:8, x 0:9): ValueError: bad"
    assert text[SHOWN_FAILURES + 1] == "  ... and 4 more failed blocks" and len(text) == SHOWN_FAILURES + 4
    assert text[-2] == "blocks done / failed / remaining: infer 6 / 24 / 0, label 0 / 0 / 30, assign 0 / 0 / 30, write 0 / 0 / 12"
    assert text[-1] == "fix the cause, then run the same command again with --resume: it redoes only the failed and unfinished blocks"
    assert stats.counts_line() in stats.lines(1000, None)  # the summary's line
