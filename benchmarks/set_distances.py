"""Does the quantity WMDD minimises order the sets the way students do?

    python benchmarks/set_distances.py --ipc 50 \
        --statistics outputs/device-work/ipc50/statistics.pt \
        --barycenters outputs/device-work/ipc50/wasserstein-per_class-ipc50-be154023/barycenters.pt \
        --set wmdd=outputs/device-work/ipc50/wasserstein-per_class-ipc50-be154023/distilled

For every set, per class, in the frozen teacher's feature space (its penultimate layer, un-augmented images):

* ``w2``: the exact W2² (POT's ``ot.emd2``) between the set's features, weighted by the set's ``barycenter_weight``
  where it has one (uniform otherwise), and all the class's real training features of the statistics pass (the
  55,000 non-validation images). WMDD's barycenter is the best any IPC weighted points can do (``barycenter`` row).
* ``coverage``: the median, over the class's real features, of the distance to the nearest set feature.

Means over classes. Selections (random, herding, k-center, nearest to the barycenter points) are picked from the same
pass exactly as ``benchmarks/quality.py`` picks them; synthetic sets are read from their ``distilled`` folders
(``--set name=folder``). Beside each set: its soft-protocol test accuracy as recorded in
``benchmarks/results/fashion_mnist.json`` (read, not measured here: nothing is chosen from this table). Written to
``benchmarks/results/set_distances.{json,md}``; rows of other IPCs already there are kept. ``--refresh`` re-reads
the accuracies from the table (after new rows land) without measuring again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import load_backbone  # noqa: E402
from wmdd_hf.barycenter import w2_cost  # noqa: E402
from wmdd_hf.baselines import select_rows  # noqa: E402
from wmdd_hf.checkpoint import load as load_checkpoint  # noqa: E402
from wmdd_hf.hub import load_distilled  # noqa: E402
from wmdd_hf.soft_labels import teacher_outputs  # noqa: E402
from wmdd_hf.statistics import ClassStatistics  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from report import find  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SELECTIONS = ("random", "herding", "kcenter", "barycenter_nearest_real")


def distances(real: dict[int, torch.Tensor], points: dict[int, np.ndarray], weights: dict[int, np.ndarray] | None):
    """``(w2, coverage)`` means over classes: ``real`` {class: (N, D)}, ``points`` {class: (m, D)}, ``weights``
    {class: (m,)} or None for uniform weights."""
    w2, coverage = [], []
    for k in sorted(points):
        f, x = real[k].numpy().astype(np.float64), np.asarray(points[k], dtype=np.float64)
        w2.append(w2_cost(f, x, None if weights is None else weights[k]))
        nearest = torch.cdist(real[k].float(), torch.as_tensor(x, dtype=torch.float32)).min(dim=1).values
        coverage.append(float(np.median(nearest.numpy())))  # numpy's median: the mean of the middle two
    return float(np.mean(w2)), float(np.mean(coverage))


def selection_features(stats: ClassStatistics, method: str, ipc: int, bary: dict) -> dict[int, np.ndarray]:
    """{class: (ipc, D)} the features of the rows ``method`` picks (as benchmarks/quality.py picks them)."""
    rows = select_rows(stats, method, ipc, seed=0, barycenters=bary)
    out = {}
    for k in sorted(stats.features):
        position = {int(r): i for i, r in enumerate(stats.rows[k].tolist())}
        idx = [position[r] for r in rows if r in position]
        out[k] = stats.features[k][idx].numpy()
    return out


def set_features(teacher, dataset) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray] | None]:
    """({class: (m, D)} teacher features of a distilled set's images, {class: (m,)} its weights or None)."""
    images = torch.stack([teacher.spec.to_uint8(im) for im in dataset["image"]])
    labels = np.asarray(dataset["label"])
    feats = teacher_outputs(teacher, images)[1].cpu().numpy()
    weights = np.asarray(dataset["barycenter_weight"]) if "barycenter_weight" in dataset.column_names else None
    by_class = {int(k): feats[labels == k] for k in np.unique(labels)}
    return by_class, None if weights is None else {int(k): weights[labels == k] for k in np.unique(labels)}


def table_rows() -> list[dict]:
    """The rows of the quality table (read once per run)."""
    path = RESULTS / "fashion_mnist.json"
    return json.loads(path.read_text())["results"] if path.exists() else []


def soft_accuracy(table: list[dict], method: str, ipc: int) -> float | None:
    """The table's soft-protocol, augmented, weighted-KD test accuracy of ``method`` at ``ipc`` (None if absent)."""
    row = find(table, method, ipc, "soft")
    return None if row is None else row["acc_mean"]


def rank_correlation(rows: list[dict]) -> tuple[float, int] | None:
    """Spearman's rho between W2² and soft accuracy over the rows that have both (None with fewer than 3). Negative:
    the sets nearer the real features teach better; near 0: the distance does not order the sets."""
    pairs = [(r["w2"], r["soft_acc"]) for r in rows if r.get("soft_acc") is not None]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr([w for w, _ in pairs], [a for _, a in pairs]).statistic), len(pairs)


