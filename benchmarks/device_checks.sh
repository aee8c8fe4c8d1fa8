#!/usr/bin/env bash
# The prepared checks for a session that is lent a GPU: one call of at most 10 minutes on one machine.
#
#   bash benchmarks/device_checks.sh                 # on the GPU machine, from the repository root
#   QUICK=1 DEVICE=cpu BUDGET=900 bash benchmarks/device_checks.sh   # the same script, tiny, to check it on a CPU
#
# 1. Setup. The GPU machine has no network: Python wheels missing there travel in .whl/ (datasets, POT, dill,
#    multiprocess, fsspec) and Fashion-MNIST's IDX files in .fmnist/ (both git-ignored, named in the call's carry).
# 2. benchmarks/gpu.py alone (its timings need a quiet GPU) while the dataset cache is built.
# 3. Lanes in parallel, one process each on the one GPU, each a sequence of benchmark commands that merge into
#    their own results file under $RESULTS (merged into benchmarks/results/ afterwards by merge_results.py):
#      refs   device smoke check; full-data students (soft and hard)
#      sweep10  the synthesis grid at IPC 10 on validation (3 seeds, validated budget) -> best10.chosen.json
#      rows10   then the wmdd rows at IPC 10 with that point (soft, hard, no augmentation, unweighted), the ablations
#      base10 random / herding / k-center / nearest-to-barycenter at IPC 10 (soft), random hard and unaugmented
#      ipc50  budget at IPC 50, the real baselines, then wmdd with best10.json
#      ipc1   budget at IPC 1 (8x the old), the real baselines
#      sweep1 the grid at IPC 1 (inits, lambda) -> best1.json, then wmdd at IPC 1 with it
#    Every command stops at the deadline (BUDGET seconds after the start); whatever finished is in the files.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${BUDGET:-540}
END=$((START + BUDGET))
DEVICE=${DEVICE:-cuda}
RESULTS=${RESULTS:-outputs/device-results}
WORK=${WORK:-outputs/device-work}
mkdir -p "$RESULTS" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

if [ -n "${QUICK:-}" ]; then  # tiny sizes: checks the plumbing, measures nothing
  SYN="--iterations 3 --limit_train 1000 --student_steps 12"; SW="--iterations 3 --student_steps 6 --limit_train 1000"; SW1="$SW"
  B50="--budget_steps 12"; B1="--budget_steps 12"; FULL="--full_data_steps 12 --full_data_hard_steps 12"
  SMOKE="--per_class 50"; GPU="--steps 2 --size 32 --classes 2 --ipc 2"
else
  SYN=""; SW="--student_steps 1200"; SW1="--student_steps 4000"
  B50="--budget_factor 8"; B1="--budget_factor 8"; FULL="--full_data_steps 16000 --full_data_hard_steps 8000"
  SMOKE=""; GPU="--steps 20 --compile"
fi

run() {  # run CMD... with what is left of the budget; skipped near the deadline
  local left=$((END - $(date +%s) - 10))
  if [ "$left" -le 20 ]; then echo "SKIPPED (deadline): $*"; return 1; fi
  echo "START $(date +%T) $*"
  timeout "$left" "$@"
  local rc=$?
  echo "END $(date +%T) rc=$rc $*"
  return $rc
}

wait_for() {  # wait until file $1 exists (or the deadline)
  while [ ! -f "$1" ] && [ $(($(date +%s) + 30)) -lt "$END" ]; do sleep 3; done
  [ -f "$1" ]
}

# ---- 1. setup --------------------------------------------------------------------------------------------------
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -d .fmnist ]; then
  export WMDD_HF_FASHION_MNIST_DIR=$PWD/.fmnist
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, datasets, ot, timm, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'datasets', datasets.__version__, 'POT', ot.__version__)"

# ---- 2. gpu.py alone, the dataset cache meanwhile --------------------------------------------------------------
python3 -c "from wmdd_hf import load_fashion_mnist; load_fashion_mnist()" >"$RESULTS/cache.log" 2>&1 &
CACHE=$!
timeout 200 python3 benchmarks/gpu.py --device "$DEVICE" $GPU --results "$RESULTS/gpu.json" >"$RESULTS/gpu.log" 2>&1
wait $CACHE

# ---- 3. lanes ----------------------------------------------------------------------------------------------------
for part in refs base10 ipc50 ipc1; do  # quality parts start from the main file (its budgets); sweeps start empty
  cp benchmarks/results/fashion_mnist.json "$RESULTS/$part.json"
done
Q="python3 benchmarks/quality.py --device $DEVICE $SYN"

lane_refs() {
  run python3 benchmarks/device_smoke.py --device "$DEVICE" $SMOKE --results "$RESULTS/device_smoke.json"
  run $Q --stage full_data --protocols soft hard $FULL --results "$RESULTS/refs.json" --work_dir "$WORK/refs"
}

