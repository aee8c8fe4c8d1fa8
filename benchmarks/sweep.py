"""A small grid over the synthesis options, judged on the validation split (never on the test split).

    OMP_NUM_THREADS=1 python benchmarks/sweep.py --ipc 10                    # the default grid
    python benchmarks/sweep.py --ipc 10 --grid '{"bn_weight": [1, 10], "loss_scale": ["mean"]}'

Every point distils IPC images per class from the 55,000 training images the benchmark uses (5,000 held out as
validation, seed 0), then trains ONE student (seed 0) with the short budget (``--student_steps``, default 300: the old
budget, enough to rank settings) and records its validation accuracy, the feature and statistic terms at the end, the
share of classes whose synthetic images end closer to their points than the median real image, and the seconds.
The test split is never read. Results merge into ``benchmarks/results/sweep.{json,md}``; the best point by validation
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

from wmdd_hf import Distiller, load_backbone  # noqa: E402
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled  # noqa: E402
from wmdd_hf.statistics import ClassStatistics  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import (  # noqa: E402
    DATASETS,
    benchmark_splits,
    device_name,
    distillation_arguments,
    pick_device,
    reuse_statistics,
    share_statistics,
    statistics_file,
    work_folder,
)
from set_distances import distances, set_features  # noqa: E402

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
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="Student seeds per point (mean ± std).")
    p.add_argument("--protocol", default="soft", choices=["soft", "hard", "fixed"], help="The students' protocol.")
    p.add_argument("--no_augment", action="store_true", help="Students without crop and flip (hard and fixed).")
    p.add_argument("--device", default=None, help="Students and teacher; default: cuda when available, else cpu.")
    p.add_argument(
        "--limit_train", type=int, default=None, help="Plumbing checks only: the first N training rows (no results)."
    )
    p.add_argument(
        "--best_out",
        default=None,
        help="Write the best point at this IPC and student budget (by mean validation accuracy) to this JSON file.",
    )
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=list(DATASETS),
        help="fashion_mnist_rgb32 for the second teacher family (give it a --results file of its own).",
    )
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
    train, validation, _ = benchmark_splits(args.limit_train, args.dataset)  # the test split is never read here
    device = pick_device(args.device)
    teacher = load_backbone(args.teacher).freeze().to(device)
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {"points": []}
    done = {key(r["point"], r["ipc"], *budget_of(r)) for r in results["points"]}
    budget = (args.student_steps, list(args.seeds), args.protocol, not args.no_augment)
    work = work_folder(args.work_dir, args.limit_train)
    for point in points(grid):
        if key(point, args.ipc, *budget) in done:
            continue
        shared = work / statistics_file(point)
        out = work / f"ipc{args.ipc}" / name_of(point)
        reuse_statistics(shared, out)
        start = time.time()
        d_args = distillation_arguments(
            output_dir=str(out),
            images_per_class=args.ipc,
            seed=0,
            disable_tqdm=True,
            save_plots=False,  # sweep points are compared, not published
            # every feature, as in the quality benchmark; a point may set its own iterations
            **{"max_features_per_class": None, "iterations": args.iterations, **point},
        )
        distiller = Distiller(teacher, d_args, train)
        distilled = distiller.distill()
        share_statistics(out, shared)
        seconds = time.time() - start
        config = EvaluationConfig(
            protocol=args.protocol,
            augment=not args.no_augment,
            steps=args.student_steps,
            eval_every=args.student_steps,
            progress=False,
        )
        r = evaluate_distilled(
            distilled, validation, teacher=teacher, config=config, seeds=tuple(args.seeds), device=device
        )
        m = distiller.metrics
        # how far the set's clean features are from its class's real ones (benchmarks/set_distances.py)
        w2, coverage = distances(
            ClassStatistics.load(out / "statistics.pt").features, *set_features(teacher, distilled)
        )
        row = {
            "ipc": args.ipc,
            "dataset": args.dataset,
            "teacher": args.teacher,
            "point": point,
            "val_acc": r["acc_mean"],  # the "test" of evaluate_distilled here IS the validation split
            "val_acc_std": r["acc_std"],
            "val_accs": r["accs"],
            "seeds": list(args.seeds),
            "student_steps": args.student_steps,
            "protocol": args.protocol,
            "augment": not args.no_augment,
            "device": device_name(device),
            "feature_loss_end": m["feature_loss_end"],
            "bn_loss_end": m["bn_loss_end"],
            "classes_closer_than_median_real": m["classes_closer_than_median_real"],
            "set_w2": w2,
            "set_coverage": coverage,
            "distill_seconds": round(seconds, 1),
            "student_seconds": r["seconds_per_student"],
        }
        print(json.dumps(row), flush=True)
        results["points"].append(row)
        cmd = "python benchmarks/sweep.py " + " ".join(sys.argv[1:])
        results["commands"] = sorted(set(results.get("commands", [])) | {cmd})
        results["protocol"] = {
            "selection": "validation split (5,000 held-out training images, seed 0); the test split is never read",
            "student": "wmdd_convnet width 64; protocol (soft unless named), augmentation, seeds and steps per row",
            "synthesis_iterations": "1000 unless the point sets iterations",
        }
        path.write_text(json.dumps(results, indent=2))
        path.with_suffix(".md").write_text(render(results))
        if args.best_out:  # after every point, so a grid cut short still names its best so far
            write_best(results, args, Path(args.best_out))
    if args.best_out:
        write_best(results, args, Path(args.best_out))


def budget_of(row: dict) -> tuple:
    """``(student steps, seeds, protocol, augment)`` of a row (rows before the protocol was recorded: soft, aug)."""
    return row.get("student_steps", 300), row.get("seeds", [0]), row.get("protocol", "soft"), row.get("augment", True)


def key(point: dict, ipc: int, steps: int, seeds, protocol: str = "soft", augment: bool = True) -> str:
    budget = {"steps": steps, "seeds": list(seeds)}
    if (protocol, augment) != ("soft", True):  # the keys of the rows measured before the protocol was recorded
        budget.update(protocol=protocol, augment=augment)
    return json.dumps({"point": point, "ipc": ipc, **budget}, sort_keys=True)


def write_best(results: dict, args, out: Path) -> dict:
    """The point with the best mean validation accuracy among those measured at this IPC, student budget, seeds
    and protocol (ties: the first measured)."""
    budget = (args.student_steps, list(args.seeds), args.protocol, not args.no_augment)
    rows = [r for r in results["points"] if r["ipc"] == args.ipc and budget_of(r) == budget]
    if not rows:
        raise SystemExit("No sweep point at this IPC, budget and seeds: nothing to choose from.")
    best = max(rows, key=lambda r: r["val_acc"])
    out.parent.mkdir(parents=True, exist_ok=True)
    chosen = {"point": best["point"], "val_acc": best["val_acc"], "ipc": args.ipc, "among": len(rows)}
    chosen.update(protocol=args.protocol, augment=not args.no_augment)
    out.write_text(json.dumps(chosen, indent=2))
    print("best:", json.dumps(chosen), flush=True)
    return chosen


def label_of(row: dict) -> str:
    """The students' protocol, as the tables name it: ``soft``, ``hard``, ``hard, no aug``, ``fixed``..."""
    _, _, protocol, augment = budget_of(row)
    return protocol if augment else f"{protocol}, no aug"


