"""A server whose model answers with outputs short of their bytes — what the wheel's
Python-backend stub does with NumPy 2 in its environment: right shapes, zero bytes — is one
``error:`` line naming the model and the server, in memory, blockwise and in ``bench``; never a
reshape traceback and never labels from missing data. The server is a real tritonserver
serving a Python-backend model whose ``execute`` returns empty vectors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import serving

CLIENT = str(Path(sys.executable).parent / "skoots-client")

EMPTY_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers every request with the skeleton and probability in full, and vectors of no bytes."""

    def execute(self, requests):
        responses = []
        for request in requests:
            n, _, x, y, z = pb_utils.get_input_tensor_by_name(request, "input__0").as_numpy().shape
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("vectors__0", np.zeros((n, 3, x, y, 0), np.float16)),
                pb_utils.Tensor("skeleton__1", np.zeros((n, 1, x, y, z), np.uint8)),
                pb_utils.Tensor("probability__2", np.zeros((n, 1, x, y, z), np.float16)),
            ]))
        return responses
'''


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path):
    """The e2e model's config (it speaks the contract) with the empty-answering model.py."""
    root = tmp_path_factory.mktemp("empty") / "repository"
    shutil.copytree(e2e_repository / "skoots", root / "skoots", ignore=shutil.ignore_patterns("*.bin", "*.xml", "*.pt"))
    (root / "skoots" / "1" / "model.py").write_text(EMPTY_MODEL)
    yield from serving(root)


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def expected_line(url: str, batch: int) -> str:
    return (f"error: {url}/skoots answered with vectors__0 of 0 bytes (FP16 [{batch}, 3, 24, 24, 0]) where "
            f"FP16 [{batch}, 3, 24, 24, 8] needs {batch * 3 * 24 * 24 * 8 * 2:,} — its model is broken; a Python-backend model "
            "answers with empty outputs when its environment has NumPy 2: check the server's log, or restart it with "
            "skoots serve (which checks its environment)")


@pytest.mark.parametrize("mode", ["in-memory", "blockwise"])
def test_segment_stops_in_one_line_and_writes_nothing(empty_server, mode: str, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.random.default_rng(0).integers(0, 255, (8, 24, 24), dtype=np.uint8))
    out = tmp_path / ("o.tif" if mode == "in-memory" else "o.zarr")
    extra = ["--blockwise", "--workers", "1", "-q"] if mode == "blockwise" else []
    result = run_client("segment", str(tmp_path / "v.tif"), "--out", str(out), "--url", empty_server.grpc_url, "--device", "cpu", *extra)
    assert result.returncode == 2, result.stderr
    line = expected_line(empty_server.grpc_url, 1)
    if mode == "blockwise":
        line += " — with --resume a run keeps its finished blocks and a rerun continues from them"
    assert result.stderr == line + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.tif"]


def test_bench_stops_in_one_line(empty_server) -> None:
    result = run_client("bench", "--url", empty_server.grpc_url, "--concurrency", "1", "--batch", "2", "--duration", "0.3",
                        "--warmup", "0.1", "--max-windows", "3", "--quiet")
    assert result.returncode == 2, result.stderr
    assert result.stderr == expected_line(empty_server.grpc_url, 2) + "\n" and result.stdout == ""
