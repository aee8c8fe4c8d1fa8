#!/usr/bin/env bash
# The synthesis sweep at IPC 10, on validation (OMP_NUM_THREADS=1 bash benchmarks/run_sweep.sh). Points one by one,
# most informative first; each merges into benchmarks/results/sweep.{json,md} (a point already there is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
S="python benchmarks/sweep.py --ipc 10"
$S --grid '{"loss_scale": ["sum"], "bn_weight": [0.1, 10.0]}'
$S --grid '{"loss_scale": ["mean"], "bn_weight": [1.0]}'
$S --grid '{"loss_scale": ["sum"], "bn_weight": [0.1], "feature_view": ["clean"]}'
$S --grid '{"recipe": ["official"]}'
$S --grid '{"loss_scale": ["mean"], "bn_weight": [10.0, 100.0]}'
$S --grid '{"init": ["patches"]}'
$S --grid '{"loss_scale": ["sum"], "bn_weight": [0.1], "init": ["real"]}'
$S --grid '{"loss_scale": ["sum"], "bn_weight": [1.0]}'
