"""Triton Python-backend model: runs the exported model on the instance's device.

Export copies this file to ``<repository>/<name>/1/model.py`` for servers without the libtorch
backend (such as the ``tritonserver`` inside the ``nvidia-pytriton`` wheel). It must import
nothing from this project: the server loads it on its own. On a ``KIND_CPU`` instance it runs
the OpenVINO IR (``model.xml``, in FP32: ``INFERENCE_PRECISION_HINT`` ``f32`` asked for
explicitly, and the precision compiled logged) when the version holds one and ``openvino``
imports, through ``openvino_runtime.py`` beside this file; otherwise ``model.pt`` with torch.
A version without ``model.pt`` (exported where TorchScript was unavailable) runs the IR on the
CPU on any instance.
"""

import importlib.util
import json
import os
import re

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

__all__ = ["numpy_problem", "TritonPythonModel"]

_INPUT = "input__0"
_OUTPUTS = ("vectors__0", "skeleton__1", "probability__2")


def _openvino_head(version_dir, threads):
    """The IR as a callable ``batch -> outputs``, or None when there is none or no openvino."""
    runtime_path = os.path.join(version_dir, "openvino_runtime.py")
    if not (os.path.isfile(os.path.join(version_dir, "model.xml")) and os.path.isfile(runtime_path)):
        return None
    if importlib.util.find_spec("openvino") is None:
        return None
    spec = importlib.util.spec_from_file_location("exported_openvino_runtime", runtime_path)
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    return runtime.OpenVinoHead(os.path.join(version_dir, runtime.IR_FILE), threads=threads, precision="fp32")


def _crop(args):
    """The model's crop [X, Y, Z] from its config's ``crop`` parameter, or None without one."""
    text = json.loads(args["model_config"]).get("parameters", {}).get("crop", {}).get("string_value", "")
    return tuple(int(v) for v in text.split(",")) if text else None


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


def numpy_problem(version):
    """Why NumPy ``version`` cannot run under the wheel's Python-backend stub, or None; as
    serve_environment.numpy_problem in the export package, which this file cannot import."""
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) >= 2:
        return (f"NumPy {version} in the server's Python: the Triton Python-backend stub works with NumPy 1.x only "
                "(this model would answer with empty outputs) — pip install 'numpy<2' in the environment that serves")
    return None


class TritonPythonModel:
    def initialize(self, args):
        problem = numpy_problem(np.__version__)
        if problem:
            raise RuntimeError(f"model '{args['model_name']}': {problem}")
        _check_torch_version(args)
        gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.openvino = None
        threads = max(1, int(os.environ.get("SKOOTS_TORCH_THREADS", os.cpu_count() or 1)))
        if not gpu:
            torch.set_num_threads(threads)
            self.openvino = _openvino_head(version_dir, threads)
        elif not os.path.isfile(os.path.join(version_dir, "model.pt")):
            # exported without TorchScript: the IR is all there is, and it runs on the CPU
            self.device = torch.device("cpu")
            self.openvino = _openvino_head(version_dir, threads)
        if self.openvino is None:
            self.model = torch.jit.load(os.path.join(version_dir, "model.pt"), map_location=self.device).eval()
        if self.openvino is not None:
            # Compiled now at the crop shape (the warm-up would compile it next), so the log
            # names the precision the CPU plugin computes in, read back, not the one asked for.
            runs = f"model.xml with OpenVINO {self.openvino.compiled_precision(_crop(args))} on CPU"
        else:
            runs = f"model.pt with torch on {self.device}"
        logger = getattr(pb_utils, "Logger", None)  # in servers from 23.04 on
        if logger is not None:
            logger.log_info(f"{args['model_name']} (instance {args['model_instance_name']}) runs {runs}")

    def _run(self, batch):
        if self.openvino is not None:
            return self.openvino(batch)
        with torch.inference_mode():
            return [o.cpu().numpy() for o in self.model(torch.from_numpy(batch).to(self.device))]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, _INPUT).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        outputs = self._run(np.concatenate(arrays))
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
