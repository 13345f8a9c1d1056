#!/usr/bin/env bash
# GPU check (one CUDA device, under 5 minutes): the paper preset's training samples/s and inference ms per frame of
# 6 objects, in fp32, AMP, channels-last, compiled and CUDA-graph variants; one epoch of street training at the paper
# width through the pipeline; fit inside an nccl process group. CI never has a GPU: run it by hand where one is.
#   bash scripts/gpu_check.sh            # with the project installed (pip install -e .), or from the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec timeout 300 "$PY" scripts/gpu_check.py
