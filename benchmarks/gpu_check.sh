#!/usr/bin/env bash
# Verify the CuPy path on a machine with an NVIDIA GPU in one call: every `gpu` test, then
# post-processing timed on NumPy and CuPy side by side.
#
#   bash benchmarks/gpu_check.sh [WHEELHOUSE]
#
# WHEELHOUSE (default .whl) holds wheels for what the GPU machine lacks (e.g. cupy-cuda12x,
# cc3d, fastremap, numba, zarr, tifffile, tritonclient, typer); they are installed offline
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
python3 benchmarks/postprocess_timing.py
