"""``skoots-client segment`` given bad input: the catalogue of issue 6.

Every case runs the real console script in a subprocess and must end with exit code 2, exactly
one line on stderr that starts ``error:`` and names the problem and the fix, no traceback, and
nothing written: no output, no work directory, nothing in the working directory, the input
folder as it was. Checkpoint errors belong to ``skoots export``: their catalogue is
``tests/cli/test_export_cli.py::test_user_errors_are_one_line_and_write_nothing``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from conftest import serving

from skoots_export.contract.wire import config_from_text, config_to_text

CLIENT = str(Path(sys.executable).parent / "skoots-client")
SETPRIV = shutil.which("setpriv")


def run_client(*args: str | Path, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, CLIENT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def without_file_permission_override() -> tuple[str, ...]:
    """A command prefix under which file modes bind: tests run as root here, and root ignores
    them (CAP_DAC_OVERRIDE). ``setpriv`` drops those capabilities for the child only."""
    if os.geteuid() != 0:
        return ()
    prefix = (str(SETPRIV), "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--")
    if SETPRIV is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE (no setpriv, or no CAP_SETPCAP): "
                    "a mode-000 file or mode-555 folder does not stop root")
    return prefix


def volume_zxy(shape=(12, 40, 36), dtype=np.uint16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1
    return (rng.random(shape) * top).astype(dtype)


def truncated(path: Path, **write) -> None:
    tifffile.imwrite(path, volume_zxy(), **write)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def with_nonfinite(value: float, dtype=np.float64) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        data = volume_zxy(dtype=dtype)
        data[-1, -1, -1] = value  # in the last crop: found before the first one is sent
        tifffile.imwrite(path, data)

    return make


# (id, how the input is made, extra arguments, pattern the one line must match, what it needs)
# The input is {inp} = <tmp>/input/v.tif unless the arguments name another; {out} = <tmp>/out/o.tif.
INPUT_CASES = [
    ("missing", None, [], r"input not found: \S+v\.tif"),
    ("unreadable", lambda p: (tifffile.imwrite(p, volume_zxy()), p.chmod(0)), ["@nodac"], r"cannot read \S+v\.tif: permission denied"),
    ("corrupt", lambda p: p.write_bytes(b"II*\x00" + bytes(range(256)) * 8), [], r"cannot read TIFF \S+: .* corrupt or truncated; copy or export it again"),
    ("not-a-tiff", lambda p: p.write_bytes(b"hello\n"), [], r"cannot read TIFF \S+: .* corrupt or truncated"),
    ("zero-bytes", lambda p: p.write_bytes(b""), [], r"cannot read TIFF \S+: .* corrupt or truncated"),
    ("truncated", lambda p: truncated(p), [], r"cannot read TIFF \S+: .* corrupt or truncated"),
    ("truncated-compressed", lambda p: truncated(p, compression="zlib"), [], r"cannot read TIFF \S+: invalid page offset .* corrupt or truncated"),
    ("unknown-format", None, ["{tmp}/input/v.png"], r"unknown input format; use a \.tif/\.tiff file or a \.zarr store"),
    ("empty", None, ["{tmp}/input/empty.zarr"], r"empty\.zarr is empty \(shape \(0, 10, 10\)\)"),
    ("zarr-group", None, ["{tmp}/input/group.zarr"], r"Zarr group with 2 arrays and no OME multiscales; point at one array"),
    ("2-D", lambda p: tifffile.imwrite(p, volume_zxy()[0]), [], r"has 2 dimensions \(40, 36\) \(axes YX\); expected a 3-D stack \[Z, Y, X\] or \[Z, Y, X, C\]"),
    ("5-D", lambda p: tifffile.imwrite(p, np.zeros((2, 3, 8, 8, 2), np.uint16)), [], r"has 5 dimensions .*; expected a 3-D stack"),
    ("rgb-2-d", lambda p: tifffile.imwrite(p, volume_zxy((40, 36, 3), np.uint8), photometric="rgb"), [], r"v\.tif is a 2-D RGB image \(axes YXS\); SKOOTS segments 3-D stacks \(if it is a stack of 3 slices, say so with --axes YXZ\)$"),
    ("rgb-without-channel", lambda p: tifffile.imwrite(p, volume_zxy((4, 16, 16, 3), np.uint8), photometric="rgb"), [], r"has 3 channels; choose one with --channel 0\.\.2"),
    ("channel-out-of-range", lambda p: tifffile.imwrite(p, volume_zxy((4, 16, 16, 5)), photometric="minisblack", planarconfig="contig"), ["--channel", "5"], r"--channel 5 is out of range: \S+ has channels 0\.\.4"),
    ("channel-of-single-channel", lambda p: tifffile.imwrite(p, volume_zxy()), ["--channel", "1"], r"--channel 1 is out of range: \S+ has one channel"),
    ("int32", lambda p: tifffile.imwrite(p, volume_zxy().astype(np.int32)), [], r"holds int32 voxels; SKOOTS reads uint8, uint16, int16 or float \(already normalised\) — convert it"),
    ("bool", lambda p: tifffile.imwrite(p, volume_zxy() > 30000), [], r"holds bool voxels; .* convert it"),
    ("float64-nan", with_nonfinite(np.nan), [], r"holds NaN or infinite values \(first at z 11, y 39, x 35\); replace them before segmenting"),
    ("float64-inf", with_nonfinite(np.inf), [], r"holds NaN or infinite values \(first at z 11, y 39, x 35\)"),
    ("float32-minus-inf", with_nonfinite(-np.inf, np.float32), [], r"holds NaN or infinite values"),
    ("float32-0-255", lambda p: tifffile.imwrite(p, volume_zxy(dtype=np.float32) * 255), [], r"the float32 volume's values span 0\.\d+ to 25\d\.\d+, but the model takes float input as already normalised to \[0, 1\]; pass --normalize percentile \(or minmax\) to rescale it, or --normalize dtype to take it as is"),
    ("normalize-minmax-constant", lambda p: tifffile.imwrite(p, np.full((12, 40, 36), 7, np.uint16)), ["--normalize", "minmax"], r"--normalize minmax: the volume's minimum and maximum are both 7, so there is no range to stretch; use --normalize dtype"),
    ("axes-bad-letters", None, ["--axes", "ZYQ"], r"--axes 'ZYQ': name each of Z, Y, X once, plus C \(channel\) and T \(time\) if the array has them, e\.g\. --axes ZYX, XYZ or ZCYX"),
    ("axes-wrong-length", None, ["--axes", "ZCYX"], r"--axes ZCYX names 4 axes but \S+v\.tif has 3 dimensions \(12, 40, 36\); give one letter per dimension"),
]

OPTION_CASES = [
    ("crop-keeps-nothing", None, ["--crop", "8,8,8", "--overlap", "4,4,4"], r"crop z 8, y 8, x 8 with overlap z 4, y 4, x 4 keeps nothing of a crop: each crop size must exceed twice its overlap"),
    ("overlap-keeps-nothing", None, ["--overlap", "12,4,2"], r"crop z 8, y 24, x 24 with overlap z 2, y 12, x 4 keeps nothing"),
    ("crop-two-values", None, ["--crop", "8,8"], r"--crop '8,8' needs three integers X,Y,Z, e\.g\. --crop 300,300,20"),
    ("crop-named-twice", None, ["--crop", "x=24,x=24,z=8"], r"--crop 'x=24,x=24,z=8' needs three integers X,Y,Z, e\.g\. --crop 300,300,20, or named as napari shows the axes, e\.g\. --crop y=300,x=300,z=20"),
    ("normalize-unknown", None, ["--normalize", "zscore"], r"--normalize 'zscore': choose auto, dtype, minmax, percentile\[:LOW,HIGH\] or mean-std:M,S"),
    ("normalize-percentiles-reversed", None, ["--normalize", "percentile:99,1"], r"--normalize 'percentile:99,1': give two percentiles LOW < HIGH within 0\.\.100, e\.g\. percentile:1,99\.8"),
    ("normalize-std-zero", None, ["--normalize", "mean-std:100,0"], r"--normalize 'mean-std:100,0': give the mean and a positive standard deviation"),
    ("crop-zero", None, ["--crop", "0,24,8"], r"crop z 8, y 0, x 24 must be positive on every axis"),
    ("embedding-iterations", None, ["--embedding-iterations", "0"], r"embedding_iterations = 0 must be at least 1"),
    ("batch-zero", None, ["--batch", "0"], r"--window and --batch must be at least 1, --retries and --retry-for at least 0, --timeout positive"),
    ("window-zero", None, ["--window", "0"], r"--window and --batch must be at least 1"),
    ("retries-negative", None, ["--retries", "-1"], r"--retries and --retry-for at least 0"),
    ("retry-for-negative", None, ["--retry-for", "-1"], r"--retries and --retry-for at least 0"),
    ("timeout-zero", None, ["--timeout", "0"], r"--timeout positive"),
    ("device-unknown", None, ["--device", "tpu"], r"Invalid value for '--device': 'tpu' is not one of 'auto', 'cpu', 'gpu' — see skoots-client segment --help$"),
    ("device-gpu-without-one", None, ["--device", "gpu"], r"--device gpu needs CuPy and an NVIDIA GPU: .* or use --device cpu"),
    ("batch-not-a-number", None, ["--batch", "four"], r"Invalid value for '--batch': .*integer — see skoots-client segment --help"),
    ("unknown-option", None, ["--crops", "8,8,8"], r"No such option: --crops .* — see skoots-client segment --help"),
]

OUTPUT_CASES = [
    ("output-folder-missing", None, ["--out", "{tmp}/out/missing/o.tif"], r"--out \S+o\.tif: folder \S+missing does not exist; create it first"),
    ("output-folder-read-only", None, ["--out", "{tmp}/readonly/o.tif", "@nodac"], r"--out \S+o\.tif: folder \S+readonly is not writable"),
    ("output-under-a-file", None, ["--out", "{tmp}/out/file.tif/o.tif"], r"folder \S+file\.tif does not exist"),
    ("output-exists", None, ["--out", "{tmp}/out/file.tif"], r"--out \S+file\.tif exists; pass --overwrite to replace it"),
    ("output-extension", None, ["--out", "{tmp}/out/o.png"], r"--out \S+o\.png: unknown extension; use \.tif, \.tiff, \.zarr or \.ome\.zarr"),
    ("meshes-to-tiff", None, ["--meshes"], r"--meshes are written into a Neuroglancer precomputed output, not --out \S+o\.tif: "
     r"write --out precomputed://PATH, or drop --meshes"),
    ("meshes-to-n5", None, ["--out", "n5://{tmp}/out/o.n5", "--meshes"], r"not --out n5://\S+o\.n5: write --out precomputed://PATH"),
    ("meshes-to-ome-zarr", None, ["--out", "{tmp}/out/o.ome.zarr", "--meshes", "--blockwise"], r"not --out \S+o\.ome\.zarr"),
    ("meshes-with-labels-into", None, ["--out", "precomputed://{tmp}/out/seg", "--labels-into", "{tmp}/out/file.tif", "--meshes"],
     r"--meshes are written into a precomputed output, not --labels-into: add --out precomputed://PATH \(without --labels-into\), or drop --meshes"),
]

MODEL_CASES = [
    ("repository-missing", None, ["@embedded", "-r", "{tmp}/nothing"], r"no model repository at \S+nothing — run skoots export first, or pass --repository"),
    ("no-model-in-repository", None, ["@embedded", "-r", "{tmp}/out"], r"no SKOOTS model in repository \S+out — export one with skoots export$"),
    ("model-not-in-repository", None, ["@embedded", "--model", "other"], r"no model 'other' in repository \S+ \(models there: skoots\)"),
    ("model-pt-corrupt", None, ["@embedded", "-r", "{tmp}/broken", "--model", "corrupt"], r"cannot load \S+model\.pt: PytorchStreamReader failed reading zip archive: failed finding central directory — re-export the model"),
    ("model-pt-missing", None, ["@embedded", "-r", "{tmp}/broken", "--model", "noversion"], r"has no <version>/model\.pt or model\.xml; re-export the model"),
    ("runtime-unknown", None, ["@embedded", "--runtime", "tpu"], r"Invalid value for '--runtime': 'tpu' is not one of 'auto', 'openvino', 'torchscript', 'cuda'"),
    ("runtime-cuda-without-gpu", None, ["@embedded", "--runtime", "cuda"], r"--runtime cuda: no usable CUDA GPU here \(torch\.cuda\.is_available\(\) is False\) — use --runtime auto"),
    ("runtime-openvino-without-ir", None, ["@embedded", "-r", "{tmp}/broken", "--model", "corrupt", "--runtime", "openvino"], r"--runtime openvino: \S+ has no model\.xml — re-export the model with skoots export"),
    ("runtime-with-url", None, ["--url", "127.0.0.1:1", "--runtime", "openvino"], r"--runtime, --threads and --precision choose how the model runs in-process: drop them with --url"),
    ("threads-zero", None, ["@embedded", "--threads", "0"], r"--threads 0: give at least 1"),
    ("precision-unknown", None, ["@embedded", "--precision", "fp8"], r"Invalid value for '--precision': 'fp8' is not one of 'fp32', 'bf16'"),
    ("precision-bf16-on-torchscript", None, ["@embedded", "--runtime", "torchscript", "--precision", "bf16"], r"--precision bf16 runs on OpenVINO only, not torchscript — drop it, or use --runtime openvino"),
    ("config-malformed", None, ["@embedded", "-r", "{tmp}/broken", "--model", "garbled"], r"cannot parse \S+config\.pbtxt: "),
    ("config-missing-parameter", None, ["@embedded", "-r", "{tmp}/broken", "--model", "noparams"], r"model at \S+noparams: model config has no parameter 'crop' — re-export it with skoots export"),
    ("server-unreachable", None, ["--url", "127.0.0.1:1"], r"no Triton server at 127\.0\.0\.1:1 \(UNAVAILABLE\) — start one \(skoots serve\) or fix --url"),
    ("server-url-malformed", None, ["--url", "ftp://127.0.0.1:1"], r"--url ftp://127\.0\.0\.1:1: Triton's gRPC client does not speak ftp:// — give HOST:PORT of Triton's gRPC port"),
    ("model-not-loaded", None, ["@server", "--model", "nope"], r"model 'nope' is not loaded or not ready on \S+ \(ready: half_answer, noparams, wrong_io\) — pass --model or load it"),
    ("model-breaks-the-contract", None, ["@server", "--model", "wrong_io"], r"model at \S+/wrong_io does not speak the SKOOTS contract: no input 'input__0'; no output 'vectors__0'.* — re-export it with skoots export"),
    ("served-config-missing-parameter", None, ["@server", "--model", "noparams"], r"model at \S+/noparams: model config has no parameter 'crop'"),
    ("model-answers-without-outputs", None, ["@server", "--model", "half_answer", "--retries", "1"], r"\S+/half_answer answered 2 times with no skeleton__1 in the answer — check the server's log"),
    # No --model: of the three models ready, half_answer alone speaks the contract, so it is the one used.
    ("model-picked-answers-without-outputs", None, ["@server", "--retries", "1"], r"\S+/half_answer answered 2 times with no skeleton__1"),
]

CATALOGUE = INPUT_CASES + OPTION_CASES + OUTPUT_CASES + MODEL_CASES


@pytest.fixture(scope="module")
def broken_repository(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> Path:
    """Models that cannot be used: a corrupt model.pt, no version, a garbled config, a config
    without the 'crop' parameter, and one whose tensors are not the contract's (for a server)."""
    root = tmp_path_factory.mktemp("broken") / "repository"
    source = e2e_repository / "skoots"
    config = config_from_text((source / "config.pbtxt").read_text())

    def model(name: str, edit: Callable | None = None, model_pt: bytes | None = None, model_py: str | None = None) -> None:
        folder = root / name
        (folder / "1").mkdir(parents=True)
        changed = type(config)()
        changed.CopyFrom(config)
        changed.name = name
        if edit:
            edit(changed)
        (folder / "config.pbtxt").write_text(config_to_text(changed))
        if model_pt is not None:
            (folder / "1" / "model.pt").write_bytes(model_pt)
        if model_py is not None:
            (folder / "1" / "model.py").write_text(model_py)

    def other_names(c) -> None:
        c.input[0].name = "INPUT0"
        for i, output in enumerate(c.output):
            output.name = f"OUTPUT{i}"
        del c.model_warmup[:]

    # Loads on a server (no torch, no warm-up) but never answers: the client must refuse it first.
    refuses = (
        "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
        "    def execute(self, requests):\n"
        "        return [pb_utils.InferenceResponse(error=pb_utils.TritonError('not a SKOOTS model')) for _ in requests]\n"
    )
    model("corrupt", model_pt=(source / "1" / "model.pt").read_bytes()[:2000][::-1])
    model("noversion")
    shutil.rmtree(root / "noversion" / "1")
    model("garbled")
    (root / "garbled" / "config.pbtxt").write_text("name: 'garbled'\ninput { name: \n")
    model("noparams", lambda c: (c.parameters.pop("crop"), c.ClearField("model_warmup")), model_py=refuses)
    model("wrong_io", other_names, model_py=refuses)
    # Speaks the contract's config but answers with the vectors only.
    half = (
        "import numpy as np\nimport triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
        "    def execute(self, requests):\n        answers = []\n        for r in requests:\n"
        "            x = pb_utils.get_input_tensor_by_name(r, 'input__0').as_numpy()\n"
        "            v = np.zeros((x.shape[0], 3, *x.shape[2:]), np.float16)\n"
        "            answers.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor('vectors__0', v)]))\n"
        "        return answers\n"
    )
    model("half_answer", lambda c: c.ClearField("model_warmup"), model_py=half)
    return root


