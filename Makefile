# The two commands of the README: `make demo` (the main job) and `make test` (the suite; .ci/run calls it).
PYTHON ?= python3
TEACHER := checkpoints/fashion-mnist-convnet64

.PHONY: install data demo test lint format benchmark

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

# Debian's Fashion-MNIST (the embedded default); skipped when present, or when apt is not available.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "apt-get not available: Fashion-MNIST will be loaded from the Hub if reachable"; fi; \
	fi

# Distil Fashion-MNIST at 10 images per class with the project's teacher (trains it first if missing), with the
# recipe chosen on the validation split (configs/fashion_mnist_ipc10.yaml: start from real images, 200 steps).
demo: install data
	@[ -f $(TEACHER)/model.safetensors ] || $(PYTHON) examples/train_teacher.py --output_dir $(TEACHER)
	accelerate launch --quiet --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no examples/distill.py \
	  --config configs/fashion_mnist_ipc10.yaml

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

test: install data lint
	$(PYTHON) -m pytest -q --durations=10

benchmark: install data
	$(PYTHON) benchmarks/speed.py
	OMP_NUM_THREADS=1 $(PYTHON) benchmarks/run_experiments.py --run && $(PYTHON) benchmarks/report.py