def render(data: dict) -> str:
    lines = [
        "# Sets in the teacher's feature space",
        "",
        "Per class: exact W2² between a set's un-augmented teacher features (barycenter-weighted where the set has",
        "weights) and all the class's real training features; coverage = median distance of a real feature to the",
        "nearest set feature. Means over the 10 classes, feature units (the teacher's penultimate layer). Soft top-1 %",
        "is the table's test accuracy (benchmarks/results/fashion_mnist.json), shown beside it, not used to choose.",
        "Distances are measured on this machine's statistics pass and sets; where the table's soft row ran on the",
        "lent GPU its student trained on that device's set (the same options; fashion_mnist.md's notes say where the",
        "two differ).",
        "",
    ]
    lines += [f"- `{c}`" for c in data["commands"]] + [""]
    lines += ["| IPC | set | W2² | coverage | soft top-1 % |", "|---|---|---|---|---|"]
    for r in sorted(data["rows"], key=lambda r: (r["ipc"], r["w2"])):
        acc = "—" if r.get("soft_acc") is None else f"{100 * r['soft_acc']:.2f}"
        lines.append(f"| {r['ipc']} | {r['set']} | {r['w2']:.1f} | {r['coverage']:.2f} | {acc} |")
    lines += [
        "",
        "Spearman's rho between W2² and soft top-1 % over the sets with both (identical selections counted once):",
        "",
    ]
    for ipc in sorted({r["ipc"] for r in data["rows"]}):
        distinct = {(round(r["w2"], 6), r.get("soft_acc")): r for r in data["rows"] if r["ipc"] == ipc}
        rho = rank_correlation(list(distinct.values()))
        lines.append(f"- IPC {ipc}: " + ("fewer than 3 sets" if rho is None else f"{rho[0]:+.2f} over {rho[1]} sets"))
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", type=int)
    p.add_argument("--statistics", help="the shared statistics.pt of benchmarks/quality.py")
    p.add_argument("--barycenters", help="barycenters.pt of the wmdd run at this IPC")
    p.add_argument("--refresh", action="store_true", help="only re-read the accuracies from the table and re-render")
    p.add_argument("--set", action="append", default=[], help="name=distilled folder (a synthetic set)")
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument("--out", default=str(RESULTS / "set_distances"))
    args = p.parse_args()
    out = Path(args.out)
    if args.refresh:  # the table's rows change as lanes land; the distances do not
        data, table = json.loads(out.with_suffix(".json").read_text()), table_rows()
        for r in data["rows"]:
            r["soft_acc"] = None if r["set"].startswith("barycenter (") else soft_accuracy(table, r["set"], r["ipc"])
        out.with_suffix(".json").write_text(json.dumps(data, indent=2))
        out.with_suffix(".md").write_text(render(data))
        return
    if None in (args.ipc, args.statistics, args.barycenters):
        p.error("--ipc, --statistics and --barycenters are required (or --refresh alone)")
    named = dict(s.split("=", 1) for s in args.set)  # parsed first: a malformed --set fails before any work
    start = time.time()
    stats = ClassStatistics.load(args.statistics)
    bary = load_checkpoint(args.barycenters)
    teacher = load_backbone(args.teacher).freeze()
    rows, table = [], table_rows()

    def add(name: str, points, weights, method: str | None) -> None:
        w2, coverage = distances(stats.features, points, weights)
        acc = soft_accuracy(table, method, args.ipc) if method else None
        rows.append({"ipc": args.ipc, "set": name, "w2": w2, "coverage": coverage, "soft_acc": acc})
        print(json.dumps(rows[-1]), flush=True)

    add(
        "barycenter (the points themselves)",
        {k: v["positions"] for k, v in bary.items()},
        {k: v["weights"] for k, v in bary.items()},
        None,
    )
    for method in SELECTIONS:
        add(method, selection_features(stats, method, args.ipc, bary), None, method)
    for name, folder in named.items():
        add(name, *set_features(teacher, load_distilled(folder)[0]), name)
    data = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    command = "python benchmarks/set_distances.py " + " ".join(sys.argv[1:])
    data["commands"] = [c for c in data.get("commands", []) if f"--ipc {args.ipc} " not in c] + [command]
    data["rows"] = [r for r in data.get("rows", []) if r["ipc"] != args.ipc] + rows
    data.setdefault("seconds", {})[str(args.ipc)] = round(time.time() - start, 1)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2))
    out.with_suffix(".md").write_text(render(data))


if __name__ == "__main__":
    main()
