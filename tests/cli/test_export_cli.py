"""``skoots export`` as a user runs it: the real console script in a subprocess, real files."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoints import TINY, random_state_dict, skoots_cfg, write_checkpoint

SKOOTS = Path(sys.executable).parent / "skoots"
FAST = ["--device", "cpu", "--crop", "24,24,8", "--overlap", "4,4,2"]
EVERY_VARIANT = ["skoots", "skoots_openvino", "skoots_python"]  # what the default export writes
# Each successful export is a torch.export capture and an OpenVINO conversion (~15 s in a fresh
# process): the quick run keeps three, the rest of the success and re-export cases run with -m slow.
SLOW = pytest.mark.slow
EXPORT_OPTIONS = ["--repository", "--name", "--backend", "--device", "--max-batch", "--max-tile-voxels", "--instances", "--version",
                  "--crop", "--overlap", "--vector-scaling", "--anisotropy", "--prob-threshold",
                  "--skeleton-threshold", "--dilations-3d", "--dilations-2d", "--embedding-iterations",
                  "--dataset-mean", "--dataset-std", "--training-voxel-size", "--voxel-unit", "--bioimageio", "--trust-checkpoint"]


def skoots(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SKOOTS), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


class Touch:
    """Unpickling this runs code: it creates a marker file (in a test's own folder)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module", autouse=True)
def _console_script() -> None:
    if not SKOOTS.is_file():
        pytest.skip(f"no console script at {SKOOTS}: install the project (pip install -e .)")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.trch", skoots_cfg(**TINY))


# --- success ---------------------------------------------------------------------------------


def test_export_writes_both_variants_and_summarises(checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # In process (the console script's main): the session's one capture of this network is reused.
    result = in_process(capfd, monkeypatch, "export", checkpoint, "-r", tmp_path / "repo", "--backend", "both", *FAST, cwd=tmp_path)
    repository = tmp_path / "repo"
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "Traceback" not in result.stdout
    for path in ("skoots/config.pbtxt", "skoots/1/model.pt", "skoots_python/config.pbtxt",
                 "skoots_python/1/model.py", "skoots_python/1/model.pt"):
        assert (repository / path).is_file(), path
    assert sorted(p.name for p in repository.iterdir()) == ["skoots", "skoots_python"], "no staging left behind"
    assert not (tmp_path / "model_repository").exists()

    out = result.stdout
    assert f"wrote {repository / 'skoots'}/config.pbtxt and {repository / 'skoots'}/1/model.pt (libtorch backend, cpu, max_batch_size 8)" in out
    assert f"wrote {repository / 'skoots_python'}/config.pbtxt and {repository / 'skoots_python'}/1/model.pt (python backend, cpu" in out
    assert "input   input__0 TYPE_FP16 [B, 1, -1, -1, -1]" in out
    for line in ("output  vectors__0 TYPE_FP16 [B, 3, -1, -1, -1]", "output  skeleton__1 TYPE_UINT8 [B, 1, -1, -1, -1]",
                 "output  probability__2 TYPE_FP16 [B, 1, -1, -1, -1]"):
        assert line in out, line
    for param in ("crop = 24,24,8", "overlap = 4,4,2", "vector_scaling = 60.0,60.0,12.0", "anisotropy = 1.0,1.0,3.0",
                  "normalization = dtype_range", "contract_version = 1", "minimum_size = 8"):
        assert re.search(rf"^param +{re.escape(param)}(  \(.+\))?$", out, re.MULTILINE), param
    for param, source in (("crop", "option"), ("vector_scaling", "cfg.SKOOTS"), ("dilations_3d", "seed default"),
                          ("normalization", "seed default"), ("minimum_size", "network")):
        assert re.search(rf"^param +{param} = .*  \({re.escape(source)}\)$", out, re.MULTILINE), (param, source)
    assert re.search(rf"^param +torch_version = {re.escape(torch.__version__)}  ", out, re.MULTILINE)

    libtorch = (repository / "skoots" / "config.pbtxt").read_text()
    python = (repository / "skoots_python" / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in libtorch and "KIND_CPU" in libtorch
    assert 'backend: "python"' in python and 'name: "skoots_python"' in python
    assert (repository / "skoots" / "1" / "model.pt").read_bytes() == (repository / "skoots_python" / "1" / "model.pt").read_bytes()


def test_default_export_writes_every_variant_and_says_so(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    result = skoots("export", checkpoint, "-r", repository, *FAST)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in repository.iterdir()) == EVERY_VARIANT
    out = result.stdout
    assert f"{repository / 'skoots'}/1/model.pt (libtorch backend, cpu, max_batch_size 8)" in out
    assert f"{repository / 'skoots_python'}/1/model.pt (python backend, cpu, max_batch_size 8)" in out
    assert f"{repository / 'skoots_openvino'}/1/model.xml (openvino backend, cpu, max_batch_size 1)" in out
    assert 'backend: "openvino"' in (repository / "skoots_openvino" / "config.pbtxt").read_text()


@SLOW
def test_python_backend_alone_takes_the_plain_name(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    result = skoots("export", checkpoint, "-r", repository, "--backend", "python", "--name", "mito.v2",
                    "--max-batch", "2", "--dataset-mean", "100", "--dataset-std", "25", *FAST)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in repository.iterdir()) == ["mito.v2"]
    assert (repository / "mito.v2" / "1" / "model.py").is_file()
    assert "python backend, cpu, max_batch_size 2" in result.stdout
    assert "normalization = mean_std" in result.stdout and "dataset_std = 25.0" in result.stdout


# --- user errors: one line, exit 2, nothing written ------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    torch.save(random_state_dict(skoots_cfg(**TINY)), folder / "legacy.trch")
    data = torch.load(checkpoint, weights_only=False)
    torch.save({**data, "hook": Touch(folder / "MARKER")}, folder / "unsafe.trch")
    torch.save({**data, "cfg": skoots_cfg(**{**TINY, "ARCHITECTURE": "bism_foo"})}, folder / "foo.trch")
    torch.save({**data, "cfg": skoots_cfg(**{**TINY, "ARCHITECTURE": "bism_unet"})}, folder / "unet.trch")
    torch.save({**data, "cfg": skoots_cfg(**{**TINY, "DIMS": [4, 8, 12, 8, 4]})}, folder / "mismatch.trch")
    torch.save({**data, "dataset_mean": torch.zeros(2, 2), "dataset_std": 1.0}, folder / "mean-matrix.trch")
    (folder / "notes.trch").write_text("not a checkpoint\n")
    torch.save({**data, "model_card": {"crop": [24, 24, 8], "dilation": 0}}, folder / "card-key.trch")
    torch.save({**data, "model_card": {"crop": "24,24,8"}}, folder / "card-type.trch")
    torch.save({**data, "model_card": [24, 24, 8]}, folder / "card-list.trch")
    torch.save({**data, "model_card": {"dataset_mean": 3.0}}, folder / "card-mean.trch")
    torch.save({**data, "model_card": {"training_voxel_size": [1, 1, 3], "voxel_unit": "parsec"}}, folder / "card-unit.trch")
    for name, text in (("sidecar", "crop: [24, 24, 8]\ndilations: 0\n"), ("folder", "crop: [24, 24\n")):
        (folder / name).mkdir()
        torch.save(data, folder / name / "tiny.trch")
        (folder / name / ("tiny.yaml" if name == "sidecar" else "MODEL.yaml")).write_text(text)
    return folder


OK = "{ok}"  # the good checkpoint
ERRORS: list = [
    ("missing", ["{bad}/nope.trch"], r"checkpoint not found: \S*nope\.trch — give the path of a \.trch file"),
    ("not-torch", ["{bad}/notes.trch"], r"notes\.trch is not a readable PyTorch checkpoint \(.+\)"),
    ("legacy", ["{bad}/legacy.trch"], r"legacy\.trch has no 'cfg': a legacy or non-SKOOTS file"),
    ("untrusted-pickle", ["{bad}/unsafe.trch"], r"unsafe\.trch needs \S+ to load, which can run arbitrary code; pass --trust-checkpoint only if"),
    ("architecture", ["{bad}/foo.trch"], r"cfg\.MODEL\.ARCHITECTURE = 'bism_foo' is not supported; expected one of: bism_unext"),
    ("unet", ["{bad}/unet.trch"], r"'bism_unet' is not supported: .*bism's UNet"),
    ("state-dict", ["{bad}/mismatch.trch"], r"model_state_dict does not match cfg\.MODEL: shape mismatch \d+: .* \(\+\d+ more\) — export the checkpoint with the cfg it was trained with"),
    ("crop-two-values", [OK, "--crop", "3,4"], r"--crop '3,4' needs three integers X,Y,Z, e\.g\. --crop 300,300,20"),
    ("crop-not-numbers", [OK, "--crop", "a,b,c"], r"--crop 'a,b,c' needs three integers"),
    ("crop-zero", [OK, "--crop", "0,24,8"], r"crop \(0, 24, 8\) must be positive on every axis"),
    ("overlap-too-big", [OK, "--crop", "8,8,8", "--overlap", "4,4,4"], r"crop \(8, 8, 8\) with overlap \(4, 4, 4\) keeps nothing of a crop"),
    ("vector-scaling", [OK, "--vector-scaling", "60,60"], r"--vector-scaling '60,60' needs three numbers X,Y,Z, e\.g\. --vector-scaling 60,60,12"),
    ("backend", [OK, "--backend", "tensorflow"], r"--backend 'tensorflow': choose libtorch, python, openvino, both, all"),
    ("name-slash", [OK, "--name", "bad/name"], r"model name 'bad/name' may hold only letters, digits, '_', '\.', '-'"),
    ("max-batch", [OK, "--max-batch", "0"], r"--max-batch, --version and --instances must be at least 1"),
    ("prob-threshold", [OK, "--prob-threshold", "1.5"], r"prob_threshold = 1\.5 must lie in \[0, 1\)"),
    ("mean-without-std", [OK, "--dataset-mean", "3"], r"dataset_mean and dataset_std come together"),
    ("repository-under-a-file", [OK, "-r", "{bad}/notes.trch/repo"], r"cannot write the model repository \S+: Not a directory — choose a writable --repository"),
    ("repository-is-a-file", [OK, "-r", "{bad}/notes.trch"], r"cannot write the model repository \S+: File exists — choose a writable --repository"),
    ("crop-below-network-minimum", [OK, "--crop", "4,4,4", "--overlap", "0,0,0"],
     r"crop \(4, 4, 4\) is below the network's minimum of 8 voxels per axis .* choose a crop of at least 8"),
    ("dataset-mean-nan", [OK, "--dataset-mean", "nan", "--dataset-std", "1"], r"dataset_mean = nan must be finite"),
    ("dataset-std-inf", [OK, "--dataset-mean", "0", "--dataset-std", "inf"], r"dataset_std = inf must be finite"),
    ("vector-scaling-nan", [OK, "--vector-scaling", "60,nan,12"], r"vector_scaling = \(60\.0, nan, 12\.0\) must be finite"),
    ("mean-matrix", ["{bad}/mean-matrix.trch"], r"dataset_mean = tensor of shape \[2, 2\] must be one finite number"),
    ("card-unknown-key", ["{bad}/card-key.trch"],
     r"model_card in card-key\.trch: unknown key 'dilation'; allowed keys: crop, overlap, .*, dilations_3d, dilations_2d, .*, voxel_unit, normalization$"),
    ("card-wrong-type", ["{bad}/card-type.trch"], r"model_card in card-type\.trch: crop = '24,24,8' must be three integers \[X, Y, Z\]"),
    ("card-not-a-mapping", ["{bad}/card-list.trch"], r"model_card in card-list\.trch must be a mapping of key: value, not list; allowed keys: crop"),
    ("card-mean-alone", ["{bad}/card-mean.trch"], r"model_card in card-mean\.trch: dataset_mean and dataset_std come together"),
    ("card-unit", ["{bad}/card-unit.trch"], r"voxel_unit = 'parsec' must be one of angstrom, centimeter, meter, micrometer, millimeter, nanometer"),
    ("sidecar-unknown-key", ["{bad}/sidecar/tiny.trch"], r"model card \S+sidecar/tiny\.yaml: unknown key 'dilations'; allowed keys: crop"),
    ("folder-card-not-yaml", ["{bad}/folder/tiny.trch"], r"model card \S+folder/MODEL\.yaml is not valid YAML \(.+\)"),
    ("voxel-unit-alone", [OK, "--voxel-unit", "nm"], r"--voxel-unit needs --training-voxel-size"),
    ("voxel-unit-unknown", [OK, "--training-voxel-size", "1,1,3", "--voxel-unit", "parsec"],
     r"--voxel-unit 'parsec' is not a length unit; use one of um, nm, mm, cm, m, angstrom"),
    ("voxel-size-negative", [OK, "--training-voxel-size", "1,-1,3"], r"training_voxel_size = \(1\.0, -1\.0, 3\.0\) must be positive on every axis"),
]


def in_process(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """``skoots ARGS`` through the console script's own ``main``, in this process: a fresh process
    spends ~3 s importing before it can refuse, which times the table below was most of this
    file's time. `test_the_console_script_refuses_alike` keeps the real process for a few rows."""
    from skoots_export.cli import main

    monkeypatch.setattr(sys, "argv", ["skoots", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(cwd)
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code or 0, out, err)


def refuse(run, case: str, args: list[str], pattern: str, checkpoint: Path, bad_files: Path, tmp_path: Path) -> None:
    """``run`` (a subprocess or `in_process`) refuses the row in one line, exit 2, writing nothing."""
    args = [a.format(ok=checkpoint, bad=bad_files) for a in args]
    repository = tmp_path / "repo"
    extra = [] if "-r" in args else ["-r", str(repository)]
    crop = [] if any(a.startswith(("--crop", "--overlap")) for a in args) else ["--crop", "24,24,8", "--overlap", "4,4,2"]
    work = tmp_path / "cwd"
    work.mkdir()

    result = run("export", *args, *extra, "--device", "cpu", *crop, cwd=work)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip() and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert not repository.exists() or list(repository.iterdir()) == [], list(repository.iterdir())
    assert list(work.iterdir()) == [], "wrote into the working directory"
    assert (bad_files / "notes.trch").read_text() == "not a checkpoint\n"
    assert not (bad_files / "MARKER").exists(), "an untrusted checkpoint ran code"


@pytest.mark.parametrize("case,args,pattern", [pytest.param(*c, id=c[0]) for c in ERRORS])
def test_user_errors_are_one_line_and_write_nothing(
    case: str, args: list[str], pattern: str, checkpoint: Path, bad_files: Path, tmp_path: Path,
    capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = functools.partial(in_process, capfd, monkeypatch)
    refuse(run, case, args, pattern, checkpoint, bad_files, tmp_path)


THROUGH_THE_SCRIPT = ("missing", "untrusted-pickle", "state-dict", "crop-two-values", "repository-under-a-file", "card-unit")


@pytest.mark.parametrize("case,args,pattern", [pytest.param(*c, id=c[0]) for c in ERRORS if c[0] in THROUGH_THE_SCRIPT])
def test_the_console_script_refuses_alike(case: str, args: list[str], pattern: str, checkpoint: Path, bad_files: Path, tmp_path: Path) -> None:
    refuse(skoots, case, args, pattern, checkpoint, bad_files, tmp_path)


def test_an_existing_empty_repository_stays_empty_on_error(checkpoint: Path, bad_files: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    result = skoots("export", bad_files / "mismatch.trch", "-r", repository, *FAST)
    assert result.returncode == 2 and result.stderr.startswith("error: model_state_dict does not match")
    assert list(repository.iterdir()) == []


def test_trust_checkpoint_is_the_only_way_to_run_pickled_code(checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    marker, unsafe = tmp_path / "MARKER", tmp_path / "unsafe.trch"
    torch.save({**torch.load(checkpoint, weights_only=False), "hook": Touch(marker)}, unsafe)
    refused = skoots("export", unsafe, "-r", tmp_path / "repo", *FAST)
    assert refused.returncode == 2 and "--trust-checkpoint" in refused.stderr
    assert not marker.exists() and not (tmp_path / "repo").exists()
    trusted = in_process(capfd, monkeypatch, "export", unsafe, "-r", tmp_path / "repo", "--trust-checkpoint", *FAST, cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()
    assert (tmp_path / "repo" / "skoots" / "1" / "model.pt").is_file()


# --- re-export -------------------------------------------------------------------------------


@SLOW
def test_reexport_replaces_atomically_and_keeps_other_versions(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    first = skoots("export", checkpoint, "-r", repository, "--version", "1", *FAST)
    assert first.returncode == 0, first.stderr
    config = repository / "skoots" / "config.pbtxt"
    assert 'string_value: "24,24,8"' in config.read_text()
    (repository / "skoots" / "7").mkdir()
    (repository / "skoots" / "7" / "model.pt").write_bytes(b"older version")

    again = skoots("export", checkpoint, "-r", repository, "--version", "1", "--device", "cpu",
                   "--crop", "16,16,8", "--overlap", "2,2,1")
    assert again.returncode == 0, again.stderr
    text = config.read_text()
    assert 'string_value: "16,16,8"' in text and 'string_value: "24,24,8"' not in text
    assert 'string_value: "2,2,1"' in text
    assert (repository / "skoots" / "7" / "model.pt").read_bytes() == b"older version"
    assert sorted(p.name for p in (repository / "skoots").iterdir()) == ["1", "7", "config.pbtxt"]
    assert list(repository.glob(".skoots-export-*")) == [] and list(repository.rglob("*.replaced")) == []
    assert sorted(p.name for p in repository.iterdir()) == EVERY_VARIANT

    third = skoots("export", checkpoint, "-r", repository, "--version", "2", *FAST)
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in (repository / "skoots").iterdir()) == ["1", "2", "7", "config.pbtxt"]
    assert sorted(p.name for p in repository.iterdir()) == EVERY_VARIANT


@SLOW
def test_failed_reexport_keeps_the_previous_model(checkpoint: Path, bad_files: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    assert skoots("export", checkpoint, "-r", repository, *FAST).returncode == 0
    before = {p.relative_to(repository): p.read_bytes() for p in repository.rglob("*") if p.is_file()}
    for args in ([bad_files / "mismatch.trch"], [checkpoint, "--crop", "8,8,8", "--overlap", "4,4,4"]):
        result = skoots("export", *args, "-r", repository, *FAST[:2])
        assert result.returncode == 2, result.stderr
    after = {p.relative_to(repository): p.read_bytes() for p in repository.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in repository.iterdir()) == EVERY_VARIANT


@SLOW
def test_a_file_in_the_way_is_neither_deleted_nor_half_replaced(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    (repository / "skoots_python").write_text("someone else's file")
    result = skoots("export", checkpoint, "-r", repository, "--backend", "both", *FAST)
    assert (repository / "skoots_python").read_text() == "someone else's file"
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in repository.iterdir()) == ["skoots_python"]


# --- help ------------------------------------------------------------------------------------


def test_export_options_list_is_complete() -> None:
    import typer.main

    from skoots_export.cli import app

    export = typer.main.get_command(app).commands["export"]
    options = {name for p in export.params for name in p.opts if name.startswith("--") and name != "--help"}
    assert options == set(EXPORT_OPTIONS)


@pytest.mark.parametrize(
    "command,wanted",
    [
        ([], ["export", "serve", "build-backend"]),
        (["export"], EXPORT_OPTIONS + ["-r", "checkpoint"]),
        (["serve"], ["--host", "--grpc-port", "--http-port", "--metrics-port", "--model", "--pytorch-backend", "--timeout"]),
        (["build-backend"], ["pytorch", "--source", "--jobs", "--force"]),
    ],
    ids=["skoots", "export", "serve", "build-backend"],
)
def test_help_explains_every_option(command: list[str], wanted: list[str]) -> None:
    result = skoots(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in wanted:
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", result.stdout), word
