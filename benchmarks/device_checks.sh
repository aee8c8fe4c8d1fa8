#!/usr/bin/env bash
# The prepared checks for a session that is lent a GPU: one call of at most 10 minutes on one machine.
#
#   bash benchmarks/device_checks.sh gpu             # speed: gpu.py and imagenet_shape.py (about 5 minutes)
#   bash benchmarks/device_checks.sh                 # quality: gpu.py, then the declared experiments still missing
#   QUICK=1 DEVICE=cpu BUDGET=900 bash benchmarks/device_checks.sh [gpu]   # the same script, tiny, on a CPU
#
# 1. Setup. The GPU machine has no network: Python wheels missing there travel in .whl/ (datasets, POT, dill,
#    multiprocess, fsspec) and Fashion-MNIST's IDX files in .fmnist/ (both git-ignored, named in the call's carry).
#    Made here with (Python 3.12 wheels for that machine; POT 0.9.6.post1 is 1.5 MB where 0.9.7 is 33 MB):
#      mkdir -p .fmnist && cp /usr/share/datasets/fashion-mnist/* .fmnist/
#      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#        datasets==5.2.0 POT==0.9.6.post1 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
# 2. benchmarks/gpu.py alone (its timings need a quiet GPU) while the dataset cache is built; with `gpu`, then
#    benchmarks/imagenet_shape.py (statistics pass with GPU decoding, end to end, projection), and nothing else.
# 3. Run the declared experiments still missing (benchmarks/run_experiments.py), in lanes that run in parallel on
#    the one GPU, each into its own results file under $RESULTS; afterwards, here:
#      python benchmarks/merge_results.py <the files under $RESULTS> && python benchmarks/report.py
#    Every command stops at the deadline (BUDGET seconds after the start); whatever finished is in the files. The
#    earlier hand-written lanes are in git history.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${BUDGET:-540}
END=$((START + BUDGET))
DEVICE=${DEVICE:-cuda}
RESULTS=${RESULTS:-outputs/device-results}
WORK=${WORK:-outputs/device-work}
mkdir -p "$RESULTS" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

MODE=${1:-quality}
if [ -n "${QUICK:-}" ]; then  # tiny sizes: checks the plumbing, measures nothing
  SYN="--iterations 3 --limit_train 1000 --student_steps 12"; GPU="--steps 1 --repeats 1 --size 32 --batches 20 --profile"
  SHAPE="--classes 3 --per_class 10 --size 32 --iterations 2 --num_workers 0"
else
  SYN=""; GPU="--batches 100 200 500 --steps 10 --repeats 2 --compile --profile --budget_s 200"
  SHAPE="--iterations 30 --precision bf16 --channels_last --compile --num_workers 16"
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
if [ "$MODE" = gpu ]; then
  run python3 benchmarks/gpu.py --device "$DEVICE" $GPU --results "$RESULTS/gpu.json" 2>&1 | tee "$RESULTS/gpu.log"
  run python3 benchmarks/imagenet_shape.py --device "$DEVICE" $SHAPE --work_dir "$WORK/imagenet-shape" \
    --results "$RESULTS/imagenet_shape.json" 2>&1 | tee "$RESULTS/imagenet_shape.log"
  echo "gpu checks done after $(($(date +%s) - START)) s"
  exit 0
fi
python3 -c "from wmdd_hf import load_fashion_mnist; load_fashion_mnist()" >"$RESULTS/cache.log" 2>&1 &
CACHE=$!
timeout 200 python3 benchmarks/gpu.py --device "$DEVICE" $GPU --results "$RESULTS/gpu.json" >"$RESULTS/gpu.log" 2>&1
wait $CACHE

# ---- 3. lanes: the declared experiments still missing ------------------------------------------------------------
# Every row is a file under benchmarks/fashion_mnist/experiments/; `python benchmarks/run_experiments.py` lists the
# missing ones. A lane runs those matching a glob, one after another, into its own results file (a copy of
# benchmarks/results/fashion_mnist.json, so rows already there are skipped); the lanes run in parallel on the one GPU.
part() { cp benchmarks/results/fashion_mnist.json "$RESULTS/$1.json"; }
experiments() {  # experiments NAME GLOB
  part "$1"
  run python3 benchmarks/run_experiments.py --run --only "$2" --device "$DEVICE" --results "$RESULTS/$1.json" \
    --work_dir "$WORK/$1" --quality_args "$SYN"
}
lane_ipc50() { experiments ipc50 '*-ipc50-*'; }
lane_latent() { experiments latent 'wmdd_latent*'; }
lane_ipc10() { experiments ipc10 '*-ipc10-*'; }

for lane in ${LANES:-ipc50 latent ipc10}; do
  "lane_$lane" >"$RESULTS/lane-$lane.log" 2>&1 &
done
wait
echo "all lanes done after $(($(date +%s) - START)) s"
grep -h "START\|END\|SKIPPED\|^+" "$RESULTS"/lane-*.log | sort -k2 | tail -60
