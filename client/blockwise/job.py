"""What a blockwise task is given: the job (by value or by path) and where its answers come from.

Both are frozen and picklable: the Dask layer sends them to every task. What cannot travel
(the block grid's tables, the work directory's store) is rebuilt once per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skoots_export.contract.wire import ModelParameters

from ..model_source import Tls
from ..normalize import Normalization
from ..stores import StoreUrl
from .blocks import BlockGrid
from .store import BlockStore
from .worker import cached


@dataclass(frozen=True)
class Source:
    """Where the answers come from: Triton URLs, or the repository's model in-process."""

    urls: tuple[str, ...]
    model: str
    repository: Path
    window: int = 4
    timeout: float = 120.0
    retries: int | None = None
    tls: Tls | None = None
    runtime: str = "auto"  # the in-process model's --runtime, --threads, --precision
    threads: int | None = None
    precision: str = "fp32"
    retry_for: float = 60.0


@dataclass(frozen=True)
class StoredAnswers:
    """Answers instead of a model: a Zarr group of stitched answers, ``vectors`` ``[3, X, Y, Z]``
    float16 and ``skeleton`` ``[X, Y, Z]`` uint8 (dilated), e.g. a perfect network's; answers
    smaller than the volume repeat periodically (tests, benchmarks)."""

    path: Path


@dataclass(frozen=True)
class Job:
    """Everything a task needs, by value or by path."""

    volume: Path | StoreUrl  # a StoreUrl: N5, precomputed, Zarr by URL (client/stores)
    channel: int | None
    axes: str | None  # --axes, read on the workers exactly as the client read it
    normalization: Normalization  # computed once by the client: every block maps intensities alike
    work: Path
    shape: tuple[int, int, int]
    per_block: tuple[int, int, int]
    reference_borders: bool
    parameters: ModelParameters
    source: Source | StoredAnswers
    batch_size: int
    threads: int
    label_halo: tuple[int, int, int]
    vector_halo: tuple[int, int, int]
    mask: Path | None = None  # --mask and --skip-below: crops not worth inferring stay background
    skip_below: float | None = None
    fill_missing: bool = False  # --fill-missing: the workers read missing chunks as zeros and count them
    roi: tuple[tuple[int, int], ...] | None = None  # --roi: the box of the file that is segmented (runtime X, Y, Z)

    @property
    def grid(self) -> BlockGrid:
        return cached(("grid", self.shape, self.parameters.crop, self.parameters.overlap, self.per_block, self.reference_borders),
                       lambda: BlockGrid(self.shape, self.parameters.crop, self.parameters.overlap, self.per_block, self.reference_borders))

    @property
    def store(self) -> BlockStore:
        return cached(("store", self.work), lambda: BlockStore(self.work))
