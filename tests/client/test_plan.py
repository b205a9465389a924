"""One plan, two engines: the specs are frozen and checked once; the plan picks the engine; both
engines take the same plan and return the same record; the closed choices are enums."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_api import blobs

import skoots_client as skoots
from skoots_client.choices import Device, NgffVersion, Precision, Runtime, choice
from skoots_client.engines import BlockwiseEngine, InMemoryEngine, engine_for
from skoots_client.errors import InputError
from skoots_client.plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, Plan, ResumeSpec, check_options, prepare
from skoots_client.progress import Watch
from skoots_client.run_stats import RunStats
from skoots_client.volume_read import read_labels


@pytest.fixture(scope="module")
def volume_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "blobs.tif"
    tifffile.imwrite(path, blobs((12, 40, 36)))
    return path


def specs(volume: Path, repository: Path, out: Path | None = None, **cluster: object) -> tuple:
    # the model's crop, whatever --tile's default: --tile auto sizes tiles to each engine's memory budget
    return (InputSpec(volume), OutputSpec(out=out), ModelSpec(repository=repository, device=Device.CPU, tile="crop"), ResumeSpec(),
            ClusterSpec(**cluster))  # type: ignore[arg-type]


def test_specs_and_plans_are_frozen(volume_tif: Path, e2e_repository: Path) -> None:
    spec = ModelSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.window = 8  # type: ignore[misc]
    plan = prepare(*specs(volume_tif, e2e_repository), Watch(warn=print))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.blockwise = True  # type: ignore[misc]


@pytest.mark.parametrize("change, match", [
    ({"model": ModelSpec(window=0)}, r"--window and --batch must be at least 1"),
    ({"model": ModelSpec(urls=("127.0.0.1:1",), runtime=Runtime.OPENVINO)}, r"drop them with --url"),
    ({"output": OutputSpec(min_size=-1)}, r"--min-size -1: give a voxel count of at least 0"),
    ({"cluster": ClusterSpec(blockwise=True)}, r"blockwise writes the labels block by block and never holds them"),
    ({"cluster": ClusterSpec(blockwise=True), "output": OutputSpec(out=Path("l.zarr"), preview=Path("p.png"))},
     r"--preview needs the labels in memory, which --blockwise never holds"),
    ({"cluster": ClusterSpec(scheduler="tcp://127.0.0.1:9"), "output": OutputSpec(out=Path("l.zarr")), "model": ModelSpec(device=Device.GPU)},
     r"--blockwise post-processes on the workers' CPUs; drop --device gpu"),
    ({"cluster": ClusterSpec(block=(0, 8, 8))}, r"block z 8, y 0, x 8: block sizes must be positive"),
])
def test_options_are_checked_once_before_anything_is_read(change: dict, match: str) -> None:
    """The volume does not even exist: every refusal comes before it is opened."""
    given = {"input": InputSpec(Path("/nonexistent/v.tif")), "output": OutputSpec(), "model": ModelSpec(),
             "resume": ResumeSpec(), "cluster": ClusterSpec(), **change}
    with pytest.raises(InputError, match=match):
        check_options(**given)


def test_the_plan_picks_the_engine_and_both_engines_return_the_same_record(volume_tif: Path, e2e_repository: Path,
                                                                            tmp_path: Path) -> None:
    memory_plan = prepare(*specs(volume_tif, e2e_repository, tmp_path / "m.tif"), Watch(warn=print))
    assert isinstance(memory_plan, Plan) and not memory_plan.blockwise and memory_plan.work_path is None
    assert isinstance(engine_for(memory_plan), InMemoryEngine)
    in_memory = engine_for(memory_plan).run(memory_plan, Watch(quiet=True, warn=print))

    # Too big for the memory it is told of: the same specs go blockwise by themselves, and the
    # in-process model is left for the workers to load; the plan names the work directory once.
    block_plan = prepare(*specs(volume_tif, e2e_repository, tmp_path / "b.zarr", memory_available=1000,
                                block=(16, 16, 4), workers=2), Watch(quiet=True, warn=print))
    assert block_plan.blockwise and block_plan.work_path == tmp_path / "b.zarr.work"
    assert isinstance(engine_for(block_plan), BlockwiseEngine)
    blockwise = engine_for(block_plan).run(block_plan, Watch(quiet=True, warn=print))

    assert type(in_memory) is type(blockwise) is RunStats
    assert in_memory.instances == blockwise.instances > 0 and in_memory.crops == blockwise.crops
    assert not in_memory.blockwise and blockwise.blockwise and blockwise.blocks > 1
    assert memory_plan.fingerprint() == block_plan.fingerprint(), "a work directory records the same run alike"
    assert np.array_equal(read_labels(tmp_path / "m.tif"), read_labels(tmp_path / "b.zarr"))


def test_a_plan_is_data_and_holds_nothing_open(volume_tif: Path, e2e_repository: Path, tmp_path: Path) -> None:
    """The plan pickles (nothing open, no loaded model in it); its model info is the repository's."""
    import pickle

    plan = prepare(*specs(volume_tif, e2e_repository, tmp_path / "m.tif"), Watch(warn=print))
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan) if f.name not in ("xp", "volume")}
    assert pickle.loads(pickle.dumps(fields))["info"] == plan.info
    assert not any(hasattr(value, "close") for value in fields.values())


