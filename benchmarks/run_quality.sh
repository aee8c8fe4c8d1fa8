#!/usr/bin/env bash
# The default quality table, in parts that merge into benchmarks/results/fashion_mnist.json.
set -euo pipefail
cd "$(dirname "$0")/.."
# Most important rows first, so that a part that runs out of time leaves the core comparison behind.
python benchmarks/quality.py --ipc 10 1 --methods wmdd random
python benchmarks/quality.py --ipc 10 --methods sre2l ablation_cross_entropy_per_class ablation_wasserstein_global \
    ablation_wasserstein_per_class ablation_cross_entropy_global herding kcenter barycenter_nearest_real
python benchmarks/quality.py --ipc 10 --methods wmdd random --protocols hard
python benchmarks/quality.py --ipc 50 --methods wmdd random
python benchmarks/quality.py --ipc 10 --methods none --full_data_epochs 3