@pytest.fixture(scope="module")
def catalogue_server(broken_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real tritonserver serving the misfits that load: ``wrong_io``, ``noparams``, ``half_answer``."""
    served = tmp_path_factory.mktemp("served") / "repository"
    served.mkdir()
    for name in ("wrong_io", "noparams", "half_answer"):
        shutil.copytree(broken_repository / name, served / name)
    yield from serving(served)


def _case_params(cases: list) -> list:
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize("case,make,args,pattern", _case_params(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, make, args: list[str], pattern: str, request: pytest.FixtureRequest,
    e2e_repository: Path, broken_repository: Path, tmp_path: Path,
) -> None:
    if case == "device-gpu-without-one" and importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: --device gpu may be valid here")
    if case == "runtime-cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --runtime cuda is valid")
    folders = {name: tmp_path / name for name in ("input", "out", "cwd", "readonly")}
    for folder in folders.values():
        folder.mkdir()
    (folders["out"] / "file.tif").write_bytes(b"someone's file")
    folders["readonly"].chmod(0o555)
    (tmp_path / "broken").symlink_to(broken_repository)
    inp = folders["input"] / "v.tif"
    if make is not None:
        make(inp)
    elif case not in ("missing",):
        tifffile.imwrite(inp, volume_zxy())
    (folders["input"] / "v.png").write_bytes(b"\x89PNG")
    zarr.create_array(str(folders["input"] / "empty.zarr"), shape=(0, 10, 10), dtype="uint16")
    group = zarr.open_group(str(folders["input"] / "group.zarr"), mode="w")
    group.create_array("a", shape=(4, 4, 4), dtype="uint8")
    group.create_array("b", shape=(4, 4, 4), dtype="uint8")

    args = [a.format(tmp=tmp_path) for a in args]
    prefix: tuple[str, ...] = ()
    if "@nodac" in args:
        args.remove("@nodac")
        prefix = without_file_permission_override()
    if "@embedded" in args:
        args.remove("@embedded")
        args += [] if "-r" in args else ["-r", str(e2e_repository)]
    elif "@server" in args:
        args.remove("@server")
        args += ["--url", request.getfixturevalue("catalogue_server").grpc_url]
    elif "--url" not in args:
        args += ["-r", str(e2e_repository)]  # the embedded model: no server needed to reach the check
    volume = next((a for a in args if a.startswith(str(folders["input"]))), None)
    if volume:
        args.remove(volume)
    out = [] if "--out" in args else ["--out", str(folders["out"] / "o.tif")]
    before = sorted(p.name for p in folders["input"].iterdir())

    result = run_client("segment", volume or inp, "--device", "cpu", *out, *args, cwd=folders["cwd"], prefix=prefix)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert sorted(p.name for p in folders["out"].iterdir()) == ["file.tif"]
    assert (folders["out"] / "file.tif").read_bytes() == b"someone's file"
    assert list(folders["cwd"].iterdir()) == [] and list(folders["readonly"].iterdir()) == []
    assert sorted(p.name for p in folders["input"].iterdir()) == before, "wrote beside the input"


def test_the_catalogue_covers_the_issue() -> None:
    """Issue 6's list, each item to the cases that pin it (checkpoint errors: export's catalogue)."""
    ids = {case[0] for case in CATALOGUE}
    issue = {
        "missing / unreadable / corrupt / truncated TIFF": {"missing", "unreadable", "corrupt", "truncated", "truncated-compressed"},
        "empty array": {"empty"}, "2-D image": {"2-D"}, "5-D or more": {"5-D"},
        "RGB or multi-channel without --channel": {"rgb-without-channel"}, "--channel out of range": {"channel-out-of-range"},
        "int32, float64 with NaN/Inf, bool": {"int32", "float64-nan", "float64-inf", "bool"},
        "crop - 2*overlap <= 0": {"crop-keeps-nothing", "overlap-keeps-nothing"},
        "output in a missing or read-only directory": {"output-folder-missing", "output-folder-read-only"},
        "output exists without --overwrite": {"output-exists"}, "output extension unknown": {"output-extension"},
        "model repository missing / model.pt corrupt / config missing parameters": {"repository-missing", "model-pt-corrupt", "config-missing-parameter"},
        "server unreachable": {"server-unreachable"}, "model not loaded": {"model-not-loaded"},
        "model whose I/O does not match the contract": {"model-breaks-the-contract"},
    }
    for item, wanted in issue.items():
        assert wanted <= ids, item


# --- inputs that look odd but are valid: labels, exit 0 ---------------------------------------


@pytest.mark.parametrize(
    "case,data,instances",
    [
        ("all-zero", np.zeros((12, 40, 36), np.uint16), "0 instances"),
        ("smaller-than-a-crop", volume_zxy((3, 10, 30)), " instances"),
        ("one-voxel-thick", volume_zxy((1, 30, 30)), " instances"),
        ("float32-normalised", volume_zxy(dtype=np.float32), " instances"),
        ("uint8", volume_zxy(dtype=np.uint8), " instances"),
    ],
)
def test_odd_but_valid_inputs_segment(case: str, data: np.ndarray, instances: str, e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", data)
    result = run_client("segment", tmp_path / "v.tif", "-r", e2e_repository, "--out", tmp_path / "o.tif", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    labels = tifffile.imread(tmp_path / "o.tif", squeeze=False).reshape(-1, *data.shape[1:])
    assert labels.shape == data.shape
    assert instances in result.stdout
    if case == "all-zero":
        assert not labels.any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "v.tif"]
