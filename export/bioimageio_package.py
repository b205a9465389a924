"""``skoots export CHECKPOINT --bioimageio OUT.zip``: the network as a BioImage Model Zoo package.

Format 0.5, built with bioimageio.spec's model description classes and saved by its packager.
The package holds the raw network (five channels: three embedding vectors, skeleton and object
probability) as TorchScript and ONNX weights; the zoo's post-processing vocabulary cannot
express SKOOTS', so, as StarDist and Cellpose do, it ships the raw outputs, names the decoder
(SKOOTS post-processing, ``skoots_client``) and carries its constants in ``config.skoots``.

The zoo's axes are ``batch, channel, z, y, x``; the network's are ``[B, C, X, Y, Z]``, so the
packaged module transposes on the way in and out. Triples in ``config.skoots`` keep this
project's [X, Y, Z] order, as everywhere else.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .architecture import build_network, load_weights
from .contract.wire import ModelParameters
from .errors import ExportError, ExportOptionError
from .exporter import cfg_to_yaml, parameters_for
from .graph_export import ONNX_OPSET, export_program, save_onnx
from .zoo_source import load_source

__all__ = [
    "ZOO_FORMAT", "CHANNELS", "SKOOTS_CONFIG_KEY", "INPUT_ID", "OUTPUT_ID", "CITATION", "AUTHORS", "ZooNetwork", "ZooResult", "zoo_sizes", "export_bioimageio",
]

ZOO_FORMAT = "0.5"
CHANNELS = ("vector_x", "vector_y", "vector_z", "skeleton", "probability")
SKOOTS_CONFIG_KEY = "skoots"
INPUT_ID = "raw"
OUTPUT_ID = "prediction"
# The method's paper (upstream skoots' README cites it).
CITATION = {
    "text": "Buswinka CJ, Nitta H, Osgood RT, Indzhykulian AA. SKOOTS: Skeleton oriented object segmentation for mitochondria. bioRxiv (2023)",
    "doi": "10.1101/2023.05.05.539611",
}
AUTHORS = ("Christopher J. Buswinka", "Hidetomi Nitta", "Richard T. Osgood", "Artur A. Indzhykulian")
_TEST_EXTENT = 64  # largest test-tensor axis: the package's test runs in seconds


class ZooNetwork(nn.Module):
    """The network on the zoo's axes: ``[B, 1, Z, Y, X]`` float32 → ``[B, 5, Z, Y, X]``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, raw: Tensor) -> Tensor:
        return self.network(raw.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)


@dataclass(frozen=True)
class ZooResult:
    """What ``--bioimageio`` wrote, for the CLI's summary."""

    path: Path
    parameters: ModelParameters
    sources: dict[str, str]
    weights: tuple[str, ...]  # the zoo's weight format names, in the package
    minimum: tuple[int, int, int]  # ParameterizedSize.min per axis, [Z, Y, X]
    step: int
    warnings: tuple[str, ...] = ()


