"""What a run did, in memory or blockwise: one record both engines fill and one summary reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .volume import describe_shape

__all__ = ["RunStats", "FailedBlock", "SHOWN_FAILURES"]

SHOWN_FAILURES = 20  # failed blocks named one per line; beyond, a count (a run of 10^5 blocks could fail them all)


@dataclass(frozen=True)
class FailedBlock:
    """A block whose task failed after its retries: its ``stage``, ``name``, ``region``
    (``[X, Y, Z]`` voxels; None where the name is the region, a pyramid level's) and ``error``,
    the exception's type and first line (or why its worker died)."""

    stage: str
    name: str
    region: tuple[tuple[int, int], ...] | None
    error: str

    def line(self) -> str:
        """``infer block 0.1.0 (z 0:20, y 36:72, x 0:36): InputError: ...``"""
        from .roi import describe_box

        where = f" ({describe_box(self.region)})" if self.region is not None else ""  # type: ignore[arg-type]
        return f"{self.stage} block {self.name}{where}: {self.error}"


@dataclass
class RunStats:
    """Counts and times of one run.

    Both engines fill ``instances``, ``crops``, ``seconds`` (per stage), ``skipped`` (crops
    ``--mask`` / ``--skip-below`` kept from being inferred) and ``resumed`` (per stage, what was
    taken from the work directory: crops in memory, blocks blockwise). The in-memory engine adds
    the ``labels`` ``[X, Y, Z]``, the ``intermediates`` and the crops ``inferred`` in this run; the
    blockwise engine its ``blocks``, ``workers``, blocks ``done`` per stage, the workers' RSS
    ``peaks``, the voxels ``labelled``, the measured ``table``, ``labels_at`` (where the
    written labels are kept until they are published) and its largest ``block``.
    """

    instances: int = 0
    crops: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    filled: int = 0  # --fill-missing: missing input chunks read as zeros
    resumed: dict[str, int] = field(default_factory=dict)
    labels: Any = None
    intermediates: dict[str, Any] = field(default_factory=dict)
    inferred: int = 0
    blocks: int = 0
    workers: int = 0
    done: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    table: Any = None
    labels_at: str | None = None  # where finished labels are kept when publishing them failed (output.kept)
    block: tuple[int, int, int] | None = None  # blockwise: the largest block, voxels [X, Y, Z]
    tile: tuple[int, ...] | None = None  # what the network saw of each crop [X, Y, Z] (clipped to the volume, padded to its minimum)
    workers_lost: int = 0  # blockwise: workers that died during the run
    rerun: int = 0  # blockwise: tasks the scheduler ran again because their worker died
    notes: list[str] = field(default_factory=list)  # the engine's own summary lines (runtime, resent requests, preview)
    totals: dict[str, int] = field(default_factory=dict)  # blockwise: the blocks of each stage, in the order the stages run
    failures: list[FailedBlock] = field(default_factory=list)  # blockwise: blocks whose tasks failed after their retries
    skeleton_voxels: tuple[Any, Any] | None = None  # --skeletons in memory: the predicted skeleton's flat indices and final ids
    skeletons: dict[int, Any] | None = None  # --skeletons: the written graphs by id (in memory)
    skeleton_bytes: int = 0  # --skeletons blockwise: the skeleton objects written

    @property
    def blockwise(self) -> bool:
        return self.blocks > 0

    @property
    def seconds_saved(self) -> float:
        """Estimated inference time the skipped crops would have cost: skipped crops times the
        mean time per crop inferred in this run (0 when none was)."""
        return self.skipped * self.seconds.get("infer+stitch", 0.0) / self.inferred if self.inferred else 0.0

    @property
    def peak_rss(self) -> int:
        """The largest worker process's peak RSS."""
        return max(self.peaks.values(), default=0)

    def stage_counts(self) -> dict[str, tuple[int, int, int]]:
        """Each blockwise stage's blocks ``(done, failed, remaining)``: done in this run or taken
        from the work directory, failed after their retries, and neither (a stage the run did
        not reach has them all remaining)."""
        counts = {}
        for stage, total in self.totals.items():
            done = self.done.get(stage, 0) + self.resumed.get(stage, 0)
            failed = sum(f.stage == stage for f in self.failures)
            counts[stage] = (done, failed, max(0, total - done - failed))
        return counts

    def counts_line(self) -> str:
        """``blocks done / failed / remaining: infer 3 / 1 / 0, label 0 / 0 / 4, ...``"""
        return "blocks done / failed / remaining: " + ", ".join(
            f"{stage} {done} / {failed} / {remaining}" for stage, (done, failed, remaining) in self.stage_counts().items())

    def failures_text(self, work: object) -> str:
        """What a run whose blocks failed says: how many failed, one line per failed block (at
        most `SHOWN_FAILURES`), each stage's counts, and how to finish the run."""
        stages = list(dict.fromkeys(f.stage for f in self.failures))
        heads = [f"{sum(f.stage == s for f in self.failures)} of {self.totals.get(s, '?')} {s} blocks" for s in stages]
        lines = [f"{', '.join(heads)} failed; the finished blocks are kept in {work}:"]
        lines += [f"  {f.line()}" for f in self.failures[:SHOWN_FAILURES]]
        if len(self.failures) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(self.failures) - SHOWN_FAILURES} more failed blocks")
        lines.append(self.counts_line())
        lines.append("fix the cause, then run the same command again with --resume: it redoes only the failed and unfinished blocks")
        return "\n".join(lines)

    def tile_line(self, voxels: int) -> str | None:
        """The summary's line on the tile: its size and the network input voxels per output
        voxel (the tiles of every crop not skipped, over the volume's voxels)."""
        if self.tile is None:
            return None
        sent = (self.crops - self.skipped) * math.prod(self.tile)
        return f"tile {describe_shape(self.tile)}, {sent / max(voxels, 1):.2f} network input voxels per output voxel"

    def timing(self, post_processing_on: str) -> str:
        """The stages' times, for the summary's ``time`` line (in memory; blockwise: see ``lines``)."""
        if self.blockwise:
            return ""
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        return f" ({stages}; post-processing on {post_processing_on})"

    def lines(self, voxels: int, work: Path | None) -> list[str]:
        """The summary's lines about blocks, skipped and resumed work. A blockwise stage taken
        whole from the work directory says so instead of a time; a rate counts only the share of
        the volume done in this run, and the worker peak only tasks that ran."""
        lines = []
        if self.blockwise:
            stages_text = ", ".join(self._stage(k, v, voxels) for k, v in self.seconds.items())
            peak = f", largest worker peak {self.peak_rss / 2**20:.0f} MiB" if self.peaks else ""
            size = f" of at most {describe_shape(self.block)} voxels" if self.block else ""
            lines.append(f"blockwise: {_blocks(self.blocks)}{size} on {self.workers} workers{peak}; {stages_text}")
            if self.workers_lost or self.rerun:
                lines.append(f"lost {self.workers_lost} worker{'' if self.workers_lost == 1 else 's'}; "
                             f"{self.rerun} task{'' if self.rerun == 1 else 's'} ran again on the others")
            if self.totals:
                lines.append(self.counts_line())
        if self.skipped:
            line = f"skipped {self.skipped} of {self.crops} crops (empty by --mask / --skip-below)"
            if not self.blockwise:
                line += (f", saving about {self.seconds_saved:.1f}s ({self.skipped} x the mean time of an inferred crop)")
            lines.append(line)
        resumed = {k: v for k, v in self.resumed.items() if v}
        if resumed and self.blockwise:
            lines.append("resumed " + ", ".join(f"{v} {k}" for k, v in resumed.items()) + " blocks from the work directory")
        elif resumed and work is not None:
            lines.append(f"resumed {resumed.get('infer', 0)} of {self.crops} crops from {work}")
        return lines

    def _stage(self, name: str, seconds: float, voxels: int) -> str:
        done, resumed = self.done.get(name), self.resumed.get(name, 0)
        if done == 0 and resumed:
            return f"{name} resumed ({_blocks(resumed)})"
        share = voxels * done / (done + resumed) if done else voxels
        return f"{name} {seconds:.2f}s ({share / max(seconds, 1e-9) / 1e6:.3g} Mvoxels/s)"


def _blocks(n: int) -> str:
    return f"{n} block{'' if n == 1 else 's'}"
