"""Prints the README's results table from benchmarks/results/fashion_mnist.json (and the old yardstick's file).

    python benchmarks/readme_table.py            # paste the output under "## Results (Fashion-MNIST)"
    python benchmarks/readme_table.py --regimes  # the label regimes table (acc and what the images add)
    python benchmarks/readme_table.py --headline --figure benchmarks/results/headline.png   # the README's table
    python benchmarks/readme_table.py --write    # rewrites both tables in README.md and docs/results.md, and the figure

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
    ("wmdd_latent_real", "wmdd in autoencoder latents, init real + 200 steps"),
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


#: Short names of the regimes, for the figure's axis.
SHORT = {title: short for (title, _, _), short in zip(REGIMES, ("soft", "hard + aug", "hard, no aug", "fixed + aug"))}

#: The sets of the regimes table: the method (defaults and the config recipe), random, the real coresets.
REGIME_SETS = ("wmdd", "wmdd_init_real", "wmdd_latent_real", "random", "barycenter_nearest_real", "herding")


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


#: The sets of the README's headline table: the method's defaults, random, and the best real coreset here.
HEADLINE_SETS = (("wmdd", "wmdd"), ("random", "random"), ("herding", "herding"))


def headline_rows(results: dict) -> list[tuple[str, int, list[dict | None]]]:
    """``(regime title, IPC, [row of each HEADLINE_SETS method])`` for every regime and IPC where wmdd and random
    were both measured, regime by regime."""
    rows = results["results"]
    out = []
    for title, protocol, augment in REGIMES:
        for ipc in sorted({r["ipc"] for r in rows}):
            found = [find(rows, method, ipc, protocol, augment) for method, _ in HEADLINE_SETS]
            if found[0] is not None and found[1] is not None:
                out.append((title, ipc, found))
    return out


def headline(results: dict) -> str:
    """The README's table: one line per regime and IPC, top-1 % mean ± std of each set and what wmdd's images add
    (wmdd minus random, points)."""
    lines = [
        "| protocol | IPC | " + " | ".join(label for _, label in HEADLINE_SETS) + " | images add |",
        "|---|---|" + "---|" * (len(HEADLINE_SETS) + 1),
    ]
    for title, ipc, found in headline_rows(results):
        gain = 100 * (found[0]["acc_mean"] - found[1]["acc_mean"])
        lines.append(f"| {title} | {ipc} | " + " | ".join(_acc(r) for r in found) + f" | {gain:+.1f} |")
    return "\n".join(lines)


def headline_figure(results: dict, path: Path) -> None:
    """What the images add over random (points, mean over seeds; error bars: the two stds added in quadrature), for
    wmdd and herding, one group of bars per regime and IPC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = headline_rows(results)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.38
    for j, (index, label, colour) in enumerate(((0, "wmdd", "tab:blue"), (2, "herding (real images)", "tab:grey"))):
        gains, errors, xs = [], [], []
        for i, (_, _, found) in enumerate(entries):
            if found[index] is None:
                continue
            gains.append(100 * (found[index]["acc_mean"] - found[1]["acc_mean"]))
            errors.append(100 * (found[index]["acc_std"] ** 2 + found[1]["acc_std"] ** 2) ** 0.5)
            xs.append(i + (j - 0.5) * width)
        ax.bar(xs, gains, width, yerr=errors, label=label, color=colour, capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([f"{SHORT[title]}\nIPC {ipc}" for title, ipc, _ in entries], fontsize=8)
    ax.set_ylabel("top-1 points over random")
    ax.set_title("What the images add over a random real subset (Fashion-MNIST, ConvNet-3, 3 seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


ROOT = RESULTS.parents[1]
#: (file, marker name, table function): the generated blocks between ``<!-- NAME table: ... -->`` and
#: ``<!-- end of the NAME table -->``.
BLOCKS = (("README.md", "headline", lambda results: headline(results)), ("docs/results.md", "regimes", regimes))


def replace_block(text: str, name: str, table_text: str) -> str:
    """``text`` with the block between the ``name`` markers replaced by ``table_text``."""
    import re

    pattern = rf"(<!-- {name} table: [^\n]*-->\n)(.*?)(<!-- end of the {name} table -->)"
    if not re.search(pattern, text, flags=re.S):
        raise ValueError(f"no '{name} table' markers found")
    return re.sub(pattern, lambda m: m.group(1) + table_text + "\n" + m.group(3), text, count=1, flags=re.S)


def write_all(results: dict) -> None:
    for file, name, make in BLOCKS:
        path = ROOT / file
        path.write_text(replace_block(path.read_text(), name, make(results)))
    headline_figure(results, RESULTS / "headline.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS / "fashion_mnist.json")
    parser.add_argument("--old", type=Path, default=RESULTS / "fashion_mnist_v1.json")
    parser.add_argument("--regimes", action="store_true", help="Print the label regimes table at IPC 10 instead.")
    parser.add_argument("--headline", action="store_true", help="Print the README's headline table instead.")
    parser.add_argument("--figure", type=Path, help="With --headline: also draw its figure to this PNG.")
    parser.add_argument("--write", action="store_true", help="Rewrite the generated tables and the figure in place.")
    args = parser.parse_args()
    if args.write:
        write_all(json.loads(args.results.read_text()))
        return
    if args.headline:
        results = json.loads(args.results.read_text())
        print(headline(results))
        if args.figure:
            headline_figure(results, args.figure)
        return
    if args.regimes:
        print(regimes(json.loads(args.results.read_text())))
        return
    old = json.loads(args.old.read_text()) if args.old.exists() else None
    print(table(json.loads(args.results.read_text()), old))


if __name__ == "__main__":
    main()
