"""The Triton model config of one exported variant (backend, device, batching, warm-up),
built around the wire contract of `skoots_export.contract.wire`."""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2 as pb

from .contract.activation import MAX_TILE_VOXELS
from .contract.choices import Backend, Device
from .contract.wire import INPUT, OUTPUTS, TORCH_VERSION, ModelParameters, TensorSpec

__all__ = ["build_model_config"]


def _tensor(spec: TensorSpec, message: Any) -> None:
    message.name = spec.name
    message.data_type = pb.DataType.Value(spec.data_type)
    message.dims.extend(spec.dims)


def build_model_config(
    name: str,
    *,
    backend: Backend,
    device: Device,
    max_batch_size: int,
    parameters: ModelParameters,
    cfg_yaml: str,
    instances: int = 1,
    torch_version: str | None = None,
    max_tile_voxels: int | None = None,
) -> pb.ModelConfig:
    """The Triton ``ModelConfig`` for one variant of an exported model.

    Dynamic batching is on; the model is warmed up at the crop shape with batch 1 and with
    ``max_batch_size`` (TorchScript re-optimises for every new input shape). ``torch_version``
    is the torch that wrote ``model.pt``: a runtime older than it may not load the file.

    ``Device.GPU`` gives the Python-backend model ``KIND_AUTO``: Triton places it on a GPU where
    there is one, else on the CPU (a ``KIND_GPU`` group fails to load on a machine without one).

    Triton's ``openvino`` backend runs the IR on the CPU only, and compiles it for a batch of
    exactly ``max_batch_size`` (smaller batches fail unless ``ENABLE_BATCH_PADDING``, which pads
    them and runs the padded batch as one): its model takes ``max_batch_size`` 1, so every crop
    runs alone as on the other runtimes ("Batch independence" in docs/SEMANTICS.md), and needs no batcher.
    The ONNX Runtime model (``onnxruntime`` backend, ``model.onnx``) takes ``max_batch_size`` 1 for the
    same reason, on the instance kind ``device`` asks for.
    """
    if backend is Backend.OPENVINO:
        max_batch_size, device = 1, Device.CPU
    if backend is Backend.ONNX:  # the graph takes any batch; one crop per request keeps answers batch-independent
        max_batch_size = 1
    config = pb.ModelConfig(name=name, max_batch_size=max_batch_size)
    if backend is Backend.LIBTORCH:
        config.platform = "pytorch_libtorch"
        config.parameters["INFERENCE_MODE"].string_value = "true"
    elif backend is Backend.ONNX:
        config.backend = "onnxruntime"  # reads <version>/model.onnx
    else:
        config.backend = backend.value
    _tensor(INPUT, config.input.add())
    for spec in OUTPUTS:
        _tensor(spec, config.output.add())
    group = config.instance_group.add()
    group.count = instances
    if device is Device.CPU:
        group.kind = pb.ModelInstanceGroup.KIND_CPU
    elif backend is Backend.PYTHON:
        # On the GPU where the server has one, else on the CPU (running the IR): so a default
        # export loads on the CPU-only server that the nvidia-pytriton wheel carries.
        group.kind = pb.ModelInstanceGroup.KIND_AUTO
    else:
        group.kind = pb.ModelInstanceGroup.KIND_GPU
    if backend not in (Backend.OPENVINO, Backend.ONNX):
        config.dynamic_batching.max_queue_delay_microseconds = 1000
    for batch in sorted({1, max_batch_size}):
        warmup = config.model_warmup.add()
        warmup.name = f"crop_batch{batch}"
        warmup.batch_size = batch
        data = warmup.inputs[INPUT.name]
        data.data_type = pb.DataType.Value(INPUT.data_type)
        data.dims.extend((1, *parameters.crop))
        data.zero_data = True
    for key, value in parameters.to_strings().items():
        config.parameters[key].string_value = value
    config.parameters["skoots_cfg"].string_value = cfg_yaml
    if torch_version is not None:
        config.parameters[TORCH_VERSION].string_value = torch_version
    if max_tile_voxels is not None:  # the largest tile a client's --tile auto sends (skoots_export.contract.activation)
        config.parameters[MAX_TILE_VOXELS].string_value = str(max_tile_voxels)
    return config
