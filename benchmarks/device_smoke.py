"""Device smoke check: distil a few Fashion-MNIST classes and evaluate them on the accelerator, in under 2 minutes.

    python benchmarks/device_smoke.py            # CUDA when present (exits 0 with a note when there is none)
    python benchmarks/device_smoke.py --device cpu

It checks what no CPU run can: that statistics, synthesis, soft labels and students all run on the accelerator's
device (teacher, student and batches together) and that the result is sane. Writes
``benchmarks/results/device_smoke.json`` with the device name, the stage times and the accuracies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import DistillationArguments, Distiller, load_backbone, load_fashion_mnist  # noqa: E402
from wmdd_hf.data import class_index  # noqa: E402
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_name, pick_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="Default: cuda when available.")
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument("--per_class", type=int, default=1000)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "device_smoke.json"))
    args = p.parse_args()
    device = pick_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return
    start = time.time()
    data = load_fashion_mnist()
    index = class_index(data["train"], "label")
    train = data["train"].select(sorted(int(r) for k in index for r in index[k][: args.per_class]))
    test = data["test"]
    teacher = load_backbone(args.teacher).freeze().to(device)
    with tempfile.TemporaryDirectory() as out:
        d = Distiller(
            teacher,
            DistillationArguments(
                output_dir=out,
                images_per_class=10,
                iterations=200,
                soft_label_epochs=2,
                disable_tqdm=True,
                save_plots=False,
            ),
            train,
            eval_dataset=test,
        )
        distilled = d.distill()
        stages = d.metrics
        config = EvaluationConfig(steps=300, progress=False)
        online = evaluate_distilled(distilled, test, teacher=teacher, config=config, seeds=(0,), device=device)
        stored = evaluate_distilled(
            str(Path(out) / "distilled"), test, config=config, seeds=(0,), use_stored_soft_labels=True, device=device
        )
    result = {
        "command": "python benchmarks/device_smoke.py " + " ".join(sys.argv[1:]),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "accelerator_device": str(d.accelerator.device),
        "stage_seconds": {k: v for k, v in stages.items() if k.endswith("_s")},
        "teacher_agreement": stages.get("teacher_agreement"),
        "online_kd_acc": online["acc_mean"],
        "stored_kd_acc": stored["acc_mean"],
        "seconds_per_student_step": online["seconds_per_step"],
        "wall_seconds": round(time.time() - start, 1),
    }
    print(json.dumps(result, indent=2))
    ok = result["teacher_agreement"] > 0.5 and result["online_kd_acc"] > 0.5 and result["stored_kd_acc"] > 0.3
    Path(args.results).write_text(json.dumps({**result, "passed": ok}, indent=2))
    if not ok:
        raise SystemExit("device smoke check FAILED: accuracies too low (see above)")


if __name__ == "__main__":
    main()
