"""Stage cost against the teacher's own compute, measured side by side in one process (ratios survive a busy machine).

    OMP_NUM_THREADS=1 python benchmarks/overhead.py        # merges two ratios into benchmarks/results/speed.json

* ``statistics.overhead_vs_forward``: the statistics pass (features + per-class moments of every norm layer's input)
  over N decoded images, divided by a bare ``inference_mode`` teacher forward over the same images and batches.
  Target <= 1.2.
* ``synthesis.overhead_vs_fwd_bwd``: one synthesis step (augmentation, forward with the moment hooks, both loss terms,
  backward to the pixels, Adam step, clamp) divided by a bare forward + input-gradient backward on the same batch.
  Target <= 1.3.

Each measurement alternates the two sides several times and keeps the minimum of each, so that load from other
processes hits both alike. ``--profile`` prints the top operators of each stage (torch.profiler).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import load_backbone, load_fashion_mnist  # noqa: E402
from wmdd_hf.data import decode_all  # noqa: E402
from wmdd_hf.statistics import collect_class_statistics  # noqa: E402
from wmdd_hf.synthesis import NormTargets, SynthesisConfig, synthesize_batch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "speed.json"


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--synthesis_batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    teacher = load_backbone(str(ROOT / "checkpoints" / "fashion-mnist-convnet64")).freeze()
    data = load_fashion_mnist()["train"]
    images, labels = decode_all(data, teacher.spec, "image", "label", progress=False)
    images, labels = images[: args.images], labels[: args.images]
    batches = [
        (images[s : s + args.batch], labels[s : s + args.batch], torch.arange(s, min(s + args.batch, len(images))))
        for s in range(0, len(images), args.batch)
    ]

    def bare_forward():
        with torch.inference_mode():
            for x, _, _ in batches:
                teacher(x.float().div_(255))

    def statistics_pass():
        collect_class_statistics(teacher, batches, 10)

    bare_forward(), statistics_pass()  # warm-up
    t_fwd = t_stats = float("inf")
    for _ in range(args.repeats):  # alternate, keep the best of each
        t_fwd = min(t_fwd, timed(bare_forward, 1))
        t_stats = min(t_stats, timed(statistics_pass, 1))

    stats = collect_class_statistics(teacher, batches[:4], 10)
    targets = NormTargets.from_moments(stats.norms, "per_class")
    n = args.synthesis_batch
    syn_labels = torch.arange(10).repeat_interleave(n // 10)
    points = torch.randn(n, teacher.feature_dim)
    weights = torch.full((n,), 10.0 / n)
    init = torch.rand(n, 1, 28, 28)
    config = SynthesisConfig(iterations=args.steps, log_every=10**9)

    def synthesis_steps():
        synthesize_batch(teacher, init, syn_labels, points, weights, targets, config, torch.Generator().manual_seed(0))

    def bare_steps():
        x = init.clone().requires_grad_(True)
        for _ in range(args.steps):
            logits, feats = teacher(x)
            (feats.pow(2).sum() + logits.sum()).backward()
            x.grad = None

    bare_steps(), synthesis_steps()
    t_bare = t_syn = float("inf")
    for _ in range(args.repeats):
        t_bare = min(t_bare, timed(bare_steps, 1))
        t_syn = min(t_syn, timed(synthesis_steps, 1))
    result = {
        "statistics": {
            "overhead_vs_forward": round(t_stats / t_fwd, 3),
            "target": 1.2,
            "pass_s": round(t_stats, 3),
            "bare_forward_s": round(t_fwd, 3),
            "images": len(images),
            "batch": args.batch,
        },
        "synthesis": {
            "overhead_vs_fwd_bwd": round(t_syn / t_bare, 3),
            "target": 1.3,
            "step_s": round(t_syn / args.steps, 4),
            "bare_fwd_bwd_s": round(t_bare / args.steps, 4),
            "batch": n,
        },
    }
    print(json.dumps(result, indent=2))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, fn in (("statistics", statistics_pass), ("synthesis", synthesis_steps)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            print(f"== {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    speed = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for key in ("statistics", "synthesis"):
        speed.setdefault(key, {}).update(result[key])
    speed["overhead_command"] = "python benchmarks/overhead.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(json.dumps(speed, indent=2))


if __name__ == "__main__":
    main()