def test_the_switch_to_blockwise_is_a_note_through_the_watch(volume_tif: Path, e2e_repository: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Quiet silences it; a note callback gets it (napari shows it); warnings stay apart."""
    given = specs(volume_tif, e2e_repository, tmp_path / "b.zarr", memory_available=1000)
    warnings: list[str] = []
    assert prepare(*given, Watch(quiet=True, warn=warnings.append)).blockwise
    assert capsys.readouterr().err == ""
    notes: list[str] = []
    prepare(*given, Watch(quiet=True, warn=warnings.append, note=notes.append))
    assert len(notes) == 1 and notes[0].endswith("GiB are available: segmenting blockwise (--blockwise)")
    assert not any("blockwise" in w for w in warnings) and capsys.readouterr().err == ""
    prepare(*given, Watch(warn=warnings.append))
    assert capsys.readouterr().err == notes[0] + "\n"


def test_choices_are_enums_that_read_and_print_as_their_text() -> None:
    assert Device("gpu") is Device.GPU and Device.GPU == "gpu" and f"{Device.GPU}" == "gpu" and str(Runtime.CUDA) == "cuda"
    assert NgffVersion.texts() == ("0.4", "0.5") and Precision.texts() == ("fp32", "bf16")
    assert choice(Runtime, Runtime.OPENVINO, "--runtime") is Runtime.OPENVINO
    with pytest.raises(InputError, match=r"^--precision 'fp8': choose fp32, bf16$"):
        choice(Precision, "fp8", "--precision")
    assert {"Device", "Runtime", "Precision", "NgffVersion"} <= set(skoots.__all__)


def test_the_api_takes_a_member_or_its_text_alike(volume_tif: Path, e2e_repository: Path) -> None:
    volume = tifffile.imread(volume_tif)
    by_text = skoots.segment(volume, model=e2e_repository, device="cpu", runtime="torchscript", quiet=True)
    by_member = skoots.segment(volume, model=e2e_repository, device=skoots.Device.CPU, runtime=skoots.Runtime.TORCHSCRIPT,
                               quiet=True)
    assert np.array_equal(by_text.labels, by_member.labels)
    with pytest.raises(InputError, match=r"^device='tpu': choose auto, cpu or gpu$"):
        skoots.segment(volume, model=e2e_repository, device="tpu")
    with pytest.raises(InputError, match=r"^ngff_version='0.6': use 0.4 \(Zarr v2\) or 0.5 \(Zarr v3\)$"):
        skoots.segment(volume, model=e2e_repository, ngff_version="0.6")

