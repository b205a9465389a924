#!/usr/bin/env bash
# The main job in one command: install (into .venv, once), export the committed demo model,
# generate a held-out synthetic volume with ground truth, segment it in-process (no server),
# score it against the ground truth and write a PNG preview. Options go to examples/demo.py
# (--out DIR, --seed N, --shape X,Y,Z).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch, matplotlib, openvino, skoots_export, skoots_client" 2>/dev/null; then
    echo "installing torch 2.13.0 (CPU) and the project into .venv"
    python -m pip install --quiet --quiet --upgrade pip      # -qq: errors only
    # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
    python -m pip install --quiet --quiet torch==2.13.0
    python -m pip install --quiet --quiet .
fi
exec python -m examples.demo "$@"