lane_sweep10() {  # the grid, most informative points first; best10.chosen.json is fixed once the core points ran
  local S="python3 benchmarks/sweep.py --ipc 10 --device $DEVICE --seeds 0 1 2 $SW --work_dir $WORK/sweep10"
  S="$S --results $RESULTS/sweep10.json --best_out $RESULTS/best10.json"
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [10.0, 100.0]}'
  run $S --grid '{"loss_scale": ["sum"], "bn_weight": [0.1]}'
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [100.0], "statistics_view": ["augmented"]}'
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [100.0], "init": ["patches"]}'
  cp "$RESULTS/best10.json" "$RESULTS/best10.chosen.json" && touch "$RESULTS/best10.done"
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [10.0], "statistics_view": ["augmented"]}'
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [100.0], "init": ["real"]}'
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [1000.0]}'
  run $S --grid '{"recipe": ["official"]}'
}

lane_rows10() {  # the wmdd rows at IPC 10 with the chosen point
  wait_for "$RESULTS/best10.done" || return 1
  cp benchmarks/results/fashion_mnist.json "$RESULTS/rows10.json"
  local W="--results $RESULTS/rows10.json --work_dir $WORK/rows10 --synthesis $RESULTS/best10.chosen.json"
  run $Q --ipc 10 --methods wmdd --seeds 0 1 2 $W
  run $Q --ipc 10 --methods wmdd --protocols hard --seeds 0 1 2 $W
  run $Q --ipc 10 --methods ablation_cross_entropy_per_class ablation_wasserstein_global --seeds 0 1 2 $W
  run $Q --ipc 10 --methods wmdd --no_augment --seeds 0 1 2 $W
  run $Q --ipc 10 --methods wmdd --unweighted --seeds 0 1 2 $W
  run $Q --ipc 10 --methods sre2l --seeds 0 1 2 $W
}

lane_base10() {
  local W="--results $RESULTS/base10.json --work_dir $WORK/base10"
  run $Q --ipc 10 --methods random herding kcenter --seeds 0 1 2 $W
  run $Q --ipc 10 --methods random --protocols hard --seeds 0 1 2 $W
  run $Q --ipc 10 --methods random --no_augment --seeds 0 1 2 $W
  run $Q --ipc 10 --methods barycenter_nearest_real --seeds 0 1 2 $W
}

lane_ipc50() {
  local W="--results $RESULTS/ipc50.json --work_dir $WORK/ipc50"
  run $Q --stage budget --ipc 50 $B50 $W
  run $Q --ipc 50 --methods random herding kcenter --seeds 0 1 2 $W
  wait_for "$RESULTS/best10.done" && run $Q --ipc 50 --methods wmdd --seeds 0 1 2 $W --synthesis "$RESULTS/best10.chosen.json"
  run $Q --ipc 50 --methods barycenter_nearest_real --seeds 0 1 2 $W
}

lane_ipc1() {
  local W="--results $RESULTS/ipc1.json --work_dir $WORK/ipc1"
  run $Q --stage budget --ipc 1 $B1 $W && touch "$RESULTS/budget1.done"
  run $Q --ipc 1 --methods random herding kcenter barycenter_nearest_real --seeds 0 1 2 $W
}

lane_sweep1() {
  local S="python3 benchmarks/sweep.py --ipc 1 --device $DEVICE --seeds 0 1 2 $SW1 --work_dir $WORK/sweep1"
  S="$S --results $RESULTS/sweep1.json --best_out $RESULTS/best1.json"
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [100.0], "init": ["patches", "noise"]}'
  run $S --grid '{"loss_scale": ["sum"], "bn_weight": [0.1], "init": ["noise", "patches"]}'
  run $S --grid '{"loss_scale": ["mean"], "bn_weight": [100.0], "init": ["real"]}'
  # wmdd at IPC 1 with its own best point, at the budget the ipc1 lane chose (in its results file)
  wait_for "$RESULTS/budget1.done" || return 1
  python3 - "$RESULTS/ipc1.json" "$RESULTS/sweep1-rows.json" <<'EOF'
import json, sys
src, dst = json.load(open(sys.argv[1])), json.load(open("benchmarks/results/fashion_mnist.json"))
dst.setdefault("protocol", {}).setdefault("steps", {})["1"] = src["protocol"]["steps"]["1"]
dst.setdefault("budget", {})["1"] = src["budget"]["1"]
json.dump(dst, open(sys.argv[2], "w"), indent=2)
EOF
  run $Q --ipc 1 --methods wmdd --seeds 0 1 2 --results "$RESULTS/sweep1-rows.json" --work_dir "$WORK/sweep1-rows" \
    --synthesis "$RESULTS/best1.json"
}

for lane in ${LANES:-refs sweep10 rows10 base10 ipc50 ipc1 sweep1}; do
  "lane_$lane" >"$RESULTS/lane-$lane.log" 2>&1 &
done
wait
echo "all lanes done after $(($(date +%s) - START)) s"
grep -h "START\|END\|SKIPPED" "$RESULTS"/lane-*.log | sort -k2 | tail -60
