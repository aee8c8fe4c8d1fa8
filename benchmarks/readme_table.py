"""Prints the README's results table from benchmarks/results/fashion_mnist.json (and the old yardstick's file).

    python benchmarks/readme_table.py            # paste the output under "## Results (Fashion-MNIST)"
    python benchmarks/readme_table.py --regimes  # the label regimes table (acc and what the images add)

One line per method and IPC: the soft row (augmentation, the method's own KD weighting), its IOR, the hard-label row
with HLR and LRS, the no-augmentation row with ARS, and the same method's soft accuracy under the old yardstick
(fashion_mnist_v1.json: under-trained students, curves on test; not comparable, kept for the record). Methods that
pick the very images of another row (``same_set_as``) share one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = [  # method -> label (None: the method's name)
    ("wmdd", "wmdd (defaults)"),
    ("wmdd_init_real", "wmdd, init real + 200 steps"),
    ("wmdd_init_patches", "wmdd, init patches (mosaic start)"),
    ("random", None),
    ("barycenter_nearest_real", None),
    ("herding", None),
    ("kcenter", None),
    ("ablation_wasserstein_global", "W + global BN (ablation)"),
    ("ablation_cross_entropy_per_class", "CE + per-class BN (ablation)"),
    ("sre2l", "CE + global BN (SRe2L's losses)"),
    ("wmdd_official", 'wmdd, `recipe="official"`'),
]
AT_IPC = {  # (method, IPC) -> the label there
    ("wmdd", 1): "wmdd (λ 100, the IPC 1 point)",
    ("wmdd_init_real", 10): "wmdd, init real + 200 steps (`configs/fashion_mnist_ipc10.yaml`)",
}
HEADER = (
    "| set (same soft protocol) | IPC | top-1 % | IOR | hard labels | HLR | LRS | no augmentation | ARS | old yardstick |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _acc(row: dict | None) -> str:
    if row is None:
        return "—"
    return f"{100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}"


def _points(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def find(rows: list[dict], method: str, ipc: int, protocol: str, augment: bool = True) -> dict | None:
    """The ConvNet student's row of ``method`` at ``ipc`` under ``protocol``; soft rows of wmdd-made sets use
    weighted KD."""
    for r in rows:
        if (r["method"], r["ipc"], r["protocol"], r.get("augment", True)) != (method, ipc, protocol, augment):
            continue
        if not r.get("student", "wmdd_convnet").startswith("wmdd_convnet"):
            continue  # other students: benchmarks/results/fashion_mnist.md
        if protocol == "soft" and not r.get("weighted_kd", True):
            continue  # the unweighted-KD ablation is a sentence under the table
        return r
    return None


def twins(rows: list[dict], ipc: int) -> dict[str, list[str]]:
    """method -> the methods whose rows at ``ipc`` reuse its students (``same_set_as``)."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["ipc"] == ipc and r.get("same_set_as"):
            names = out.setdefault(r["same_set_as"], [])
            if r["method"] not in names:
                names.append(r["method"])
    return out


def table(results: dict, old: dict | None) -> str:
    rows = results["results"]
    lines = [HEADER]
    for ipc in sorted({r["ipc"] for r in rows}):
        merged = twins(rows, ipc)
        hidden = {m for names in merged.values() for m in names}
        for method, label in ORDER:
            soft = find(rows, method, ipc, "soft")
            if soft is None or method in hidden:
                continue
            name = AT_IPC.get((method, ipc), label or method)
            if merged.get(method):
                name = " = ".join([name, *merged[method]]) + " (the same images)"
            hard = find(rows, method, ipc, "hard")
            plain = find(rows, method, ipc, "soft", augment=False)
            before = find(old["results"], method, ipc, "soft") if old else None
            cells = [
                name,
                str(ipc),
                _acc(soft),
                _points(soft.get("ior"), sign=True),
                _acc(hard),
                _points(soft.get("hlr")),
                _score(soft.get("lrs")),
                _acc(plain),
                _score(soft.get("ars")),
                _acc(before),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: (column title, protocol, augmentation) of the regimes table: with the teacher at hand, then without it.
REGIMES = [
    ("soft: teacher relabels every crop", "soft", True),
    ("hard labels + crop/flip", "hard", True),
    ("hard labels, no augmentation", "hard", False),
    ("fixed soft label per image + crop/flip", "fixed", True),
]


#: The sets of the regimes table: the method (defaults and the config recipe), random, the real coresets.
REGIME_SETS = ("wmdd", "wmdd_init_real", "random", "barycenter_nearest_real", "herding")


def regimes(results: dict, ipc: int = 10) -> str:
    """One line per set at ``ipc``, one cell per label regime: top-1 % and, in brackets, what the images add
    (the set's accuracy minus the random subset's under the same protocol, in points)."""
    rows = results["results"]
    lines = [
        f"| set (IPC {ipc}) | " + " | ".join(title for title, _, _ in REGIMES) + " |",
        "|---|" + "---|" * len(REGIMES),
    ]
    for method, label in [(m, label) for m, label in ORDER if m in REGIME_SETS]:
        cells = []
        for _, protocol, augment in REGIMES:
            row = find(rows, method, ipc, protocol, augment)
            base = find(rows, "random", ipc, protocol, augment)
            if row is None:
                cells.append("—")
            elif method == "random" or base is None:
                cells.append(f"{100 * row['acc_mean']:.2f}")
            else:
                cells.append(f"{100 * row['acc_mean']:.2f} ({100 * (row['acc_mean'] - base['acc_mean']):+.2f})")
        if any(c != "—" for c in cells):
            lines.append(f"| {AT_IPC.get((method, ipc), label or method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS / "fashion_mnist.json")
    parser.add_argument("--old", type=Path, default=RESULTS / "fashion_mnist_v1.json")
    parser.add_argument("--regimes", action="store_true", help="Print the label regimes table at IPC 10 instead.")
    args = parser.parse_args()
    if args.regimes:
        print(regimes(json.loads(args.results.read_text())))
        return
    old = json.loads(args.old.read_text()) if args.old.exists() else None
    print(table(json.loads(args.results.read_text()), old))


if __name__ == "__main__":
    main()
