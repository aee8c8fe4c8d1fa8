"""The one report of the Fashion-MNIST benchmark, generated from benchmarks/results/fashion_mnist.json.

    python benchmarks/report.py                    # rewrites every generated file below
    python benchmarks/report.py --print headline   # or regimes, or results: prints one of them instead
    python benchmarks/report.py --results benchmarks/results/fashion_mnist_rgb32.json   # the second teacher's

Writes:
* ``benchmarks/results/fashion_mnist.md`` (RESULTS): every row, grouped by protocol, each named by its declared
  experiment (``benchmarks/fashion_mnist/experiments/<name>.json``; reproduce it with
  ``python benchmarks/run_experiments.py --run --only <name>``), with its device, time and DD-Ranking scores;
* ``benchmarks/results/headline.png``: what the images add over random, per regime and IPC;
* the generated blocks of ``README.md`` (the headline table) and ``docs/results.md`` (the regimes table at IPC 10
  and the scores table: every set's soft, hard and no-augmentation rows with IOR, HLR, LRS and ARS).

How the numbers were made, session by session: benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run_experiments import experiment_name  # noqa: E402

ORDER = [  # row name -> its label in the tables (None: the name itself), in table order
    ("wmdd", "wmdd (defaults)"),
    ("wmdd_init_real", "wmdd, init real + 200 steps"),
    ("wmdd_init_patches", "wmdd, init patches (mosaic start)"),
    ("wmdd_latent_real", "wmdd in autoencoder latents, init real + 200 steps"),
    ("wmdd_data_basis_real", "wmdd in the data's colour basis, init real + 200 steps"),
    ("random", None),
    ("barycenter_nearest_real", None),
    ("herding", None),
    ("kcenter", None),
    ("ablation_wasserstein_global", "W + global BN (ablation)"),
    ("ablation_cross_entropy_per_class", "CE + per-class BN (ablation)"),
    ("sre2l", "CE + global BN (SRe2L's losses)"),
    ("wmdd_official", 'wmdd, `recipe="official"`'),
]
AT_IPC = {  # (row name, IPC) -> its label there
    ("wmdd", 1): "wmdd (λ 100, the IPC 1 point)",
    ("wmdd_init_real", 10): "wmdd, init real + 200 steps (`configs/fashion_mnist_ipc10.yaml`)",
}


def label(method: str, ipc: int) -> str:
    return AT_IPC.get((method, ipc)) or dict(ORDER).get(method) or method


#: (column title, protocol, augmentation) of the label regimes: with the teacher at hand, then without it.
REGIMES = [
    ("soft: teacher relabels every crop", "soft", True),
    ("hard labels + crop/flip", "hard", True),
    ("hard labels, no augmentation", "hard", False),
    ("fixed soft label per image + crop/flip", "fixed", True),
]
SHORT = dict(zip((title for title, _, _ in REGIMES), ("soft", "hard + aug", "hard, no aug", "fixed + aug")))
#: The sets of the regimes table: the method (defaults and the config recipe), random, the real coresets.
REGIME_SETS = (
    "wmdd",
    "wmdd_init_real",
    "wmdd_latent_real",
    "wmdd_data_basis_real",
    "random",
    "barycenter_nearest_real",
    "herding",
)
#: The sets of the README's headline table: the method's defaults, random, and the best real coreset here.
HEADLINE_SETS = ("wmdd", "random", "herding")


def acc(row: dict | None) -> str:
    """``"mean ± std"`` of a row's top-1 accuracy in percent, or ``—``."""
    return "—" if row is None else f"{100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def find(rows: list[dict], method: str, ipc: int, protocol: str, augment: bool = True) -> dict | None:
    """The ConvNet student's row of ``method`` at ``ipc`` under ``protocol``; soft rows of wmdd-made sets use
    weighted KD (the unweighted-KD ablation and the other students are in RESULTS only)."""
    for r in rows:
        if (r["method"], r["ipc"], r["protocol"], r.get("augment", True)) != (method, ipc, protocol, augment):
            continue
        if not r.get("student", "wmdd_convnet").startswith("wmdd_convnet"):
            continue
        if protocol == "soft" and not r.get("weighted_kd", True):
            continue
        return r
    return None


