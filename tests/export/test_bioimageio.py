"""``skoots export --bioimageio OUT.zip``: a BioImage Model Zoo package (format 0.5) that
bioimageio.core's own ``bioimageio test`` passes with no network, carrying what the SKOOTS
decoder needs; a bad checkpoint or path is one line, exit 2, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from skoots_export.bioimageio_package import CHANNELS, CITATION, ZooNetwork, export_bioimageio
from skoots_export.graph_export import ONNX_OPSET

SKOOTS = Path(sys.executable).parent / "skoots"
BIOIMAGEIO = Path(sys.executable).parent / "bioimageio"
OPTIONS = dict(crop=(24, 24, 8), overlap=(4, 4, 2), dilations_3d=0, dilations_2d=1, vector_scaling=(4.0, 4.0, 2.0))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, lively_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "skoots.zip"
    export_bioimageio(lively_checkpoint, out, **OPTIONS)
    assert sorted(p.name for p in out.parent.iterdir()) == ["skoots.zip"], "no staging left behind"
    return out


def rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def test_package_describes_the_network_for_the_zoo_and_the_decoder(package: Path) -> None:
    description = rdf(package)
    assert description["type"] == "model" and description["format_version"].startswith("0.5.")
    assert description["weights"]["onnx"]["opset_version"] == ONNX_OPSET and description["weights"]["onnx"]["parent"] == "torchscript"
    assert description["weights"]["torchscript"]["pytorch_version"].startswith(torch.__version__.split("+")[0][:4])
    (raw,), (prediction,) = description["inputs"], description["outputs"]
    assert [a.get("id", a["type"]) for a in raw["axes"]] == ["batch", "channel", "z", "y", "x"]
    # step: the network's downsampling (2**3 for the tiny one); min: a multiple of it above twice the halo
    assert [a["size"] for a in raw["axes"][2:]] == [{"min": 8, "step": 8}, {"min": 16, "step": 8}, {"min": 16, "step": 8}]
    assert prediction["axes"][1]["channel_names"] == list(CHANNELS)
    assert [(a["id"], a["halo"], a["size"]["axis_id"]) for a in prediction["axes"][2:]] == [("z", 2, "z"), ("y", 4, "y"), ("x", 4, "x")]
    skoots = description["config"]["skoots"]
    assert skoots["crop"] == [24, 24, 8] and skoots["overlap"] == [4, 4, 2] and skoots["vector_scaling"] == [4.0, 4.0, 2.0]
    assert (skoots["prob_threshold"], skoots["skeleton_threshold"], skoots["dilations_3d"], skoots["dilations_2d"], skoots["embedding_iterations"]) == (0.5, 0.8, 0, 1, 2)
    assert skoots["normalization"] == "dtype_range" and skoots["training_voxel_size"] is None and "MODEL" in skoots["cfg"]
    assert [c["doi"] for c in description["cite"]] == [CITATION["doi"]]
    with zipfile.ZipFile(package) as z:
        documentation = z.read(description["documentation"]["source"]).decode()
    assert "SKOOTS post-processing" in documentation
    assert "skoots-client segment volume.tif --model this_package.zip" in documentation and "skoots_client.segment(" in documentation


def test_test_tensors_are_the_exported_networks_answer(package: Path, tmp_path: Path, lively_checkpoint: Path) -> None:
    description = rdf(package)
    with zipfile.ZipFile(package) as z:
        z.extractall(tmp_path)
    raw = np.load(tmp_path / description["inputs"][0]["test_tensor"]["source"])
    expected = np.load(tmp_path / description["outputs"][0]["test_tensor"]["source"])
    assert raw.shape == (1, 1, 8, 24, 24) and expected.shape == (1, 5, 8, 24, 24) and raw.max() > 255
    scripted = torch.jit.load(str(tmp_path / description["weights"]["torchscript"]["source"]))
    with torch.inference_mode():
        answer = scripted(torch.from_numpy(raw / np.float32(2**16))).numpy()
    assert np.array_equal(answer, expected)
    # and the network is the checkpoint's, on the zoo's axes: [Z, Y, X] in, transposed from [X, Y, Z]
    from skoots_export.architecture import build_network, load_weights
    from skoots_export.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(lively_checkpoint)
    network = build_network(checkpoint.cfg["MODEL"]).eval()
    load_weights(network, checkpoint.state_dict)
    with torch.inference_mode():
        xyz = network(torch.from_numpy(raw / np.float32(2**16)).permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2).numpy()
        assert np.abs(ZooNetwork(network)(torch.from_numpy(raw / np.float32(2**16))).numpy() - xyz).max() == 0
    assert np.abs(xyz - expected).max() <= 1e-5


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No way out: every proxy variable points at a closed loopback port, and a fresh zoo cache."""
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "BIOIMAGEIO_CACHE_PATH": str(tmp_path / "cache"), "NO_PROXY": "", "no_proxy": ""}
    env.update({k: dead for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")})
    return env


def test_bioimageio_test_passes_offline(package: Path, tmp_path: Path) -> None:
    """bioimageio.core's own test of every weight format, with no network: in a network namespace
    of its own where ``unshare`` allows one, behind dead proxies in any case."""
    command = [str(BIOIMAGEIO), "test", str(package), "--summary", str(tmp_path / "summary.json")]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        command = [unshare, "-rn", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=offline_env(tmp_path), cwd=tmp_path)
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    failed = [d["name"] for d in summary["details"] if d["status"] != "passed"]
    assert done.returncode == 0 and summary["status"] == "passed" and not failed, (failed, done.stdout[-3000:])
    names = " ".join(d["name"] for d in summary["details"])
    assert "Reproduce test outputs from test inputs (onnx)" in names and "Reproduce test outputs from test inputs (torchscript)" in names


def skoots(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SKOOTS), *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "no-folder", "not-zip"])
def test_bad_checkpoint_or_path_is_one_line_exit_2_nothing_written(case: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    checkpoint, out = tiny_checkpoint, tmp_path / "out" / "model.zip"
    (tmp_path / "out").mkdir()
    if case == "missing":
        checkpoint = tmp_path / "nowhere.trch"
    elif case == "not-a-checkpoint":
        checkpoint = tmp_path / "notes.trch"
        checkpoint.write_text("not a checkpoint")
    elif case == "no-folder":
        out = tmp_path / "absent" / "model.zip"
    else:
        out = tmp_path / "out" / "model.yaml"
    done = skoots("export", checkpoint, "--bioimageio", out)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert {"missing": "checkpoint not found", "not-a-checkpoint": "is not a readable PyTorch checkpoint", "no-folder": "does not exist",
            "not-zip": "a zoo package is a .zip file"}[case] in lines[0]
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "absent").exists()


