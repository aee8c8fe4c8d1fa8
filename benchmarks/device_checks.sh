#!/usr/bin/env bash
# The prepared checks for a session that is lent a GPU: one short script, run once (about 5 minutes on one GPU).
#   bash benchmarks/device_checks.sh      -> benchmarks/results/device_smoke.json and benchmarks/results/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv || true
python -m pip install -q -e . >/dev/null 2>&1 || true
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
  { (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || true; }
timeout 240 python benchmarks/device_smoke.py
timeout 240 python benchmarks/gpu.py --steps 30 --compile