def group_of(row: dict) -> tuple:
    """Rows that compete for "best": the same protocol, augmentation, student steps and number of seeds."""
    steps, seeds, protocol, augment = budget_of(row)
    return protocol, augment, steps, len(seeds)


def render(results: dict) -> str:
    datasets = sorted({r.get("dataset", "fashion_mnist") for r in results["points"]})
    title = "# Synthesis sweep (validation accuracy)" + (
        "" if datasets == ["fashion_mnist"] else f": {', '.join(datasets)}"
    )
    lines = [title, "", *[f"- `{c}`" for c in results.get("commands", [])], ""]
    teachers = sorted({r["teacher"] for r in results["points"] if "teacher" in r and datasets != ["fashion_mnist"]})
    lines += [f"Teacher: `{', '.join(teachers)}`.", ""] if teachers else []
    lines += [f"Protocol: `{json.dumps(results.get('protocol', {}))}`", ""]
    for ipc in sorted({r["ipc"] for r in results["points"]}):
        rows = sorted(
            (r for r in results["points"] if r["ipc"] == ipc),
            key=lambda r: (label_of(r), r.get("student_steps", 300), len(r.get("seeds", [0])), -r["val_acc"]),
        )
        lines += [
            f"## IPC {ipc}",
            "",
            "| point | students | student steps | seeds | val % | feature end | stat end | classes closer | set W2² "
            "| distil s | device |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        best = {}
        for r in rows:
            best.setdefault(group_of(r), r["val_acc"])
        for r in rows:
            mark = " **(best)**" if best[group_of(r)] == r["val_acc"] else ""
            std = f" ± {100 * r['val_acc_std']:.2f}" if "val_acc_std" in r and len(r["seeds"]) > 1 else ""
            lines.append(
                f"| `{json.dumps(r['point'])}`{mark} | {label_of(r)} | {r.get('student_steps', 300)} | "
                f"{len(r.get('seeds', [0]))} | {100 * r['val_acc']:.2f}{std} | "
                f"{r['feature_loss_end']:.4g} | {r['bn_loss_end']:.4g} | {r['classes_closer_than_median_real']} | "
                f"{'—' if r.get('set_w2') is None else format(r['set_w2'], '.1f')} | "
                f"{r['distill_seconds']} | {r.get('device', 'cpu')} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