@pytest.mark.slow  # a full export in a fresh process (~20 s); the API's package is checked in the quick run
def test_cli_writes_the_package_and_says_how_to_check_it(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "tiny.zip"
    done = skoots("export", tiny_checkpoint, "--bioimageio", out, "--crop", "24,24,8", "--overlap", "4,4,2")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (BioImage Model Zoo format 0.5; weights: onnx, torchscript)" in done.stdout
    assert "input   raw [batch, channel, z, y, x], z 8+n*8, y 16+n*8, x 16+n*8" in done.stdout
    assert f"check it offline with: bioimageio test {out}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.zip"] and rdf(out)["config"]["skoots"]["crop"] == [24, 24, 8]


# --- a zoo package as a checkpoint ------------------------------------------------------------


def test_package_exports_to_the_checkpoints_repository_and_labels(package: Path, lively_checkpoint: Path, e2e_repository: Path,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """e2e_repository is the lively checkpoint exported with OPTIONS (conftest's E2E_EXPORT):
    the package's export, and segment --model PACKAGE, give its labels bitwise."""
    import tifffile
    from conftest import E2E_EXPORT
    from functional.test_segment_e2e import blobs_volume

    import skoots_client
    from skoots_export.checkpoint import load_checkpoint
    from skoots_export.contract.choices import Device
    from skoots_export.contract.wire import config_from_text, parameters_from_config
    from skoots_export.exporter import export_checkpoint
    from skoots_export.zoo_source import load_source

    assert E2E_EXPORT == OPTIONS
    original, packaged = load_checkpoint(lively_checkpoint), load_source(package)
    assert original.state_dict.keys() == packaged.state_dict.keys()
    assert all(torch.equal(original.state_dict[k], packaged.state_dict[k]) for k in original.state_dict)
    repository = tmp_path / "from_package"
    export_checkpoint(package, repository=repository, backend="python", device=Device.CPU, max_batch_size=4)
    read = lambda r: parameters_from_config(config_from_text((r / "skoots" / "config.pbtxt").read_text()))  # noqa: E731
    assert read(repository) == read(e2e_repository)
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((12, 56, 56), seed=3))
    for out, model in (("checkpoint.tif", e2e_repository), ("package.tif", repository)):
        skoots_client.segment(tmp_path / "v.tif", out=tmp_path / out, model=model, device="cpu", quiet=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "zip.tif", model=package, device="cpu", quiet=True)
    expected = tifffile.imread(tmp_path / "checkpoint.tif")
    assert expected.max() >= 5
    assert np.array_equal(tifffile.imread(tmp_path / "package.tif"), expected)
    assert np.array_equal(tifffile.imread(tmp_path / "zip.tif"), expected)
    assert len(list((tmp_path / "cache" / "skoots-triton" / "zoo").glob("*/model_repository/skoots/config.pbtxt"))) == 1


def rewritten(package: Path, out: Path, change) -> Path:
    """``package`` with its rdf.yaml passed through ``change``."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "rdf.yaml":
                description = yaml.safe_load(data)
                change(description)
                data = yaml.safe_dump(description).encode()
            target.writestr(item, data)
    return out


@pytest.mark.parametrize("case", ["not-skoots", "not-a-model", "no-torchscript"])
def test_a_zoo_package_that_is_not_a_skoots_model_is_one_line(case: str, package: Path, tmp_path: Path) -> None:
    change, said = {
        "not-skoots": (lambda d: d.pop("config"), "is a BioImage Model Zoo model ('SKOOTS', format 0.5.12) but not a SKOOTS model: it lacks config.skoots"),
        "not-a-model": (lambda d: d.update(type="dataset"), "is a BioImage Model Zoo dataset ('SKOOTS', format 0.5.12), not a model"),
        "no-torchscript": (lambda d: d["weights"].pop("torchscript"), "a SKOOTS model without TorchScript weights in the package"),
    }[case]
    other = rewritten(package, tmp_path / "other.zip", change)
    done = skoots("export", other, "--repository", tmp_path / "repository")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], lines
    assert not (tmp_path / "repository").exists()
