#!/usr/bin/env bash
# The default quality table, in parts that merge into benchmarks/results/fashion_mnist.json.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/quality.py --ipc 10
python benchmarks/quality.py --ipc 1 50 --methods wmdd random
python benchmarks/quality.py --ipc 10 --methods wmdd random --protocols hard
python benchmarks/quality.py --ipc 10 --methods none --full_data_epochs 3