def images_add(row: dict, rows: list[dict]) -> float | None:
    """``acc(row) - acc(random)`` at the same IPC, protocol, augmentation, weighting and student (a fraction), or
    None while that random row is missing (and for the random row itself)."""
    same = ("ipc", "protocol", "augment", "weighted", "student")
    for r in rows:
        if r["method"] == "random" and all(r.get(k) == row.get(k) for k in same) and row["method"] != "random":
            return row["acc_mean"] - r["acc_mean"]
    return None


def regimes(results: dict, ipc: int = 10, colour: bool = False) -> str:
    """One line per set at ``ipc``, one cell per label regime: top-1 % and, in brackets, what the images add
    (the set's accuracy minus the random subset's under the same protocol, in points). ``colour``: a last column
    with the set's colour spread (a synthesised set's from its rows, 0 for real images)."""
    rows = results["results"]
    lines = [
        f"| set (IPC {ipc}) | "
        + " | ".join(title for title, _, _ in REGIMES)
        + " |"
        + (" colour spread |" if colour else ""),
        "|---|" + "---|" * (len(REGIMES) + colour),
    ]
    for method in [m for m, _ in ORDER if m in REGIME_SETS]:
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
            if colour:
                spread = [
                    r["colour_spread"]
                    for r in rows
                    if r["method"] == method and r["ipc"] == ipc and r.get("colour_spread") is not None
                ]
                cells.append(f"{spread[0]:.2f}" if spread else "—" if method.startswith("wmdd") else "0")
            lines.append(f"| {label(method, ipc)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def second_teacher(results: dict, ipc: int = 10) -> str:
    """The regimes table of the second teacher family's benchmark, with each set's colour spread."""
    return regimes(results, ipc, colour=True)


def twins(rows: list[dict], ipc: int) -> dict[str, list[str]]:
    """row name -> the rows at ``ipc`` that reuse its students (``same_set_as``)."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["ipc"] == ipc and r.get("same_set_as") and r["method"] not in out.setdefault(r["same_set_as"], []):
            out[r["same_set_as"]].append(r["method"])
    return out


def scores_table(results: dict) -> str:
    """One line per set and IPC: the soft row (augmentation, weighted KD) with its IOR, the hard-label row with HLR
    and LRS, the no-augmentation row with ARS. Rows that reuse another row's images share its line."""
    rows = results["results"]
    f3 = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    points = lambda x, sign="": "—" if x is None else f"{100 * x:{sign}.2f}"  # noqa: E731
    lines = [
        "| set (soft protocol) | IPC | top-1 % | IOR | hard labels | HLR | LRS | no augmentation | ARS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ipc in sorted({r["ipc"] for r in rows}):
        merged = twins(rows, ipc)
        hidden = {m for names in merged.values() for m in names}
        for method, _ in ORDER:
            soft = find(rows, method, ipc, "soft")
            if soft is None or method in hidden:
                continue
            name = label(method, ipc)
            if merged.get(method):
                name = " = ".join([name, *merged[method]]) + " (the same images)"
            hard, plain = find(rows, method, ipc, "hard"), find(rows, method, ipc, "soft", augment=False)
            cells = [name, str(ipc), acc(soft), points(soft.get("ior"), "+"), acc(hard), points(soft.get("hlr"))]
            cells += [f3(soft.get("lrs")), acc(plain), f3(soft.get("ars"))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_rows(results: dict) -> list[tuple[str, int, list[dict | None]]]:
    """``(regime title, IPC, [row of each HEADLINE_SETS method])`` for every regime and IPC where wmdd and random
    were both measured, regime by regime."""
    rows = results["results"]
    out = []
    for title, protocol, augment in REGIMES:
        for ipc in sorted({r["ipc"] for r in rows}):
            found = [find(rows, method, ipc, protocol, augment) for method in HEADLINE_SETS]
            if found[0] is not None and found[1] is not None:
                out.append((title, ipc, found))
    return out


def headline(results: dict) -> str:
    """The README's table: one line per regime and IPC, top-1 % mean ± std of each set and what wmdd's images add
    (wmdd minus random, points)."""
    lines = [
        "| protocol | IPC | " + " | ".join(HEADLINE_SETS) + " | images add |",
        "|---|---|" + "---|" * (len(HEADLINE_SETS) + 1),
    ]
    for title, ipc, found in headline_rows(results):
        gain = 100 * (found[0]["acc_mean"] - found[1]["acc_mean"])
        lines.append(f"| {title} | {ipc} | " + " | ".join(acc(r) for r in found) + f" | {gain:+.1f} |")
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


def rows_table(rows: list[dict], all_rows: list[dict], scored: bool) -> list[str]:
    """Markdown lines: one per row, named by its experiment, with what the images add (and, for ``scored`` soft
    rows, the DD-Ranking scores)."""
    f3 = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    head = ["experiment", "top-1 %", "images add", "val %", "seeds", "steps", "s/student", "device", "measured"]
    spread = any(r.get("colour_spread") for r in all_rows)  # only where a set has drifted into colour
    head += ["colour spread"] if spread else []
    head += ["IOR", "HLR", "LRS", "ARS"] if scored else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        add = images_add(r, all_rows)
        cells = [
            experiment_name(r) + (f" (= {r['same_set_as']})" if r.get("same_set_as") else ""),
            acc(r),
            "—" if add is None else f"{100 * add:+.2f}",
            pct(r.get("val_acc_mean")),
            str(len(r["seeds"])),
            str(r.get("steps")),
            str(r.get("seconds_per_student")),
            r.get("device", "cpu"),
            r.get("measured_at", "—")[:10],
        ]
        cells += [f"{r['colour_spread']:.2f}" if r.get("colour_spread") is not None else "—"] if spread else []
        cells += [pct(r.get("ior")), pct(r.get("hlr")), f3(r.get("lrs")), f3(r.get("ars"))] if scored else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


#: Titles of the results files by dataset (benchmarks/common.py DATASETS).
DATASET_TITLES = {"fashion_mnist": "Fashion-MNIST", "fashion_mnist_rgb32": "Fashion-MNIST as RGB 32 px"}


def results_markdown(data: dict) -> str:
    """RESULTS: the protocol, the full-data references, every row by protocol, the plain-user rows and budgets."""
    p, teacher = data.get("protocol", {}), data.get("teacher", {})
    dataset = data.get("dataset", "fashion_mnist")
    lines = [
        f"# {DATASET_TITLES.get(dataset, dataset)} benchmark: every measured row",
        "",
        f"Generated by `python benchmarks/report.py` from `{dataset}.json`. Each row is a declared experiment: "
        "`python benchmarks/run_experiments.py --run --only <experiment>` measures it again. How the numbers were "
        "made: [benchmarks/NOTES.md](../NOTES.md).",
        "",
        f"Splits: {p.get('validation_size')} training images (seed {p.get('split_seed')}, stratified) are held out as "
        f"validation; sets are distilled or selected from the other {p.get('train_size')}. Step budgets come from "
        "validation curves; each student reads the 10k test split once, at the end. Top-1 %, mean ± std over the "
        "student seeds (3 unless the experiment says otherwise). Images add: the row minus the random subset of the "
        "same size under the same protocol, augmentation and student (points).",
        "",
        f"Teacher: {teacher.get('arch')}, test accuracy {teacher.get('test_acc')}. Student steps per IPC: "
        f"`{json.dumps(p.get('steps', {}))}`"
        + (f" (the validated budgets of `{p['steps_from']}`)." if p.get("steps_from") else "."),
        "",
    ]
    if any(r.get("colour_spread") for r in data["results"]):
        lines += [
            "Colour spread: mean(|R − G| + |G − B|) of a set's pixels in grey levels (0 for this grey data and for "
            "every real subset of it).",
            "",
        ]
    for kind, f in sorted((data.get("full_data") or {}).items()):
        lines.append(f"- Full-data student ({kind} labels, {f.get('steps')} steps): {acc(f)} ({f.get('note', '')}).")
    rows = data["results"]
    for protocol in sorted({r["protocol"] for r in rows}):
        chosen = [r for r in rows if r["protocol"] == protocol]
        lines += ["", f"## {protocol} protocol", ""] + rows_table(chosen, rows, scored=protocol == "soft")
    if data.get("plain_user"):
        lines += ["", "## Plain user (datasets + transformers.Trainer, no wmdd_hf import)", ""]
        lines += ["| method | IPC | labels | crop + flip | top-1 % | seeds |", "|---|---|---|---|---|---|"]
        for r in data["plain_user"]:
            lines.append(
                f"| {r['method']} | {r['ipc']} | {r['labels']} | {'yes' if r.get('augment', True) else 'no'} | "
                f"{pct(r['acc'])} ± {pct(r.get('acc_std'))} | {r.get('seeds')} |"
            )
    lines += ["", "## Step budgets (validation curves)", ""]
    for ipc, b in sorted(data.get("budget", {}).items(), key=lambda kv: int(kv[0])):
        gains = ", ".join(f"{m} {100 * g:+.2f}" for m, g in b["gains"].items())
        lines.append(
            f"- IPC {ipc}: curves to {b['max_steps']} steps; chosen {b['chosen']} ({b['reason']}); "
            f"last-quarter gains {gains}; `{b['plot']}`."
        )
    lines += [
        "",
        "## Scores (DD-Ranking, arXiv 2505.13300)",
        "",
        "IOR = acc(set) − acc(random subset), soft protocol. HLR = acc(full data, hard labels) − acc(set, hard "
        "labels). LRS = (e^a − e^−1)/(e − e^−1), a = 0.5·IOR − 0.5·HLR. ARS = the same map of b = 0.5·(IOR with "
        "augmentation) + 0.5·(IOR without). IOR and HLR in points; — means an input row is not measured yet.",
        "",
        "## Protocol",
        "",
        "```json",
        json.dumps(p, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


#: (file, marker name, table function): the generated blocks between ``<!-- NAME table: ... -->`` and
#: ``<!-- end of the NAME table -->``.
BLOCKS = (
    ("README.md", "headline", headline),
    ("docs/results.md", "regimes", regimes),
    ("docs/results.md", "scores", scores_table),
)


def replace_block(text: str, name: str, table_text: str) -> str:
    """``text`` with the block between the ``name`` markers replaced by ``table_text``."""
    pattern = rf"(<!-- {name} table: [^\n]*-->\n)(.*?)(<!-- end of the {name} table -->)"
    if not re.search(pattern, text, flags=re.S):
        raise ValueError(f"no '{name} table' markers found")
    return re.sub(pattern, lambda m: m.group(1) + table_text + "\n" + m.group(3), text, count=1, flags=re.S)


#: The generated blocks of the other benchmarks (benchmarks/run_experiments.py BENCHMARKS), by dataset.
OTHER_BLOCKS = {"fashion_mnist_rgb32": (("docs/results.md", "second teacher", second_teacher),)}


def write_all(results: dict, root: Path = ROOT) -> None:
    """Every generated file of one benchmark: its RESULTS and, for the main one, the figure and the README and docs
    blocks; for another, its own block of docs/results.md."""
    dataset = results.get("dataset", "fashion_mnist")
    (root / "benchmarks" / "results" / f"{dataset}.md").write_text(results_markdown(results))
    for file, name, make in BLOCKS if dataset == "fashion_mnist" else OTHER_BLOCKS.get(dataset, ()):
        path = root / file
        path.write_text(replace_block(path.read_text(), name, make(results)))
    if dataset == "fashion_mnist":
        headline_figure(results, root / "benchmarks" / "results" / "headline.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS / "fashion_mnist.json")
    parser.add_argument(
        "--print", choices=["headline", "regimes", "scores", "results", "second_teacher"], help="Print one instead."
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if args.print:
        parts = {"headline": headline, "regimes": regimes, "scores": scores_table, "results": results_markdown}
        parts["second_teacher"] = second_teacher
        print(parts[args.print](results))
    else:
        write_all(results)


if __name__ == "__main__":
    main()
