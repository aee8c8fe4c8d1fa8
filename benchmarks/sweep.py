"""A small grid over the synthesis options, judged on the validation split (never on the test split).

    OMP_NUM_THREADS=1 python benchmarks/sweep.py --ipc 10                    # the default grid
    python benchmarks/sweep.py --ipc 10 --grid '{"bn_weight": [1, 10], "loss_scale": ["mean"]}'

Every point distils IPC images per class from the 55,000 training images the benchmark uses (5,000 held out as
validation, seed 0), then trains ONE student (seed 0) with the short budget (``--student_steps``, default 300: the old
budget, enough to rank settings) and records its validation accuracy, the feature and statistic terms at the end, the
share of classes whose synthetic images end closer to their points than the median real image, and the seconds.
The test split is not loaded. Results merge into ``benchmarks/results/sweep.{json,md}``; the best point by validation
accuracy is marked, and the defaults in ``DistillationArguments`` come from it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import DistillationArguments, Distiller, load_backbone, load_fashion_mnist  # noqa: E402
from wmdd_hf.data import train_validation_split  # noqa: E402
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_GRID = {
    "loss_scale": ["mean"],
    "bn_weight": [0.1, 1.0, 10.0],
    "learning_rate": [0.05, 0.1],
    "init": ["noise", "real"],
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--grid", default=None, help="JSON {argument: [values]} (DistillationArguments fields).")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--student_steps", type=int, default=300)
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument("--work_dir", default=str(ROOT / "outputs" / "sweep"))
    p.add_argument("--results", default=str(RESULTS / "sweep.json"))
    return p.parse_args()


def points(grid: dict) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def name_of(point: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in sorted(point.items())).replace("/", "_")


def main() -> None:
    args = parse()
    grid = json.loads(args.grid) if args.grid else DEFAULT_GRID
    data = load_fashion_mnist()
    train, validation = train_validation_split(data["train"], 5000, 0)
    teacher = load_backbone(args.teacher).freeze()
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {"points": []}
    done = {json.dumps(r["point"], sort_keys=True) for r in results["points"] if r["ipc"] == args.ipc}
    work = Path(args.work_dir)
    stats = work / "statistics.pt"
    for point in points(grid):
        if json.dumps(point, sort_keys=True) in done:
            continue
        out = work / f"ipc{args.ipc}" / name_of(point)
        if stats.exists() and not (out / "statistics.pt").exists():
            out.mkdir(parents=True, exist_ok=True)
            (out / "statistics.pt").write_bytes(stats.read_bytes())  # the pass does not depend on the grid
        start = time.time()
        d_args = DistillationArguments(
            output_dir=str(out),
            images_per_class=args.ipc,
            iterations=args.iterations,
            seed=0,
            disable_tqdm=True,
            **point,
        )
        distiller = Distiller(teacher, d_args, train)
        distilled = distiller.distill()
        if not stats.exists():
            stats.parent.mkdir(parents=True, exist_ok=True)
            stats.write_bytes((out / "statistics.pt").read_bytes())
        seconds = time.time() - start
        config = EvaluationConfig(steps=args.student_steps, eval_every=args.student_steps, progress=False)
        r = evaluate_distilled(distilled, validation, teacher=teacher, config=config, seeds=(0,))
        m = distiller.metrics
        row = {
            "ipc": args.ipc,
            "point": point,
            "val_acc": r["acc_mean"],  # the "test" of evaluate_distilled here IS the validation split
            "feature_loss_end": m["feature_loss_end"],
            "bn_loss_end": m["bn_loss_end"],
            "classes_closer_than_median_real": m["classes_closer_than_median_real"],
            "distill_seconds": round(seconds, 1),
            "student_seconds": r["seconds_per_student"],
        }
        print(json.dumps(row), flush=True)
        results["points"].append(row)
        cmd = "python benchmarks/sweep.py " + " ".join(sys.argv[1:])
        results["commands"] = sorted(set(results.get("commands", [])) | {cmd})
        results["protocol"] = {
            "selection": "validation split (5,000 held-out training images, seed 0); the test split is never read",
            "student": "wmdd_convnet width 64, soft protocol, seed 0",
            "student_steps": args.student_steps,
            "synthesis_iterations": args.iterations,
        }
        path.write_text(json.dumps(results, indent=2))
        path.with_suffix(".md").write_text(render(results))


def render(results: dict) -> str:
    lines = ["# Synthesis sweep (validation accuracy)", "", *[f"- `{c}`" for c in results.get("commands", [])], ""]
    lines += [f"Protocol: `{json.dumps(results.get('protocol', {}))}`", ""]
    for ipc in sorted({r["ipc"] for r in results["points"]}):
        rows = sorted((r for r in results["points"] if r["ipc"] == ipc), key=lambda r: -r["val_acc"])
        lines += [
            f"## IPC {ipc}",
            "",
            "| point | val % | feature end | stat end | classes closer | distil s |",
            "|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(rows):
            mark = " **(best)**" if i == 0 else ""
            lines.append(
                f"| `{json.dumps(r['point'])}`{mark} | {100 * r['val_acc']:.2f} | {r['feature_loss_end']:.4g} | "
                f"{r['bn_loss_end']:.4g} | {r['classes_closer_than_median_real']} | {r['distill_seconds']} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
