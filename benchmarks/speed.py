"""Where the time goes, measured side by side on the same inputs in one run.

    python benchmarks/speed.py            # writes benchmarks/results/speed.json

* statistics: the one-pass stage (features + per-class norm moments together) against a two-pass version (a
  features pass, then a norm-statistics pass, as the public reference code does), over the Fashion-MNIST train split.
* barycenter: every class of the real teacher features; ours in ``uniform`` mode against POT's
  ``ot.lp.free_support_barycenter`` from the same k-means++ start, and ours in ``learned`` mode; W2^2 costs by
  ``ot.emd2``.
* synthesis: image-iterations per second with all classes in one batch against one class at a time.
* end_to_end: the default IPC 10 run (``examples/distill.py`` defaults), per stage.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import ot
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import DistillationArguments, Distiller, load_backbone, load_fashion_mnist  # noqa: E402
from wmdd_hf.barycenter import kmeans_plus_plus, w2_cost, wasserstein_barycenter  # noqa: E402
from wmdd_hf.data import decode_all  # noqa: E402
from wmdd_hf.statistics import collect_class_statistics  # noqa: E402
from wmdd_hf.synthesis import NormTargets, SynthesisConfig, synthesize_batch  # noqa: E402

TEACHER = ROOT / "checkpoints" / "fashion-mnist-convnet64"


def batches(images, labels, size=500):
    return [
        (images[s : s + size], labels[s : s + size], torch.arange(s, min(s + size, len(images))))
        for s in range(0, len(images), size)
    ]


def bench_statistics(teacher, images, labels) -> tuple[dict, object]:
    data = batches(images, labels)
    collect_class_statistics(teacher, data[:4], 10)  # warm-up
    start = time.perf_counter()
    stats = collect_class_statistics(teacher, data, 10)
    one = time.perf_counter() - start
    start = time.perf_counter()
    collect_class_statistics(teacher, data, 10, norm_kinds=())  # pass 1: features only
    collect_class_statistics(teacher, data, 10)  # pass 2: norm statistics (features discarded)
    two = time.perf_counter() - start
    return {
        "one_pass_s": round(one, 2),
        "two_pass_s": round(two, 2),
        "ratio": round(one / two, 3),
        "images": len(images),
    }, stats


def bench_barycenter(stats, m: int = 10) -> dict:
    out = {"ours_s": 0.0, "pot_s": 0.0, "learned_s": 0.0, "ours_w2": 0.0, "pot_w2": 0.0, "learned_w2": 0.0}
    for k in range(10):
        f = stats.features[k].numpy().astype(np.float64)
        start_points = kmeans_plus_plus(f, m, seed=k)
        t = time.perf_counter()
        ours = wasserstein_barycenter(f, m, weights="uniform", init=start_points)
        out["ours_s"] += time.perf_counter() - t
        t = time.perf_counter()
        pot = ot.lp.free_support_barycenter([f], [np.full(len(f), 1 / len(f))], start_points.copy())
        out["pot_s"] += time.perf_counter() - t
        t = time.perf_counter()
        learned = wasserstein_barycenter(f, m, weights="learned", init=start_points)
        out["learned_s"] += time.perf_counter() - t
        out["ours_w2"] += w2_cost(f, ours.positions) / 10
        out["pot_w2"] += w2_cost(f, pot) / 10
        out["learned_w2"] += w2_cost(f, learned.positions, learned.weights) / 10
    out = {k: round(v, 4) for k, v in out.items()}
    out["speedup_vs_pot"] = round(out["pot_s"] / out["ours_s"], 2)
    out["w2_excess_vs_pot"] = round(out["ours_w2"] / out["pot_w2"] - 1, 5)
    out["setting"] = (
        f"10 classes x {len(stats.features[0])} features x {stats.features[0].shape[1]} dims, m = {m}, same k-means++ start"
    )
    return out


def bench_synthesis(teacher, stats, iterations: int = 30, ipc: int = 10) -> dict:
    targets = NormTargets.from_moments(stats.norms, "per_class")
    config = SynthesisConfig(iterations=iterations, log_every=iterations)
    d = teacher.feature_dim

    def run(classes):
        n = len(classes) * ipc
        labels = torch.tensor([k for k in classes for _ in range(ipc)])
        points = torch.randn(n, d)
        start = time.perf_counter()
        synthesize_batch(
            teacher,
            torch.rand(n, 1, 28, 28),
            labels,
            points,
            torch.ones(n),
            targets,
            config,
            torch.Generator().manual_seed(0),
        )
        return n * iterations / (time.perf_counter() - start)

    run([0])  # warm-up
    batched = run(list(range(10)))
    per_class = float(np.mean([run([k]) for k in range(10)]))
    return {
        "batched_img_iter_per_s": round(batched, 1),
        "per_class_img_iter_per_s": round(per_class, 1),
        "ratio": round(batched / per_class, 2),
        "setting": f"IPC {ipc}, {iterations} steps, batch of 10 classes vs 1",
    }


def bench_end_to_end(data) -> dict:
    args = DistillationArguments(
        output_dir=str(ROOT / "outputs" / "speed-end-to-end"), overwrite_output_dir=True, disable_tqdm=True
    )
    start = time.perf_counter()
    distiller = Distiller(str(TEACHER), args, data["train"])
    distiller.distill()
    total = time.perf_counter() - start
    return {
        **{k: v for k, v in distiller.metrics.items() if k.endswith("_s")},
        "total_s": round(total, 1),
        "arguments": "DistillationArguments() defaults: IPC 10, 1000 iterations, batch 100",
    }


def main() -> None:
    torch.manual_seed(0)
    data = load_fashion_mnist()
    teacher = load_backbone(str(TEACHER)).freeze()
    images, labels = decode_all(data["train"], teacher.spec, "image", "label", progress=False)
    result = {
        "command": "python benchmarks/speed.py",
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "pot": ot.__version__,
    }
    result["statistics"], stats = bench_statistics(teacher, images, labels)
    print(json.dumps(result["statistics"]), flush=True)
    result["barycenter"] = bench_barycenter(stats)
    print(json.dumps(result["barycenter"]), flush=True)
    result["synthesis"] = bench_synthesis(teacher, stats)
    print(json.dumps(result["synthesis"]), flush=True)
    result["end_to_end"] = bench_end_to_end(data)
    print(json.dumps(result["end_to_end"]), flush=True)
    result["targets"] = {
        "one_pass <= 0.55 x two_pass": result["statistics"]["ratio"] <= 0.55,
        "uniform barycenter >= 2x faster than POT": result["barycenter"]["speedup_vs_pot"] >= 2,
        "uniform W2 <= 1% above POT": result["barycenter"]["w2_excess_vs_pot"] <= 0.01,
        "learned W2 below POT": result["barycenter"]["learned_w2"] < result["barycenter"]["pot_w2"],
        "default IPC 10 run <= 600 s": result["end_to_end"]["total_s"] <= 600,
    }
    out = ROOT / "benchmarks" / "results" / "speed.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["targets"], indent=2))


if __name__ == "__main__":
    main()
