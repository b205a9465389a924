#!/usr/bin/env bash
# Verify the GPU paths on a machine with an NVIDIA GPU in one call: every `gpu` test (CuPy
# post-processing; the embedded runtime's CUDA branch), `segment` without --url choosing CUDA,
# then post-processing timed on NumPy and CuPy side by side.
#
#   bash benchmarks/gpu_check.sh [WHEELHOUSE]
#
# WHEELHOUSE (default .whl) holds wheels for what the GPU machine lacks (e.g. cupy-cuda12x,
# cc3d, fastremap, numba, zarr, tifffile, tritonclient, typer, openvino — export writes the IR
# with it); they are installed offline
# with --no-deps. See the device tool's README for how to download them for that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-.whl}
site=/tmp/skoots-gpu-site
if compgen -G "$wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -m pip install -q --no-deps --no-build-isolation --target "$site" . 2>/dev/null \
  || python3 -m pip install -q --no-deps --target "$site" .
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'GPU(s)')"
python3 -m pytest -m gpu -q -p no:cacheprovider tests/client
# The embedded runtime: auto must run TorchScript on the GPU (FP16 autocast) and say so.
gpu_run=/tmp/skoots-gpu-embedded
rm -rf "$gpu_run" && mkdir -p "$gpu_run"
python3 -m skoots_export.cli export examples/demo_model.trch -r "$gpu_run/repo" --backend libtorch --crop 136,136,48 --overlap 8,8,4 >/dev/null
python3 -m examples.synthetic "$gpu_run/demo.tif" --seed 7 --shape 256,256,48 >/dev/null
python3 -c "from skoots_client.cli import main; main()" segment "$gpu_run/demo.tif" -r "$gpu_run/repo" --out "$gpu_run/labels.tif" \
  | tee /dev/stderr | grep -q "inference in-process: TorchScript on CUDA (FP16 autocast)"
python3 benchmarks/postprocess_timing.py
