"""What a cap on the features kept per class costs in barycenter quality (Fashion-MNIST, the project's teacher).

    python benchmarks/cap_cost.py                                   # caps 500 1000 2000 4000 and none, IPC 10
    python benchmarks/cap_cost.py --statistics outputs/benchmark-v2/statistics.pt --caps 1000 --ipc 1 10 50

Reads an uncapped statistics pass (``statistics.pt`` of a run, e.g. the one ``benchmarks/quality.py`` writes), keeps
per class the rows the library's cap keeps (``ClassStatistics.capped``: the seeded bottom-k of row keys, the same
rows whatever the number of processes), computes each class's barycenter from the kept features alone, and scores it
against ALL the class's features: exact W2^2 (``ot.emd2``) from the uncapped feature distribution to the weighted
barycenter points. Reports the mean over classes, the excess over the uncapped barycenter, seconds, and the memory
a class's kept features take (float32). Results: ``benchmarks/results/cap_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf.barycenter import w2_cost, wasserstein_barycenter  # noqa: E402
from wmdd_hf.statistics import ClassStatistics  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cap_cost.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--statistics", default=str(ROOT / "outputs" / "benchmark-v2" / "statistics.pt"))
    p.add_argument("--caps", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    p.add_argument("--ipc", type=int, nargs="+", default=[10])
    p.add_argument("--seed", type=int, default=42, help="The run seed the cap's row keys derive from.")
    args = p.parse_args()
    path = Path(args.statistics)
    if not path.exists():
        raise SystemExit(
            f"No statistics pass at {path}: run `python benchmarks/quality.py --stage budget --ipc 10` (or any "
            "uncapped distillation) first, or pass --statistics PATH/statistics.pt."
        )
    full = ClassStatistics.load(path)
    classes = sorted(full.features)
    sizes = [len(full.features[k]) for k in classes]
    dim = int(full.features[classes[0]].shape[1])
    rows = []
    for ipc in args.ipc:
        for cap in [None, *args.caps]:
            stats = full.capped(cap, args.seed)
            start = time.time()
            costs = []
            for k in classes:
                kept = stats.features[k].double().numpy()
                b = wasserstein_barycenter(kept, ipc, seed=k)
                costs.append(w2_cost(full.features[k].double().numpy(), b.positions, b.weights))
            seconds = time.time() - start
            row = {
                "ipc": ipc,
                "cap": cap,
                "kept_per_class": int(np.mean([len(stats.features[k]) for k in classes])),
                "w2_full_mean": float(np.mean(costs)),
                "w2_full_per_class": costs,
                "barycenter_seconds": round(seconds, 2),
                "kept_mb_per_class": round(np.mean([len(stats.features[k]) for k in classes]) * dim * 4 / 2**20, 2),
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "w2_full_per_class"}), flush=True)
    for row in rows:
        base = next(r for r in rows if r["ipc"] == row["ipc"] and r["cap"] is None)["w2_full_mean"]
        row["excess_vs_uncapped"] = row["w2_full_mean"] / base - 1
    out = {
        "command": "python benchmarks/cap_cost.py " + " ".join(sys.argv[1:]),
        "statistics": str(path),
        "images_per_class": sizes,
        "feature_dim": dim,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(out, indent=2))
    lines = [
        "# What the feature cap costs (Fashion-MNIST, wmdd_convnet teacher, 576-d features)",
        "",
        f"`{out['command']}` — {sizes[0]} training images per class (validation split held out). Each barycenter is "
        "computed from the capped features and scored against all of the class's features (exact W2², mean over "
        "classes). Excess: relative to the uncapped barycenter. Only training features are read (no validation or test data); the default cap was chosen from this table.",
        "",
        "| IPC | cap | kept per class | W2² to all features | excess | barycenter s (10 classes) | MB per class |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ipc']} | {r['cap'] or 'none'} | {r['kept_per_class']} | {r['w2_full_mean']:.3f} | "
            f"{100 * r['excess_vs_uncapped']:+.2f} % | {r['barycenter_seconds']} | {r['kept_mb_per_class']} |"
        )
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
