"""The work directory: what a resumed run takes from it, and what it refuses to trust."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from skoots_client.errors import OutputError, ServerUnavailableError
from skoots_client.in_memory import segment_volume
from skoots_client.model_source import EmbeddedModel
from skoots_client.specs import OutputSpec
from skoots_client.tiling import crop_grid
from skoots_client.volume_read import read_volume
from skoots_client.workdir import MANIFEST, WorkDir, fingerprint, parse_record


class FailsAfter:
    """The real embedded model; after ``limit`` batches it fails as an unreachable server would."""

    def __init__(self, inner: EmbeddedModel, limit: int | None = None) -> None:
        self.inner, self.limit, self.calls = inner, limit, 0
        self.name, self.concurrency = "embedded", 1

    def infer(self, batch, probability=False):
        if self.limit is not None and self.calls >= self.limit:
            raise ServerUnavailableError("the server went away")
        self.calls += 1
        return self.inner.infer(batch, probability)


@pytest.fixture(scope="module")
def model(e2e_repository: Path) -> EmbeddedModel:
    return EmbeddedModel(e2e_repository, "skoots")


@pytest.fixture(scope="module")
def volume_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("work") / "v.tif"
    tifffile.imwrite(path, np.random.default_rng(3).integers(0, 2**16, size=(20, 60, 52), dtype=np.uint16))
    return path


@pytest.fixture(scope="module")
def undisturbed(model: EmbeddedModel, volume_path: Path):
    return segment_volume(read_volume(volume_path), model.info.parameters, [model], batch_size=2, output=OutputSpec(save_intermediates=True))


def made_of(volume_path: Path, model: EmbeddedModel, **changes) -> dict:
    volume = read_volume(volume_path)
    return fingerprint(volume_path, volume.shape, volume.dtype, None, "skoots", model.info.parameters.replace(**changes),
                       reference_borders=False, probability=True)


def interrupted_run(work_path: Path, model: EmbeddedModel, volume_path: Path, batches: int) -> WorkDir:
    work = WorkDir(work_path, made_of(volume_path, model))
    with pytest.raises(ServerUnavailableError):
        segment_volume(read_volume(volume_path), model.info.parameters, [FailsAfter(model, batches)], batch_size=2,
                       output=OutputSpec(save_intermediates=True), work=work)
    work.close()
    return work


def resumed_run(work_path: Path, model: EmbeddedModel, volume_path: Path):
    counting = FailsAfter(model)
    work = WorkDir(work_path, made_of(volume_path, model))
    result = segment_volume(read_volume(volume_path), model.info.parameters, [counting], batch_size=2,
                            output=OutputSpec(save_intermediates=True), work=work)
    work.close()
    return result, counting.calls


def marked(work_path: Path) -> dict[int, int]:
    return dict(r for r in map(parse_record, (work_path / MANIFEST).read_bytes().splitlines()) if r)


def test_a_resumed_run_equals_an_undisturbed_one_and_infers_only_what_is_missing(model, volume_path, undisturbed, tmp_path) -> None:
    work_path = tmp_path / "o.tif.work"
    interrupted_run(work_path, model, volume_path, batches=7)
    done = marked(work_path)
    assert 0 < len(done) <= 14
    assert json.loads((work_path / "fingerprint.json").read_text())["input"]["shape"] == [60, 52, 20]

    result, calls = resumed_run(work_path, model, volume_path)

    assert result.resumed["infer"] == len(done)
    assert calls == -(-(undisturbed.crops - len(done)) // 2), "only the crops not marked are inferred"
    assert np.array_equal(result.labels, undisturbed.labels)
    for key in ("skeleton", "vectors", "probability"):
        assert np.array_equal(result.intermediates[key], undisturbed.intermediates[key]), key
    assert len(marked(work_path)) == undisturbed.crops


def test_torn_records_and_damaged_chunks_are_not_trusted(model, volume_path, undisturbed, tmp_path) -> None:
    work_path = tmp_path / "o.tif.work"
    interrupted_run(work_path, model, volume_path, batches=5)
    done = marked(work_path)
    grid = crop_grid((60, 52, 20), model.info.parameters.crop, model.info.parameters.overlap)
    not_done = [c.index for c in grid if c.index not in done]
    # A kill while appending: half a record. A kill while writing an unmarked crop: half a chunk.
    with open(work_path / MANIFEST, "ab") as f:
        f.write(f"{not_done[0]} 1234abcd 5".encode())
    chunk = work_path / "vectors" / f"c.{not_done[1]}.0.0.0.0"
    chunk.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(40))
    # Beyond what a kill can do (disk corruption): a marked crop's chunk overwritten.
    victim = sorted(done)[1]
    (work_path / "skeleton" / f"c.{victim}.0.0.0").write_bytes(os.urandom(64))

    result, calls = resumed_run(work_path, model, volume_path)

    assert result.resumed["infer"] == len(done) - 1, "the damaged crop is inferred again"
    assert np.array_equal(result.labels, undisturbed.labels)
    assert (work_path / MANIFEST).read_bytes().endswith(b"\n"), "the torn record was cut off before appending"
    assert set(marked(work_path)) == {c.index for c in grid}


def test_an_interrupted_run_in_the_middle_of_creation_leaves_nothing_that_is_trusted(model, volume_path, tmp_path) -> None:
    stale = tmp_path / ".o.tif.work.partial-x1y2"
    stale.mkdir()
    (stale / "fingerprint.json").write_text("{")
    work = WorkDir(tmp_path / "o.tif.work", made_of(volume_path, model))
    list(work.restore(crop_grid((60, 52, 20), (24, 24, 8), (4, 4, 2))))
    work.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif.work"], "the half-made one from a killed run is gone"


@pytest.mark.parametrize(
    "prepare,changes,match",
    [
        ("other-run", {"crop": (16, 16, 8)}, r"work directory \S+ was made for another run \(differs in: model\); remove it to start afresh, or pass another --work-dir"),
        ("no-fingerprint", {}, r"\S+ is not a segment work directory \(no readable fingerprint\.json\); remove it or pass another --work-dir"),
        ("a-file", {}, r"work directory \S+ is a file; remove it or pass another --work-dir"),
        ("missing-parent", {}, r"work directory \S+: folder \S+ does not exist; create it first"),
    ],
)
def test_a_work_directory_that_is_not_this_runs_is_refused(prepare, changes, match, model, volume_path, tmp_path) -> None:
    path = tmp_path / "o.tif.work"
    if prepare == "other-run":
        work = WorkDir(path, made_of(volume_path, model))
        list(work.restore(crop_grid((60, 52, 20), (24, 24, 8), (4, 4, 2))))
        work.close()
    elif prepare == "no-fingerprint":
        path.mkdir()
        (path / "mine.txt").write_text("someone's data")
    elif prepare == "a-file":
        path.write_text("someone's data")
    else:
        path = tmp_path / "nowhere" / "o.tif.work"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError, match=match):
        WorkDir(path, made_of(volume_path, model, **changes))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_work_directory_in_use_is_refused(model, volume_path, tmp_path) -> None:
    grid = crop_grid((60, 52, 20), (24, 24, 8), (4, 4, 2))
    first = WorkDir(tmp_path / "w", made_of(volume_path, model))
    list(first.restore(grid))
    second = WorkDir(tmp_path / "w", made_of(volume_path, model))
    with pytest.raises(OutputError, match=r"work directory \S+ is in use by another segment run"):
        list(second.restore(grid))
    first.close()
    list(second.restore(grid))
    second.close()


def test_a_run_under_another_normalisation_is_not_resumed(model, volume_path, tmp_path) -> None:
    """--normalize is part of the fingerprint: crops made from other input values never mix."""
    from skoots_client.normalize import Normalization

    volume = read_volume(volume_path)

    def made(rule: Normalization) -> dict:
        return fingerprint(volume_path, volume.shape, volume.dtype, None, "skoots", model.info.parameters,
                           reference_borders=False, probability=True, axes=volume.axes, normalization=rule.to_dict())

    work = WorkDir(tmp_path / "w", made(Normalization("dtype")))
    list(work.restore(crop_grid((60, 52, 20), (24, 24, 8), (4, 4, 2))))
    work.close()
    with pytest.raises(OutputError, match=r"was made for another run \(differs in: normalization\)"):
        WorkDir(tmp_path / "w", made(Normalization("percentile", 10.0, 200.0, " 1-99.8")))
