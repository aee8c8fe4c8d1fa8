"""The Fashion-MNIST benchmark as declared experiments: one JSON file per results row, and one runner.

    python benchmarks/run_experiments.py                         # which declared rows are measured, which missing
    python benchmarks/run_experiments.py --run                   # measures the missing ones, one after another
    python benchmarks/run_experiments.py --run --only 'wmdd_latent*' --device cuda   # a subset, on a GPU
    python benchmarks/run_experiments.py --benchmark fashion_mnist_rgb32 --run      # the second teacher family
    python benchmarks/report.py                                  # then RESULTS, the README's table and figure

An experiment (``benchmarks/fashion_mnist/experiments/<name>.json``) names a row: the ``method`` benchmarks/quality.py
builds (a synthesis or a selection), the ``row`` name it is kept under (a variant of wmdd with its own options),
``ipc``, ``protocol``, ``augment``, ``weighted_kd``, the ``student`` and the ``seeds``, and for a synthesised set the
``synthesis`` options. A row is measured when ``benchmarks/results/fashion_mnist.json`` holds it with every declared
seed; the runner skips those and runs ``benchmarks/quality.py`` for the others (which itself resumes a row stopped
part-way: finished students are kept in ``<work_dir>/pending/``). Each row in the results file carries its
measured time, device and seconds per student; the results file keeps the commands.

To add a comparison, add a file here (``--declare`` writes one per row already in the results file).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The declared benchmarks: name -> the benchmarks/quality.py flags that set its data and teacher. Each keeps its
#: experiments in ``benchmarks/<name>/experiments`` and its rows in ``benchmarks/results/<name>.json``. The RGB copy
#: trains the second teacher family and adopts the grey benchmark's validated step budgets.
BENCHMARKS = {
    "fashion_mnist": [],
    "fashion_mnist_rgb32": [
        "--dataset",
        "fashion_mnist_rgb32",
        "--teacher",
        "checkpoints/fashion-mnist-rgb32-resnet18",
        "--budget_from",
        "benchmarks/results/fashion_mnist.json",
    ],
}  # paths from the repository root, where the runner runs its commands (so the results file's commands read so)
EXPERIMENTS = HERE / "fashion_mnist" / "experiments"
RESULTS = HERE / "results" / "fashion_mnist.json"


def experiments_folder(benchmark: str) -> Path:
    return HERE / benchmark / "experiments"


def results_file(benchmark: str) -> Path:
    return HERE / "results" / f"{benchmark}.json"


#: benchmarks/quality.py's students, by the string a row records.
STUDENTS = {
    "wmdd_convnet {'width': 64}": "convnet",
    "vit_tiny_patch16_224 {'patch_size': 4, 'embed_dim': 96, 'depth': 6, 'num_heads': 3}": "vit_d96x6",
    "resnet18_small {}": "resnet18",
}
SYNTHESES = ("wmdd", "sre2l", "ablation_cross_entropy_per_class", "ablation_wasserstein_global")


def key(entry: dict) -> tuple:
    """What identifies a row (the same for an experiment and its measured row)."""
    return (
        entry.get("row", entry.get("method")),
        entry["ipc"],
        entry["protocol"],
        entry.get("augment", True),
        entry.get("weighted_kd", True),
        entry["student"],
    )


def load_experiments(folder: Path = EXPERIMENTS) -> dict[str, dict]:
    """``{name: experiment}`` of every declared file, checked: unknown keys and duplicate rows are errors."""
    allowed = {"method", "row", "ipc", "protocol", "augment", "weighted_kd", "student", "seeds", "synthesis"}
    out, seen = {}, {}
    for path in sorted(folder.glob("*.json")):
        entry = json.loads(path.read_text())
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
        if entry["student"] not in STUDENTS:
            raise ValueError(f"{path.name}: student {entry['student']!r} is not one of {list(STUDENTS)}")
        if key(entry) in seen:
            raise ValueError(f"{path.name} declares the same row as {seen[key(entry)]}")
        seen[key(entry)] = path.name
        out[path.stem] = entry
    return out


def measured(experiment: dict, rows: list[dict]) -> dict | None:
    """The results row of ``experiment`` when it holds every declared seed, else None."""
    for row in rows:
        if key({**row, "row": row["method"]}) == key(experiment):
            return row if set(experiment["seeds"]) <= set(row.get("seeds", [])) else None
    return None


def command(
    experiment: dict,
    results: Path = RESULTS,
    work_dir: str | None = None,
    device: str | None = None,
    extra: str = "",
    benchmark: str = "fashion_mnist",
) -> list:
    """The benchmarks/quality.py command that measures ``experiment`` of ``benchmark`` into ``results`` (``extra``:
    more quality.py flags, e.g. the plumbing-check sizes of device_checks.sh's QUICK mode)."""
    e = experiment
    cmd = [sys.executable, str(HERE / "quality.py"), *BENCHMARKS[benchmark]]
    cmd += ["--ipc", str(e["ipc"]), "--methods", e["method"]]
    cmd += ["--protocols", e["protocol"], "--seeds", *map(str, e["seeds"]), "--results", str(results)]
    cmd += ["--student", STUDENTS[e["student"]]]
    if e.get("row", e["method"]) != e["method"]:
        cmd += ["--row_name", e["row"]]
    if not e.get("augment", True):
        cmd.append("--no_augment")
    if not e.get("weighted_kd", True):
        cmd.append("--unweighted")
    if e.get("synthesis"):
        cmd += ["--synthesis", json.dumps(e["synthesis"], sort_keys=True)]
    if work_dir:
        cmd += ["--work_dir", work_dir]
    if device:
        cmd += ["--device", device]
    return cmd + shlex.split(extra)


def experiment_name(row: dict) -> str:
    """The experiment file name of a results row: ``<row>-ipc<N>-<protocol>[-noaug][-unweighted][-<student>]``."""
    parts = [row["method"], f"ipc{row['ipc']}", row["protocol"]]
    parts += [] if row.get("augment", True) else ["noaug"]
    parts += [] if row.get("weighted_kd", True) else ["unweighted"]
    parts += [] if STUDENTS[row["student"]] == "convnet" else [STUDENTS[row["student"]]]
    return "-".join(parts)


def declare(rows: list[dict], folder: Path = EXPERIMENTS) -> int:
    """One experiment file per results row not declared yet; returns how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    declared = {key(e) for e in load_experiments(folder).values()}
    written = 0
    for row in rows:
        method = row["method"] if row["method"] in SYNTHESES or row.get("synthesis") is None else "wmdd"
        entry = {
            "method": method,
            "row": row["method"],
            "ipc": row["ipc"],
            "protocol": row["protocol"],
            "augment": row.get("augment", True),
            "weighted_kd": row.get("weighted_kd", True),
            "student": row["student"],
            "seeds": row["seeds"],
        }
        if row.get("synthesis") is not None:
            entry["synthesis"] = {k: v for k, v in row["synthesis"].items() if v is not None}
        if key(entry) in declared:
            continue
        (folder / f"{experiment_name(row)}.json").write_text(json.dumps(entry, indent=2) + "\n")
        declared.add(key(entry))
        written += 1
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="Measure the missing rows (default: only list them).")
    p.add_argument("--only", default="*", help="Glob over experiment names.")
    p.add_argument("--benchmark", default="fashion_mnist", choices=list(BENCHMARKS), help="Which declared benchmark.")
    p.add_argument("--results", type=Path, default=None, help="Default: benchmarks/results/<benchmark>.json.")
    p.add_argument("--work_dir", default=None, help="benchmarks/quality.py's work folder (sets and students).")
    p.add_argument("--device", default=None)
    p.add_argument("--quality_args", default="", help="More benchmarks/quality.py flags for every command.")
    p.add_argument("--declare", action="store_true", help="Write an experiment file for every undeclared row.")
    args = p.parse_args()
    args.results = (args.results or results_file(args.benchmark)).resolve()  # the commands run from the root
    args.work_dir = str(Path(args.work_dir).resolve()) if args.work_dir else None
    folder = experiments_folder(args.benchmark)
    rows = json.loads(args.results.read_text())["results"] if args.results.exists() else []
    if args.declare:
        print(f"declared {declare(rows, folder)} experiments in {folder}")
        return
    todo = []
    for name, experiment in load_experiments(folder).items():
        if not fnmatch.fnmatch(name, args.only):
            continue
        row = measured(experiment, rows)
        status = "missing" if row is None else f"{100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}"
        print(f"{name:60s} {status}")
        if row is None:
            todo.append(experiment)
    print(f"{len(todo)} missing")
    for experiment in todo if args.run else []:
        cmd = command(experiment, args.results, args.work_dir, args.device, args.quality_args, args.benchmark)
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=HERE.parent)


if __name__ == "__main__":
    main()
