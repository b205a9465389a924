"""Triton Python-backend model: runs the exported ``model.pt`` with torch.

Export copies this file to ``<repository>/<name>/1/model.py`` for servers without the libtorch
backend (such as the ``tritonserver`` inside the ``nvidia-pytriton`` wheel). It must import
nothing from this project: the server loads it on its own.
"""

import json
import os
import re

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

_INPUT = "input__0"
_OUTPUTS = ("vectors__0", "skeleton__1", "probability__2")


def _release(version):
    """MAJOR.MINOR of a torch version; as torch_compat.release in the export package, which
    this file cannot import (the server loads it on its own)."""
    found = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _check_torch_version(args):
    """Refuse, in one line, a model.pt saved by a newer torch than this one: it would fail
    deep inside torch.jit.load, or load and misbehave."""
    config = json.loads(args["model_config"])
    saved = config.get("parameters", {}).get("torch_version", {}).get("string_value", "")
    running = torch.__version__
    if saved and _release(saved) and _release(running) and _release(saved) > _release(running):
        raise RuntimeError(
            f"model '{args['model_name']}' was exported with torch {saved}, newer than the torch {running} serving it; "
            f"TorchScript loads only in the release that saved it or a newer one — use torch {'.'.join(map(str, _release(saved)))} "
            f"or newer to serve it, or export it with torch {running}"
        )


class TritonPythonModel:
    def initialize(self, args):
        _check_torch_version(args)
        gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        if not gpu:
            torch.set_num_threads(max(1, int(os.environ.get("SKOOTS_TORCH_THREADS", os.cpu_count() or 1))))
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, _INPUT).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = torch.from_numpy(np.concatenate(arrays)).to(self.device)
        with torch.inference_mode():
            outputs = [o.cpu().numpy() for o in self.model(batch)]
        responses = []
        start = 0
        for request, size in zip(requests, sizes):
            wanted = set(request.requested_output_names()) or set(_OUTPUTS)
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                for name, out in zip(_OUTPUTS, outputs)
                if name in wanted
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
