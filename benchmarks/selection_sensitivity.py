"""Are a coreset's picks the same on another device? Herding and k-center on a statistics pass, and on the same
features with small relative noise (a TF32 convolution on a GPU rounds at about 5e-4 per product).

    python benchmarks/selection_sensitivity.py --statistics outputs/device-work/ipc50/statistics.pt

The pass is the one ``benchmarks/quality.py`` shares in its work folder (the 55,000 non-validation images). For each
IPC, method and noise level: the share of picks kept (mean and worst class) and the classes whose picks, in order,
are identical. Written to benchmarks/results/selection_sensitivity.{json,md}. It decides whether a selection row
measured on this CPU trains on the set of a row measured on the GPU (benchmarks/quality.py NOTES).
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

from wmdd_hf.baselines import herding_indices, kcenter_indices  # noqa: E402
from wmdd_hf.statistics import ClassStatistics  # noqa: E402

METHODS = {"herding": herding_indices, "kcenter": kcenter_indices}


def sensitivity(features: dict[int, np.ndarray], method: str, ipc: int, noise: float, seed: int = 0) -> dict:
    """Picks on ``features`` ({class: (N, D)}) against picks on ``features * (1 + noise * N(0, 1))``."""
    rng = np.random.default_rng(seed)
    kept, identical = [], 0
    for k in sorted(features):
        f = features[k].astype(np.float32)
        a = [int(i) for i in METHODS[method](f, ipc)]
        g = f * (1 + noise * rng.standard_normal(f.shape).astype(np.float32))
        b = [int(i) for i in METHODS[method](g, ipc)]
        kept.append(len(set(a) & set(b)) / ipc)
        identical += a == b
    return {
        "method": method,
        "ipc": ipc,
        "noise": noise,
        "kept_mean": float(np.mean(kept)),
        "kept_min": float(min(kept)),
        "identical_classes": identical,
        "classes": len(features),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--statistics", required=True, help="a statistics.pt written by a distillation run")
    p.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    p.add_argument("--noise", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "selection_sensitivity"))
    args = p.parse_args()
    start = time.time()
    stats = ClassStatistics.load(args.statistics)
    features = {k: v.numpy() for k, v in stats.features.items()}
    rows = []
    for ipc in args.ipc:
        for method in METHODS:
            for noise in args.noise:
                rows.append(sensitivity(features, method, ipc, noise))
                print(json.dumps(rows[-1]), flush=True)
    payload = {
        "command": "python benchmarks/selection_sensitivity.py " + " ".join(sys.argv[1:]),
        "features_per_class": {str(k): int(v.shape[0]) for k, v in features.items()},
        "feature_dim": int(next(iter(features.values())).shape[1]),
        "seconds": round(time.time() - start, 1),
        "rows": rows,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# Coreset picks under device rounding",
        "",
        f"`{payload['command']}` ({payload['seconds']} s). Picks on the features of a statistics pass against picks",
        "on the same features times (1 + noise x N(0, 1)); a GPU's TF32 convolutions round at about 5e-4.",
        "",
        "| method | IPC | noise | picks kept (mean) | worst class | classes identical |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['ipc']} | {r['noise']:g} | {r['kept_mean']:.3f} | {r['kept_min']:.2f} | "
            f"{r['identical_classes']}/{r['classes']} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
