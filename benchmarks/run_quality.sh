#!/usr/bin/env bash
# The quality table under the validation protocol, in parts that merge into benchmarks/results/fashion_mnist.json.
# Most important first: budgets, then the core rows (wmdd, random, a real coreset) at IPC 10 and 1, then the rows
# behind ARS / HLR / the ablations, then IPC 50. Students run on one thread so that the other core stays free:
#   OMP_NUM_THREADS=1 bash benchmarks/run_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
Q="python benchmarks/quality.py"
$Q --stage budget --ipc 10
$Q --stage budget --ipc 1
$Q --ipc 10 --methods wmdd random --seeds 0 1 2
$Q --ipc 1 --methods wmdd random barycenter_nearest_real --seeds 0 1 2
$Q --ipc 10 --methods barycenter_nearest_real herding --seeds 0 1 2
$Q --ipc 10 --methods wmdd random --no_augment --seeds 0 1 2
$Q --ipc 10 --methods wmdd --unweighted --seeds 0 1 2
$Q --ipc 10 --methods wmdd random --protocols hard --seeds 0 1 2
$Q --ipc 10 --methods kcenter ablation_cross_entropy_per_class ablation_wasserstein_global sre2l --seeds 0 1 2
$Q --ipc 1 --methods herding --seeds 0 1 2
$Q --stage budget --ipc 50
$Q --ipc 50 --methods wmdd random barycenter_nearest_real herding --seeds 0 1 2