def zoo_sizes(parameters: ModelParameters) -> tuple[tuple[int, int, int], int]:
    """The input's ``ParameterizedSize`` per axis, [Z, Y, X]: the step is the network's
    downsampling (``minimum_size``); the minimum its smallest multiple that keeps something of
    the output once the halo (the overlap) is cut from both sides."""
    step = parameters.minimum_size
    x, y, z = (step * (2 * o // step + 1) for o in parameters.overlap)
    return (z, y, x), step


def _test_shape(parameters: ModelParameters, minimum: tuple[int, int, int], step: int) -> tuple[int, ...]:
    """A valid input size near the crop, capped at `_TEST_EXTENT` voxels per axis, [Z, Y, X]."""
    crop_zyx = parameters.crop[::-1]
    sizes = [low + step * max(0, -(-(min(c, _TEST_EXTENT) - low) // step)) for c, low in zip(crop_zyx, minimum)]
    return (1, 1, *sizes)


def _constants(parameters: ModelParameters, cfg_yaml: str) -> dict[str, Any]:
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(parameters).items()}
    return {
        "decoder": "SKOOTS post-processing (skoots_client: skeleton labelling and vector embedding)",
        "channels": list(CHANNELS),
        "triples": "[X, Y, Z]",
        "normalization": "mean_std" if parameters.dataset_mean is not None else "dtype_range",
        **values,
        "onnx_opset": ONNX_OPSET,
        "cfg": cfg_yaml,
    }


def _documentation(parameters: ModelParameters, name: str) -> str:
    return f"""# {name}: SKOOTS instance segmentation (raw network outputs)

SKOOTS segments densely packed, thin 3-D objects (mitochondria) as instances. This package
holds the network only. Its five output channels are `{", ".join(CHANNELS)}`: three embedding
vectors (tanh, pointing each voxel to its object's skeleton, scaled by `vector_scaling`
{list(parameters.vector_scaling)} [X, Y, Z]), the skeleton probability and the object probability
(sigmoid). Instances come from the **decoder, SKOOTS post-processing**, which the zoo's
post-processing steps cannot express: threshold the probability ({parameters.prob_threshold})
and the skeleton ({parameters.skeleton_threshold}), label the skeletons, move each object voxel
along its vector {parameters.embedding_iterations} times and give it the label it lands on. The
constants are in this package's `config.skoots`; `skoots-triton` runs all of it:

```bash
skoots-client segment volume.tif --model this_package.zip --out labels.tif
```

```python
import skoots_client
labels = skoots_client.segment("volume.tif", model="this_package.zip").labels
```

Tile the volume with the crop {list(parameters.crop)} [X, Y, Z] and cut the overlap
{list(parameters.overlap)} (the outputs' halo) from each side of a tile before stitching.
Input: one channel, {"(x - " + f"{parameters.dataset_mean:g}) / {parameters.dataset_std:g}" if parameters.dataset_mean is not None else "uint16 intensities divided by 65536 (the package's preprocessing)"}.

## Validation

The test tensors are the exported network's own answer to a random input; `skoots export`
checks the TorchScript and ONNX weights against the eager network (within 1e-4) before it
writes the package. The instances' quality depends on the checkpoint: evaluate the labels with
`skoots-client evaluate` against ground truth of your data.

Cite the SKOOTS paper: {CITATION["text"]}, doi:{CITATION["doi"]}.
"""


def _axes(parameters: ModelParameters, minimum: tuple[int, int, int], step: int) -> tuple[list[Any], list[Any]]:
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        BatchAxis,
        ChannelAxis,
        Identifier,
        ParameterizedSize,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxis,
        SpaceOutputAxisWithHalo,
        TensorId,
    )

    overlap_zyx = parameters.overlap[::-1]
    scale_zyx = parameters.training_voxel_size[::-1] if parameters.training_voxel_size else (1.0, 1.0, 1.0)
    unit: Any = parameters.voxel_unit if parameters.training_voxel_size else None  # our unit names are the zoo's SpaceUnit names
    inputs: list[Any] = [BatchAxis(), ChannelAxis(channel_names=[Identifier("raw")])]
    outputs: list[Any] = [BatchAxis(), ChannelAxis(channel_names=[Identifier(c) for c in CHANNELS])]
    for axis, low, halo, scale in zip("zyx", minimum, overlap_zyx, scale_zyx):
        inputs.append(SpaceInputAxis(id=AxisId(axis), size=ParameterizedSize(min=low, step=step), unit=unit, scale=scale))
        same = SizeReference(tensor_id=TensorId(INPUT_ID), axis_id=AxisId(axis))
        outputs.append(SpaceOutputAxisWithHalo(id=AxisId(axis), size=same, halo=halo, unit=unit, scale=scale) if halo > 0
                       else SpaceOutputAxis(id=AxisId(axis), size=same, unit=unit, scale=scale))
    return inputs, outputs


def _preprocessing(parameters: ModelParameters) -> list[Any]:
    from bioimageio.spec.model.v0_5 import (
        FixedZeroMeanUnitVarianceDescr,
        FixedZeroMeanUnitVarianceKwargs,
        ScaleLinearDescr,
        ScaleLinearKwargs,
    )

    if parameters.dataset_mean is not None and parameters.dataset_std is not None:
        return [FixedZeroMeanUnitVarianceDescr(kwargs=FixedZeroMeanUnitVarianceKwargs(mean=parameters.dataset_mean, std=parameters.dataset_std))]
    return [ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=1 / 2**16))]


def _normalised(raw: np.ndarray, parameters: ModelParameters) -> np.ndarray:
    if parameters.dataset_mean is not None and parameters.dataset_std is not None:
        return ((raw - np.float32(parameters.dataset_mean)) / np.float32(parameters.dataset_std)).astype(np.float32)
    return (raw / np.float32(2**16)).astype(np.float32)


def _script(zoo: ZooNetwork) -> tuple[torch.jit.ScriptModule | None, list[str]]:
    try:
        return torch.jit.script(zoo), []
    except Exception as e:  # noqa: BLE001 - whatever torch.jit raises: the ONNX weights do not need it
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, [f"TorchScript is unavailable in this torch ({detail}): the package holds ONNX weights only"]


def _spec():
    try:
        import bioimageio.spec
        from bioimageio.spec.model import v0_5
    except ImportError as e:
        raise ExportError(f"cannot import bioimageio.spec ({e}): install the bioimageio extra (pip install 'skoots-triton[bioimageio]')") from e
    return bioimageio.spec, v0_5


def export_bioimageio(
    checkpoint_path: Path,
    out: Path,
    *,
    name: str = "SKOOTS",
    trust_checkpoint: bool = False,
    **parameter_overrides: Any,
) -> ZooResult:
    """Write ``checkpoint_path`` as a BioImage Model Zoo package (format 0.5) at ``out`` (a .zip).

    Constants resolve as for the model repository (`parameters_for`). Nothing is written unless
    every step succeeds: the package is assembled aside and moved into place.

    Raises
    ------
    ExportError
        Bad checkpoint, ``out`` not a .zip in an existing folder, bioimageio.spec missing, or an
        exported form that does not reproduce the network.
    """
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise ExportOptionError(f"--bioimageio {out}: a zoo package is a .zip file; give a path ending in .zip")
    if not out.parent.is_dir():
        raise ExportOptionError(f"--bioimageio {out}: folder {out.parent} does not exist; create it or choose another path")
    if out.is_dir():
        raise ExportOptionError(f"--bioimageio {out} is a folder; give the path of a .zip file")
    spec, v0_5 = _spec()
    checkpoint = load_source(checkpoint_path, trust=trust_checkpoint)
    network = build_network(checkpoint.cfg["MODEL"])
    levels = 1 + len(checkpoint.cfg["MODEL"]["DIMS"]) // 2
    parameters, sources = parameters_for(checkpoint, minimum_size=2**levels, **parameter_overrides)
    load_weights(network, checkpoint.state_dict)
    zoo = ZooNetwork(network).eval()
    minimum, step = zoo_sizes(parameters)
    scripted, notes = _script(zoo)
    program = export_program(zoo, parameters.minimum_size, INPUT_ID, torch.float32)

    staging = Path(tempfile.mkdtemp(prefix=".skoots-bioimageio-", dir=out.parent))
    try:
        onnx_path = staging / "weights.onnx"
        save_onnx(program, onnx_path, INPUT_ID, [OUTPUT_ID])
        raw = np.random.default_rng(0).uniform(0, 2**16 - 1, _test_shape(parameters, minimum, step)).round().astype(np.float32)
        if parameters.dataset_mean is not None and parameters.dataset_std is not None:
            raw = np.random.default_rng(0).normal(parameters.dataset_mean, parameters.dataset_std, raw.shape).astype(np.float32)
        with torch.inference_mode():
            eager = zoo(torch.from_numpy(_normalised(raw, parameters))).numpy()
            answer = scripted(torch.from_numpy(_normalised(raw, parameters))).numpy() if scripted is not None else None
        from .onnx_model import run_onnx

        onnx_answer = run_onnx(onnx_path, _normalised(raw, parameters))[0]
        for label, got in (("TorchScript", answer), ("ONNX", onnx_answer)):
            if got is not None and not float(np.abs(got - eager).max()) <= 1e-4:
                raise ExportError(f"the {label} weights differ from the eager network by {float(np.abs(got - eager).max()):.3g}; nothing was written")
        np.save(staging / "test_input.npy", raw)
        np.save(staging / "test_output.npy", answer if answer is not None else onnx_answer)
        (staging / "README.md").write_text(_documentation(parameters, name))
        weights: dict[str, Any] = {"onnx": v0_5.OnnxWeightsDescr(source=onnx_path, opset_version=ONNX_OPSET,
                                                                  comment="torch.export and PyTorch's dynamo-based ONNX exporter")}
        if scripted is not None:
            torch.jit.save(scripted, str(staging / "weights.pt"))
            weights["torchscript"] = v0_5.TorchscriptWeightsDescr(source=staging / "weights.pt", pytorch_version=v0_5.Version(torch.__version__.split("+")[0]))
            weights["onnx"] = v0_5.OnnxWeightsDescr(source=onnx_path, opset_version=ONNX_OPSET, parent="torchscript",
                                                    comment="torch.export and PyTorch's dynamo-based ONNX exporter")
        input_axes, output_axes = _axes(parameters, minimum, step)
        description = v0_5.ModelDescr(
            name=name,
            description="SKOOTS 3-D instance segmentation network (mitochondria): embedding vectors, skeleton and object probability; decode with SKOOTS post-processing.",
            authors=[v0_5.Author(name=a) for a in AUTHORS],
            cite=[v0_5.CiteEntry(text=CITATION["text"], doi=v0_5.Doi(CITATION["doi"]))],
            license=v0_5.LicenseId("MIT"),
            documentation=v0_5.FileDescr(source=staging / "README.md"),
            tags=["3d", "instance-segmentation", "mitochondria", "electron-microscopy", "skoots"],
            inputs=[v0_5.InputTensorDescr(id=v0_5.TensorId(INPUT_ID), description="one channel of intensities", axes=input_axes,
                                          test_tensor=v0_5.FileDescr(source=staging / "test_input.npy"), preprocessing=_preprocessing(parameters))],
            outputs=[v0_5.OutputTensorDescr(id=v0_5.TensorId(OUTPUT_ID), description="vectors (3), skeleton, probability: decode with SKOOTS post-processing",
                                            axes=output_axes, test_tensor=v0_5.FileDescr(source=staging / "test_output.npy"))],
            weights=v0_5.WeightsDescr(**weights),
            config=v0_5.Config(**{SKOOTS_CONFIG_KEY: _constants(parameters, cfg_to_yaml(checkpoint.cfg))}),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = spec.save_bioimageio_package(description, output_path=staging / "package.zip")
        os.replace(packed, out)
    except OSError as e:
        raise ExportError(f"cannot write the zoo package {out}: {e.strerror or e} — choose a writable path") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ZooResult(out, parameters, sources, tuple(weights), minimum, step, tuple(notes))
