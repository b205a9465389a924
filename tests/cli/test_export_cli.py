"""``skoots export`` as a user runs it: the real console script, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from checkpoints import TINY, random_state_dict, skoots_cfg, write_checkpoint

SKOOTS = str(Path(sys.executable).parent / "skoots")
FAST = ["--device", "cpu", "--crop", "24,24,8", "--overlap", "4,4,2"]


def skoots(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SKOOTS, *args], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


class Boom:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.trch")


def test_export_writes_both_variants_and_summarises(checkpoint: Path, tmp_path: Path) -> None:
    result = skoots("export", str(checkpoint), "-r", str(tmp_path / "repo"), "--backend", "both", *FAST)
    assert result.returncode == 0, result.stderr
    for path in ("skoots/config.pbtxt", "skoots/1/model.pt", "skoots_python/1/model.py", "skoots_python/1/model.pt"):
        assert (tmp_path / "repo" / path).is_file(), path
    out = result.stdout
    assert "skoots_python" in out and "input__0 TYPE_FP16" in out and "skeleton__1 TYPE_UINT8" in out
    assert "crop = 24,24,8" in out and "vector_scaling = 60.0,60.0,12.0" in out


def bad_cases(tmp: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    legacy = tmp / "legacy.trch"
    torch.save(random_state_dict(skoots_cfg(**TINY)), legacy)
    unsafe = tmp / "unsafe.trch"
    torch.save({"cfg": skoots_cfg(**TINY), "hook": Boom(tmp / "MARKER")}, unsafe)
    data = torch.load(checkpoint, weights_only=False)
    foo, mismatch = tmp / "foo.trch", tmp / "mismatch.trch"
    torch.save({**data, "cfg": skoots_cfg(**{**TINY, "ARCHITECTURE": "bism_foo"})}, foo)
    torch.save({**data, "cfg": skoots_cfg(**{**TINY, "DIMS": [4, 8, 12, 8, 4]})}, mismatch)
    text = tmp / "notes.trch"
    text.write_text("not a checkpoint")
    ok = str(checkpoint)
    return {
        "missing": ([str(tmp / "nope.trch")], "checkpoint not found"),
        "not-torch": ([str(text)], "not a readable PyTorch checkpoint"),
        "legacy": ([str(legacy)], "no 'cfg'"),
        "unsafe": ([str(unsafe)], "--trust-checkpoint"),
        "architecture": ([str(foo)], "ARCHITECTURE = 'bism_foo'"),
        "state-dict": ([str(mismatch)], "shape mismatch"),
        "crop-two-values": ([ok, "--crop", "3,4"], "needs three integers"),
        "crop-not-numbers": ([ok, "--crop", "a,b,c"], "needs three integers"),
        "overlap-too-big": ([ok, "--crop", "8,8,8", "--overlap", "4,4,4"], "keeps nothing"),
        "backend": ([ok, "--backend", "tensorflow"], "choose libtorch, python or both"),
        "name": ([ok, "--name", "bad/name"], "may hold only"),
        "max-batch": ([ok, "--max-batch", "0"], "at least 1"),
        "threshold": ([ok, "--prob-threshold", "1.5"], "prob_threshold"),
        "mean-without-std": ([ok, "--dataset-mean", "3"], "come together"),
        "repository-under-a-file": ([ok, "-r", str(tmp / "notes.trch" / "repo")], "cannot write the model repository"),
    }


CASES = ["missing", "not-torch", "legacy", "unsafe", "architecture", "state-dict", "crop-two-values",
         "crop-not-numbers", "overlap-too-big", "backend", "name", "max-batch", "threshold", "mean-without-std",
         "repository-under-a-file"]


@pytest.mark.parametrize("case", CASES)
def test_user_errors_are_one_line_and_write_nothing(case: str, checkpoint: Path, tmp_path: Path) -> None:
    args, match = bad_cases(tmp_path, checkpoint)[case]
    repository = tmp_path / "repo"
    extra = [] if "-r" in args else ["-r", str(repository)]
    crop = [] if "--crop" in args else ["--crop", "24,24,8", "--overlap", "4,4,2"]
    result = skoots("export", *args, *extra, "--device", "cpu", *crop)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert match in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not repository.exists() or list(repository.iterdir()) == []
    assert not (tmp_path / "MARKER").exists(), "an untrusted checkpoint ran code"


def test_trust_checkpoint_is_the_only_way_to_run_pickled_code(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.trch"
    data = torch.load(write_checkpoint(tmp_path / "ok.trch"), weights_only=False)
    data["hook"] = Boom(tmp_path / "MARKER")
    torch.save(data, unsafe)
    refused = skoots("export", str(unsafe), "-r", str(tmp_path / "repo"), *FAST)
    assert refused.returncode == 2 and not (tmp_path / "MARKER").exists()
    trusted = skoots("export", str(unsafe), "-r", str(tmp_path / "repo"), "--trust-checkpoint", *FAST)
    assert trusted.returncode == 0, trusted.stderr
    assert (tmp_path / "MARKER").exists()


def test_reexport_replaces_atomically_and_keeps_other_versions(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    assert skoots("export", str(checkpoint), "-r", str(repository), *FAST).returncode == 0
    (repository / "skoots" / "7").mkdir()
    (repository / "skoots" / "7" / "model.pt").write_bytes(b"older version")
    again = skoots("export", str(checkpoint), "-r", str(repository), "--device", "cpu", "--crop", "16,16,8", "--overlap", "2,2,1")
    assert again.returncode == 0, again.stderr
    assert 'string_value: "16,16,8"' in (repository / "skoots" / "config.pbtxt").read_text()
    assert (repository / "skoots" / "7" / "model.pt").read_bytes() == b"older version"
    assert sorted(p.name for p in repository.iterdir()) == ["skoots"], "no staging left behind"


def test_failed_reexport_keeps_the_previous_model(checkpoint: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    assert skoots("export", str(checkpoint), "-r", str(repository), *FAST).returncode == 0
    before = (repository / "skoots" / "config.pbtxt").read_text()
    assert skoots("export", str(tmp_path / "missing.trch"), "-r", str(repository), *FAST).returncode == 2
    assert (repository / "skoots" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in repository.iterdir()) == ["skoots"]


@pytest.mark.parametrize("command", [[], ["export"], ["serve"]])
def test_help_explains_every_option(command: list[str]) -> None:
    result = skoots(*command, "--help")
    assert result.returncode == 0
    wanted = {
        (): ["export", "serve"],
        ("export",): ["--trust-checkpoint", "--crop", "--overlap", "--backend", "--device", "--max-batch", "--repository", "--name"],
        ("serve",): ["--host", "--grpc-port", "--model"],
    }[tuple(command)]
    for word in wanted:
        assert word in result.stdout, word
