"""Quality benchmark on Fashion-MNIST: does the distilled set beat honest baselines under the same protocol?

    python benchmarks/quality.py --stage budget --ipc 10        # validation curves to 4x the old budget; picks steps
    python benchmarks/quality.py --ipc 10 --methods wmdd random barycenter_nearest_real --seeds 0 1 2
    python benchmarks/quality.py --stage sets --ipc 50 --methods wmdd    # the sets only (a long synthesis first)

Protocol (written into the results file):
* A fixed, seeded, stratified 5,000-image validation split is held out of the 60k training split. Distillation,
  coresets and random subsets draw only from the other 55,000 images.
* ``--stage budget`` trains a random-subset student and a wmdd student (seed 0) for 4x the old budget and records
  their validation curves; the budget per IPC is the first curve point from which on both curves gain less than
  0.3 points over their last quarter (4x if none). Every row at that IPC then uses that budget.
* Each student reads the 10k test split once, at the end. Nothing is chosen by looking at the test split.

Results merge into benchmarks/results/fashion_mnist.json (a row is replaced when the same method, IPC, protocol,
augmentation, weighting and student are measured again) and the Markdown table is rewritten from the JSON.
Each finished student is kept in ``<work_dir>/pending/`` until its row is written, so a row stopped part-way resumes
with the seeds still missing when the same command runs again.
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

from wmdd_hf import DistillationArguments, Distiller, load_backbone  # noqa: E402
from wmdd_hf.baselines import select_rows  # noqa: E402
from wmdd_hf.checkpoint import atomic_write_text  # noqa: E402
from wmdd_hf.checkpoint import load as load_checkpoint  # noqa: E402
from wmdd_hf.evaluation import EvaluationConfig, _as_tensors, evaluate_distilled, with_soft_labels  # noqa: E402
from wmdd_hf.hub import load_distilled  # noqa: E402
from wmdd_hf.scores import scores  # noqa: E402
from wmdd_hf.statistics import ClassStatistics  # noqa: E402
from wmdd_hf.visualization import save_accuracy_curve  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import (  # noqa: E402
    SPLIT_SEED,
    VALIDATION_SIZE,
    benchmark_splits,
    device_name,
    distillation_arguments,
    pick_device,
    reuse_statistics,
    share_statistics,
    statistics_file,
    work_folder,
)

RESULTS = ROOT / "benchmarks" / "results"
#: --student: name -> (timm architecture, its arguments); the ConvNet is the teacher's family, the ViT another one.
STUDENTS = {
    "convnet": ("wmdd_convnet", {"width": 64}),
    "vit_d96x6": ("vit_tiny_patch16_224", {"patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}),
}
OLD_STEPS = {1: 1000, 10: 300, 50: 600}  # the previous protocol's budgets (min(1000, max(150, 30000 // N)) epochs)
SYNTHESIS = {  # method -> (feature_loss, bn_loss)
    "wmdd": ("wasserstein", "per_class"),
    "sre2l": ("cross_entropy", "global"),
    "ablation_cross_entropy_per_class": ("cross_entropy", "per_class"),
    "ablation_wasserstein_global": ("wasserstein", "global"),
}
SELECTIONS = ("random", "herding", "kcenter", "barycenter_nearest_real")
SCORE_KEYS = ("ior", "hlr", "lrs", "ars")
NOTES = [
    "Every choice behind these numbers (student step budgets, synthesis defaults, sweep points) comes from the "
    "validation split; the test split is read once per trained student, at the end, and never used to choose.",
    "The teacher (checkpoints/fashion-mnist-convnet64) was trained on all 60,000 training images, the validation "
    "part included, before this protocol existed: validation accuracies may read a little high. Every choice made on "
    "them compares sets under the same teacher, so the comparison stands; a teacher trained without the validation "
    "part would remove the caveat.",
    "The budget rule is applied to the validation curve of one long run per method (seed 0, cosine schedule over the "
    "longest budget), evaluated every 1/12 of it. The seed-0 row of a table at that budget reuses those runs (same "
    "set, protocol and seed); their test accuracy was recorded at the end of the run and not looked at for the choice.",
    "Old numbers (benchmarks/results/fashion_mnist_v1.md) came from under-trained students (300 steps at IPC 10, "
    "curves on the test split); they are not comparable with these.",
    "Rows with device 'NVIDIA H200' ran on a lent GPU through benchmarks/device_checks.sh (2026-11-30), the same protocol and code as on this CPU; the IPC 1 wmdd row ran on this CPU (418 s per student).",
    "The IPC 10 budget curves (budget-ipc10.png) were measured on CPU in session 2 with the previous default wmdd set (loss_scale sum, bn_weight 0.1); the IPC 1 and 50 curves on the H200 with that same previous default set.",
    "The plain-user rows use the current default IPC 10 set (the H200 wmdd set of the table, loss_scale mean, bn_weight 10), rerun on this CPU on 2026-11-30; the previous default set (sum, 0.1) had given wmdd hard 70.21 +- 0.84, soft 74.32 +- 1.00 (random unchanged: the same published subset and seeds).",
    "Rows with device 'cpu' measured on 2026-11-30 (the no-augmentation and unweighted wmdd rows, the coreset no-augmentation rows) train on the very sets of the H200 rows where those were brought back (benchmarks/quality.py reuses a finished distilled/ folder), so each pair of rows differs only in the protocol switch. Sets selected from a statistics pass (herding, k-center, nearest) are reselected on the CPU from the same 55,000 images. Rows recorded before the cap existed carry max_features_per_class None: every feature was kept then.",
    "Students trained on this CPU in session 5 (2026-11-30, later rows) use the NHWC memory layout where that is faster (EvaluationConfig.channels_last: the batch-norm soft-protocol ConvNet; the instance-norm hard-protocol one stays NCHW): the same protocol and numbers up to float rounding (a test checks it), about 1.35x less time per step.",
    "At IPC 1 herding, k-center and nearest-to-barycenter select the same image per class (the one nearest to the class's mean feature: herding's first pick, k-center's start, and the one-point W2 barycenter is the mean). Their soft rows are that one set measured three times (identical accuracies per seed). Later rows marked 'method (= other)' (same_set_as in the JSON) reuse the other selection's students instead of training them again: same training rows in the same order, protocol, steps and seeds give the same students (benchmarks/quality.py twin_row).",
    "The IPC 1 rows of the 2x2 ablation, SRe2L, the official recipe and the inits (this CPU, session 7, 2026-11-30) synthesise from the IPC 1 point (bn_weight 100, loss_scale mean; recipe='official' brings its own loss and schedule; init real refines for 200 steps as at IPC 10), so they differ from the wmdd row only in the named switch. SRe2L's IPC 1 rows without augmentation are below chance, with hard labels (5.54) and with the teacher's soft labels (5.84): its ten images are collages the teacher reads (79.37 with augmented views; its argmax disagrees with the label on 2 of 10), and a fresh student that sees only those ten views scores below chance on real images in every seed (the labels are 0-9 in order, as in every other set). Its confusion on the validation split (seed 0, hard labels, 5.38 %): it predicts four classes for 89 % of the images (dress 37 %, T-shirt 24 %, sandal 16 %, bag 11 %), mostly for other classes' images (trousers -> T-shirt 440 of 500, coats -> dress 404 of 500, ankle boots -> bag 240 of 500): the gross shapes in these collages belong to other classes.",
    "IPC 50 (session 8, this CPU): the H200 sets of the IPC 50 soft rows did not come back (the folder "
    "outputs/device-work/ipc50/...-96f7279a holds an older set, made with the previous defaults loss_scale sum and "
    "bn_weight 0.1, not the table's). The wmdd IPC 50 set was synthesised again here with the table's options (seed "
    "0, 1,850 s on one core): feature loss 2015.5 -> 408.9, teacher agreement 0.95, mean W2 cost 66.14, against "
    "2009.5 -> 408.8, 0.95 and 66.08 on the H200; its hard and no-augmentation rows (and, where measured, its soft "
    "row, which then replaces the H200 one) train on that set. random picks the same rows on any device (seeded by "
    "row index), so its CPU rows pair with its H200 soft row. Session 13 measured that soft row on the CPU set: "
    "90.26 +- 0.11 (90.41, 90.17, 90.20), against 90.10 +- 0.10 on the H200 set; it replaces the H200 row, so all "
    "three protocols of the IPC 50 wmdd row now measure one set.",
    "Selections from a statistics pass made on another device: benchmarks on the H200 run its convolutions in TF32 "
    "(about 5e-4 relative rounding). Perturbing the CPU pass's features by relative noise of 1e-5 / 1e-4 / 1e-3 "
    "leaves herding's and k-center's IPC 10 picks identical in every class, so the IPC 10 coreset rows measured on "
    "this CPU (hard, no augmentation) train on the sets of their H200 soft rows. At IPC 50 herding keeps 96 % / 75 % "
    "of its picks under 1e-4 / 1e-3 (one class keeps 36 %), k-center all of them: herding's IPC 50 hard and "
    "no-augmentation rows need a soft row on the same (CPU) set. benchmarks/results/selection_sensitivity.md. "
    "Session 13 measured that soft row on this CPU's picks: 90.90 +- 0.23 (91.15, 90.59, 90.95), against 90.84 +- "
    "0.17 on the H200's; it replaces the H200 row, so all three protocols of herding's IPC 50 row now measure picks "
    "made on this CPU (two CPU passes over the same images and teacher; the picks' W2² reads 113.4 from either).",
    "IPC 10 ablations (session 9, this CPU): the two ablation sets were synthesised again here (session 8, the "
    "table's options: W + global BN feature loss 386.7 -> 77.6, agreement 0.96; CE + per-class BN CE 5.44 -> 0.096, "
    "agreement 1.00) because the H200's did not come back; their soft rows were measured again on these sets and "
    "replace the H200 ones (W + global 84.60 +- 0.07 there, 84.59 +- 0.43 here; CE + per-class BN 82.42 +- 0.34 "
    "there, 83.02 +- 0.25 here), so every protocol of an ablation row measures one set. Rows carry measured_at "
    "since session 9: benchmarks/merge_results.py keeps the newest measurement of a row.",
    "wmdd rows use the synthesis options chosen on validation (benchmarks/results/sweep.md): IPC 10 and 50 the library defaults (loss_scale mean, bn_weight 10), IPC 1 bn_weight 100 (configs/fashion_mnist_ipc1.yaml). Every benchmark set keeps all features (max_features_per_class None).",
]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--stage", choices=["budget", "table", "sets", "full_data", "publish_random", "render"], default="table"
    )
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument("--ipc", type=int, nargs="+", default=[10])
    p.add_argument("--methods", nargs="+", default=["wmdd", "random", "barycenter_nearest_real"])
    p.add_argument(
        "--protocols",
        nargs="+",
        default=["soft"],
        choices=["soft", "hard", "fixed"],
        help="fixed: every set's soft_label column written by the teacher once per image (T=1), no teacher in "
        "the student loop (wmdd_hf.evaluation).",
    )
    p.add_argument("--no_augment", action="store_true", help="Students without crop/flip/cutmix (for ARS).")
    p.add_argument("--unweighted", action="store_true", help="Plain KD (no barycenter-weighted relabelling).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--budget_factor", type=int, default=4, help="--stage budget: curves to this multiple of the old budget."
    )
    p.add_argument("--budget_steps", type=int, default=None, help="--stage budget: override the longest budget.")
    p.add_argument("--full_data_steps", type=int, default=16000, help="--stage full_data: soft-protocol steps.")
    p.add_argument("--full_data_hard_steps", type=int, default=8000, help="--stage full_data: hard-protocol steps.")
    p.add_argument("--iterations", type=int, default=1000, help="Synthesis steps per class batch.")
    p.add_argument("--bn_weight", type=float, default=None, help="Default: DistillationArguments' default.")
    p.add_argument("--init", default=None, help="Default: DistillationArguments' default.")
    p.add_argument(
        "--synthesis",
        default=None,
        help='JSON of further DistillationArguments for the synthesised sets, e.g. \'{"loss_scale": "mean"}\', '
        "or the path of such a file (benchmarks/sweep.py --best_out writes one).",
    )
    p.add_argument("--device", default=None, help="Students and teacher; default: cuda when available, else cpu.")
    p.add_argument(
        "--row_name",
        default=None,
        help="Name of the rows in the table (default: the method), e.g. wmdd_official for --synthesis "
        '\'{"recipe": "official"}\', so a variant never replaces the default method\'s row.',
    )
    p.add_argument("--work_dir", default=str(ROOT / "outputs" / "benchmark-v2"))
    p.add_argument("--results", default=str(RESULTS / "fashion_mnist.json"))
    p.add_argument(
        "--limit_train", type=int, default=None, help="Plumbing checks only: the first N training rows (no results)."
    )
    p.add_argument(
        "--student_steps", type=int, default=None, help="Plumbing checks only: overrides the validated budget."
    )
    p.add_argument(
        "--student",
        default="convnet",
        choices=list(STUDENTS),
        help="Student architecture (built from scratch; rows are kept apart by student).",
    )
    p.add_argument("--device_note", default="CPU, 2 cores (the project's CI machine kind), students on 1 thread")
    args = p.parse_args()
    args.device = pick_device(args.device)
    args.overrides = synthesis_overrides(args)
    return args


def synthesis_overrides(args) -> dict:
    """The DistillationArguments of the synthesised sets beyond the method's two losses (sorted, JSON-able)."""
    extra = {}
    if args.synthesis:
        text = Path(args.synthesis).read_text() if Path(args.synthesis).is_file() else args.synthesis
        extra = json.loads(text)
        extra = extra.get("point", extra)  # a sweep --best_out file carries {"point": {...}, ...}
    given = {"bn_weight": args.bn_weight, "init": args.init}
    overrides = {"iterations": args.iterations, **{k: v for k, v in given.items() if v is not None}, **extra}
    # recorded with the library defaults they rely on, so a row says what made its set even after a default changes
    defaults = DistillationArguments(output_dir="unused").to_dict()
    effective = {k: defaults[k] for k in ("loss_scale", "bn_weight", "init")}
    effective["max_features_per_class"] = None  # the benchmark keeps every feature (the cap's cost: cap_cost.md)
    return dict(sorted({**effective, **overrides}.items()))


def synthesis_tag(overrides: dict) -> str:
    """A short, stable folder suffix for a synthesis configuration."""
    import hashlib

    return hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]


def curves_dir(args) -> Path:
    """Curves go beside the results file (benchmarks/results/curves for the main one; a part's own folder for a
    part, copied here when it is merged)."""
    return Path(args.results).resolve().parent / "curves"


def distil(method: str, ipc: int, args, teacher, train, work: Path) -> tuple[object, float, dict]:
    feature_loss, bn_loss = SYNTHESIS[method]
    out = set_folder(work, method, ipc, args.overrides)
    if (out / "distilled" / "wmdd_hf.json").exists() and not (out / "run_config.json").exists():
        # a finished set brought back without its run folder (e.g. from the lent GPU): train on that very set
        dataset, _, metadata = load_distilled(str(out / "distilled"))
        print(f"reusing the finished set {out / 'distilled'}", flush=True)
        return dataset, 0.0, metadata.get("metrics", {})
    shared = work / statistics_file(args.overrides)
    reuse_statistics(shared, out)
    d_args = distillation_arguments(
        output_dir=str(out),
        images_per_class=ipc,
        feature_loss=feature_loss,
        bn_loss=bn_loss,
        seed=0,
        disable_tqdm=True,
        **args.overrides,
    )
    start = time.time()
    distiller = Distiller(teacher, d_args, train)
    distilled = distiller.distill()
    share_statistics(out, shared)
    return distilled, time.time() - start, distiller.metrics


def set_folder(work: Path, method: str, ipc: int, overrides: dict) -> Path:
    feature_loss, bn_loss = SYNTHESIS[method]
    return work / f"{feature_loss}-{bn_loss}-ipc{ipc}-{synthesis_tag(overrides)}"


def build_set(method: str, ipc: int, args, teacher, train, work: Path):
    """``(dataset, seconds, extra)`` for a distilled or selected set drawn from ``train`` only."""
    start = time.time()
    if method in SYNTHESIS:
        distilled, seconds, metrics = distil(method, ipc, args, teacher, train, work)
        keys = ("feature_loss_start", "feature_loss_end", "teacher_agreement", "w2_cost_mean", "colour_spread")
        return distilled, seconds, {k: metrics.get(k) for k in keys}
    return train.select(selected_rows(method, ipc, args, teacher, train, work)), time.time() - start, {}


def selected_rows(method: str, ipc: int, args, teacher, train, work: Path) -> list[int]:
    """Training rows (in order) that the selection ``method`` picks at ``ipc``."""
    if method not in SELECTIONS:
        raise SystemExit(f"unknown method {method}")
    if not (work / "statistics.pt").exists() or method == "barycenter_nearest_real":
        distil("wmdd", ipc, args, teacher, train, work)
    stats_file = work / "statistics.pt"  # the clean pass; with augmented statistics, that run's own file
    if not stats_file.exists() or method == "barycenter_nearest_real":
        stats_file = set_folder(work, "wmdd", ipc, args.overrides) / "statistics.pt"
    stats = ClassStatistics.load(stats_file)
    bary = (
        load_checkpoint(set_folder(work, "wmdd", ipc, args.overrides) / "barycenters.pt")
        if method.startswith("bary")
        else None
    )
    return select_rows(stats, method, ipc, seed=0, barycenters=bary)


def twin_row(existing: dict, method: str, ipc: int, config, args, teacher, train, work: Path) -> dict | None:
    """A measured row of another selection method that picked exactly these training rows, in the same order, under
    this row's protocol and seeds. Students are deterministic in (images, order, labels, protocol, seed), so such a
    row's students are this row's students: it is reused, not trained again (at IPC 1 herding, k-center and
    nearest-to-barycenter pick the same image per class)."""
    if method not in SELECTIONS:
        return None
    mine = None
    for r in existing.get("results", []):
        same_protocol = (r["ipc"], r["protocol"], r.get("augment", True), r.get("weighted_kd", True)) == (
            ipc,
            config.protocol,
            config.augment,
            config.weighted_kd,
        )
        if r["method"] not in SELECTIONS or r["method"] == method or not same_protocol:
            continue
        if r["steps"] != config.steps or r["seeds"] != list(args.seeds) or r.get("same_set_as"):
            continue
        if r["student"] != f"{config.student} {config.student_kwargs}":
            continue
        mine = mine if mine is not None else selected_rows(method, ipc, args, teacher, train, work)
        if selected_rows(r["method"], ipc, args, teacher, train, work) == mine:
            return r
    return None


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"results": []}


def row_key(r: dict) -> tuple:
    return (r["method"], r["ipc"], r["protocol"], r.get("augment", True), r.get("weighted_kd", True), r["student"])


def merge_results(path: Path, payload: dict, rows: list[dict]) -> dict:
    data = read_results(path)
    commands = data.get("commands", [])
    for k, v in payload.items():
        if k == "protocol":
            data.setdefault("protocol", {}).update(v)
        elif k not in ("results", "command"):
            data[k] = v
    if payload.get("command") and payload["command"] not in commands:
        commands.append(payload["command"])
    data["commands"] = commands
    new = {row_key(r): r for r in rows}
    data["results"] = [r for r in data["results"] if row_key(r) not in new] + list(new.values())
    data["results"].sort(key=lambda r: (r["protocol"], r["ipc"], r["method"], not r.get("augment", True)))
    add_scores(data)
    path.write_text(json.dumps(data, indent=2))
    path.with_suffix(".md").write_text(render_markdown(data))
    return data


def add_scores(data: dict) -> None:
    """DD-Ranking scores on every method row (None where an input row is missing)."""

    def acc(method, ipc, protocol, augment=True, weighted=True):
        for r in data["results"]:
            if (r["method"], r["ipc"], r["protocol"], r.get("augment", True)) == (method, ipc, protocol, augment):
                if r.get("weighted_kd", True) == weighted or r["method"] != "wmdd":
                    return r["acc_mean"]
        return None

    full_hard = (data.get("full_data") or {}).get("hard", {}).get("acc_mean")
    for r in data["results"]:
        if r["protocol"] != "soft" or not r.get("augment", True):
            continue
        m, ipc, w = r["method"], r["ipc"], r.get("weighted_kd", True)
        inputs = {  # the names say which row is missing when a score is None
            "random, soft": acc("random", ipc, "soft"),
            "hard labels": acc(m, ipc, "hard"),
            "full data, hard labels": full_hard,
            "no augmentation": acc(m, ipc, "soft", augment=False, weighted=w),
            "random, no augmentation": acc("random", ipc, "soft", augment=False),
        }
        r.update(scores(r["acc_mean"], *inputs.values()))
        own = ("random, soft", "random, no augmentation") if m == "random" else ()  # random's own rows: named once
        r["waiting_for"] = [name for name, value in inputs.items() if value is None and name not in own]


def waiting_rows(data: dict) -> list[str]:
    """One line per soft method row with a score still missing: the rows its scores wait for."""
    return [
        f"{r['method']}{'' if r.get('weighted_kd', True) else ' (unweighted KD)'}, IPC {r['ipc']}: "
        + "; ".join(r["waiting_for"])
        for r in data["results"]
        if r.get("waiting_for")
    ]


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def images_add(row: dict, rows: list[dict]) -> float | None:
    """``acc(row) - acc(random)`` at the same IPC, protocol, augmentation, weighting and student (a fraction), or
    None while that random row is missing (and for the random row itself)."""
    same = ("ipc", "protocol", "augment", "weighted", "student")
    for r in rows:
        if r["method"] == "random" and all(r.get(k) == row.get(k) for k in same) and row["method"] != "random":
            return row["acc_mean"] - r["acc_mean"]
    return None


def render_markdown(data: dict) -> str:
    p = data.get("protocol", {})
    lines = ["# Fashion-MNIST quality benchmark", "", "Generated by (parts merged into one file):", ""]
    lines += [f"- `{c}`" for c in data.get("commands", [])] + [""]
    lines += [
        "Machine: each row names the device its students ran on (`device`; rows without one ran on this 2-core "
        "CPU machine). The protocol is the same on every device.",
        "",
        f"Splits: {p.get('validation_size')} training images (seed {p.get('split_seed')}, stratified) are held out "
        "as validation; sets are distilled or selected from the other "
        f"{p.get('train_size')}. Step budgets come from validation curves; each student reads the 10k test split "
        "once, at the end. Top-1 %, mean ± std over student seeds.",
        "",
        f"Teacher: {data.get('teacher', {}).get('arch')} — test accuracy {data.get('teacher', {}).get('test_acc')} "
        "(trained on all 60k training images, validation part included; see the note below).",
        "",
        f"Student steps per IPC (chosen on validation): `{json.dumps(p.get('steps', {}))}`; weighted KD: "
        f"{p.get('weighted_kd')}.",
        "",
    ]
    full = data.get("full_data") or {}
    for kind in ("soft", "hard"):
        if kind in full:
            f = full[kind]
            lines.append(
                f"Full-data student ({kind} labels, {f.get('steps')} steps on {p.get('train_size')} images): "
                f"{pct(f['acc_mean'])} ± {pct(f['acc_std'])} ({f.get('note', '')})."
            )
    lines.append("")
    for protocol in sorted({r["protocol"] for r in data["results"]}):
        lines += [
            f"## {protocol} protocol",
            "",
            "| method | IPC | augment | weighted KD | top-1 % | images add | val % | IOR | HLR | LRS | ARS | seeds "
            "| steps | s/student | device |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in [r for r in data["results"] if r["protocol"] == protocol]:
            f3 = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
            add = images_add(r, data["results"])
            lines.append(
                f"| {r['method']}{' (= ' + r['same_set_as'] + ')' if r.get('same_set_as') else ''} | {r['ipc']} | "
                f"{'yes' if r.get('augment', True) else 'no'} | "
                f"{'yes' if r.get('weighted') else 'no'} | {pct(r['acc_mean'])} ± {pct(r['acc_std'])} | "
                f"{'—' if add is None else f'{100 * add:+.2f}'} | "
                f"{pct(r.get('val_acc_mean'))} | {pct(r.get('ior'))} | {pct(r.get('hlr'))} | {f3(r.get('lrs'))} | "
                f"{f3(r.get('ars'))} | {len(r['seeds'])} | {r.get('steps')} | {r.get('seconds_per_student')} | "
                f"{r.get('device', 'cpu')} |"
            )
        lines.append("")
    synthesized = sorted(
        {
            (r["method"], r["ipc"], json.dumps(r["synthesis"], sort_keys=True))
            for r in data["results"]
            if r.get("synthesis")
        }
    )
    if synthesized:
        lines += ["Synthesis options of the synthesised sets (besides each method's two losses):", ""]
        lines += [f"- {m}, IPC {ipc}: `{opts}`" for m, ipc, opts in synthesized] + [""]
    if data.get("plain_user"):
        lines += ["## Plain user (datasets + transformers.Trainer, no wmdd_hf import)", ""]
        lines += ["| method | IPC | labels | crop + flip | test top-1 % | seeds |", "|---|---|---|---|---|---|"]
        for r in data["plain_user"]:
            lines.append(
                f"| {r['method']} | {r['ipc']} | {r['labels']} | {'yes' if r.get('augment', True) else 'no'} | "
                f"{pct(r['acc'])} ± {pct(r.get('acc_std'))} | {r.get('seeds')} |"
            )
        lines.append("")
    if data.get("budget"):
        lines += ["## Step budgets (validation curves)", ""]
        for ipc, b in sorted(data["budget"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"- IPC {ipc}: curves to {b['max_steps']} steps ({b['factor']}x the old {b['old_steps']}); chosen "
                f"{b['chosen']} ({b['reason']}). Last-quarter gains at the chosen budget: "
                + ", ".join(f"{m} {100 * g:+.2f}" for m, g in b["gains"].items())
                + f". Curves: `{b['plot']}`."
            )
        lines.append("")
    lines += [
        "## Scores (DD-Ranking, arXiv 2505.13300)",
        "",
        "IOR = acc(method) − acc(random subset), same soft protocol. HLR = acc(full data, hard labels) − "
        "acc(method, hard labels). LRS = (e^a − e^−1)/(e − e^−1), a = 0.5·IOR − 0.5·HLR. ARS = (e^b − e^−1)/(e − e^−1), "
        "b = 0.5·(IOR with augmentation) + 0.5·(IOR without augmentation). Accuracies as fractions; IOR and HLR "
        "shown in points. — means an input row has not been measured yet.",
        "",
    ]
    waiting = waiting_rows(data)
    if waiting:
        lines += ["Rows whose scores wait for input rows (the rows not measured yet):", ""]
        lines += [f"- {w}" for w in waiting] + [""]
    else:
        lines += ["Every method row has all four scores.", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in data.get("notes", [])] + [""]
    lines += ["## Protocols", "", "```json", json.dumps(p, indent=2), "```", ""]
    return "\n".join(lines)


def choose_budget(curves: dict[str, list], max_steps: int, tolerance: float = 0.003) -> tuple[int, dict, str]:
    """The first curve point S from which on every curve gains < ``tolerance`` between 0.75 S and S."""

    def gain(curve, s):
        steps, accs = zip(*curve)
        return float(np.interp(s, steps, accs) - np.interp(0.75 * s, steps, accs))

    points = [s for s, _ in next(iter(curves.values()))]
    for i, s in enumerate(points):
        if s < max_steps / 4:
            continue
        if all(gain(c, t) < tolerance for c in curves.values() for t in points[i:]):
            return s, {m: gain(c, s) for m, c in curves.items()}, "first point from which both curves gain < 0.3"
    return max_steps, {m: gain(c, max_steps) for m, c in curves.items()}, "NOT converged by the rule: longest budget"


def main() -> None:
    args = parse()
    torch.manual_seed(0)
    work = work_folder(args.work_dir, args.limit_train)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    train, validation, test = benchmark_splits(args.limit_train)
    teacher = load_backbone(args.teacher).freeze().to(args.device)
    payload: dict = {
        "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:]),
        "machine": args.device_note if args.device.type == "cpu" else f"{device_name(args.device)} (students)",
        "teacher": {
            "arch": teacher.metadata.get("architecture"),
            "path": str(Path(args.teacher).relative_to(ROOT))
            if Path(args.teacher).is_relative_to(ROOT)
            else args.teacher,
            "test_acc": teacher.metadata.get("test_acc"),
        },
        "synthesis": {**args.overrides, "seed": 0},
        "notes": NOTES,
        "protocol": {
            "validation_size": VALIDATION_SIZE,
            "split_seed": SPLIT_SEED,
            "train_size": len(train),
            "weighted_kd": True,
            "test_reads": "once per student, at the end",
        },
    }
    existing = read_results(results)
    steps_table = {int(k): v for k, v in existing.get("protocol", {}).get("steps", {}).items()}
    if args.student_steps:
        steps_table = {ipc: args.student_steps for ipc in args.ipc}
    if args.stage == "render":  # re-renders the Markdown, with the notes of this file
        merge_results(results, {"notes": NOTES}, [])
        return
    if args.stage == "publish_random":
        for ipc in args.ipc:
            publish_random(ipc, args, teacher, train, work)
        return
    if args.stage == "full_data":
        run_full_data(args, teacher, train, validation, test, payload, results)
        return
    for ipc in args.ipc:
        if args.stage == "budget":
            run_budget(ipc, args, teacher, train, validation, test, work, payload, results)
            continue
        if ipc not in steps_table:
            raise SystemExit(f"No validated budget for IPC {ipc}: run --stage budget --ipc {ipc} first.")
        for method in args.methods:
            dataset, seconds, extra = build_set(method, ipc, args, teacher, train, work)
            if args.stage == "sets":  # the sets only (a long synthesis apart from its students)
                print(json.dumps({"method": method, "ipc": ipc, "distill_seconds": round(seconds, 1), **extra}))
                continue
            digest = set_fingerprint(dataset)  # one per set, for every protocol's pending students
            for protocol in args.protocols:
                config = EvaluationConfig(
                    protocol=protocol,
                    steps=steps_table[ipc],
                    augment=not args.no_augment,
                    weighted_kd=not args.unweighted,
                    eval_every=max(1, steps_table[ipc] // 4),  # the validation curve of a table row: 4 points
                    progress=False,
                    student=STUDENTS[args.student][0],
                    student_kwargs=STUDENTS[args.student][1],
                )
                tag = (
                    f"{args.row_name or method}-ipc{ipc}-{protocol}"
                    + ("-noaug" if args.no_augment else "")
                    + ("-unweighted" if args.unweighted else "")
                    + ("" if args.student == "convnet" else f"-{args.student}")
                )
                plot = curves_dir(args) / f"{tag}.png"
                plot.parent.mkdir(parents=True, exist_ok=True)
                seeds = list(args.seeds)
                twin = twin_row(existing, method, ipc, config, args, teacher, train, work)
                if twin is not None:
                    row = {k: v for k, v in twin.items() if k not in SCORE_KEYS}
                    row.update(method=args.row_name or method, same_set_as=twin["method"])
                    print(json.dumps(row), flush=True)
                    existing = merge_results(results, payload, [row])
                    continue
                reuse = reused_budget_runs(existing, ipc, method, protocol, config, steps_table[ipc], args)
                seeds = [s for s in seeds if s not in reuse]
                identity = {
                    "row": tag,
                    "protocol": config.describe(),
                    "set": digest,
                    "device": device_name(args.device),
                    "teacher": str(args.teacher),
                }
                pending = work / "pending" / f"{tag}.json"
                if protocol == "fixed":  # every set's labels from one call: the same teacher, T, once per image
                    dataset = with_soft_labels(dataset, teacher, temperature=1.0)
                result = (
                    train_seeds(dataset, test, teacher, config, seeds, validation, plot, args.device, pending, identity)
                    if seeds
                    else None
                )
                runs = [*reuse.values(), *(_runs(result) if result else [])]
                row = make_row(args.row_name or method, ipc, protocol, config, runs, seconds, extra, result or {})
                row["device"] = device_name(args.device)
                if method in SYNTHESIS:
                    row["synthesis"] = args.overrides
                print(json.dumps(row), flush=True)
                existing = merge_results(results, payload, [row])
                pending.unlink(missing_ok=True)  # the row is in the results file now
                if method in SYNTHESIS:
                    write_card_scores(set_folder(work, method, ipc, args.overrides), method, ipc, existing)


def write_card_scores(out: Path, method: str, ipc: int, data: dict) -> None:
    """Puts this set's rows (accuracy, IOR, HLR, LRS, ARS) into its dataset card and wmdd_hf.json."""
    from wmdd_hf.hub import update_distilled_metadata

    folder = out / "distilled"
    rows = [r for r in data["results"] if r["method"] == method and r["ipc"] == ipc]
    if not rows or not folder.exists():
        return
    lines = [
        "| protocol | augment | weighted KD | student | student steps | top-1 % | images add (points) | IOR (points) "
        "| HLR (points) | LRS | ARS | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f3 = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
        add = images_add(r, data["results"])
        lines.append(
            f"| {r['protocol']} | {r.get('augment', True)} | {r.get('weighted')} | {r.get('student')} | {r['steps']} | "
            f"{pct(r['acc_mean'])} ± {pct(r['acc_std'])} | {'—' if add is None else f'{100 * add:+.2f}'} | "
            f"{pct(r.get('ior'))} | {pct(r.get('hlr'))} | "
            f"{f3(r.get('lrs'))} | {f3(r.get('ars'))} | {len(r['seeds'])} |"
        )
    note = (
        "\n\nStudents trained from scratch on this set, tested once on the real test split; step budgets chosen on a "
        "held-out validation split. Images add: accuracy minus a random real subset's of the same size under the same "
        "protocol, augmentation and student. Protocols: soft (the teacher relabels every view), hard (class labels), "
        "fixed (the set's soft_label column, no teacher). IOR: accuracy over a random real subset of the same size "
        "under the same protocol; HLR, LRS, ARS as defined by DD-Ranking (arXiv:2505.13300). "
        "Source: benchmarks/results/fashion_mnist.json."
    )
    update_distilled_metadata(folder, evaluation={"rows": rows}, evaluation_markdown="\n".join(lines) + note)


def set_fingerprint(dataset) -> str:
    """A digest of every column of a (small) set: a resumed row must train on the very same images and labels."""
    import hashlib

    h = hashlib.sha1()
    for batch in dataset.with_format("numpy").iter(batch_size=256):
        for name in sorted(batch):
            h.update(name.encode())
            h.update(np.ascontiguousarray(batch[name]).tobytes())
    return h.hexdigest()[:16]


def train_seeds(dataset, test, teacher, config, seeds, validation, plot, device, pending: Path, identity: dict) -> dict:
    """One student per seed, like ``evaluate_distilled``, but each finished seed is written to ``pending`` at once:
    a row stopped part-way (an IPC 50 student is 30 minutes on one CPU core; sessions end) resumes with only the
    seeds still missing, provided ``identity`` (row, protocol, set digest, device, teacher) is the same."""
    done: dict[int, dict] = {}
    identity = json.loads(json.dumps(identity))  # as it reads back from the file (tuples become lists)
    if pending.exists():
        state = json.loads(pending.read_text())
        if state.get("identity") == identity:
            done = {int(s): run for s, run in state["runs"].items() if int(s) in seeds}
            print(f"resuming {pending.name}: seeds {sorted(done)} already trained", flush=True)
    for seed in seeds:
        if seed in done:
            continue
        r = evaluate_distilled(
            dataset,
            test,
            teacher=None if config.protocol == "fixed" else teacher,  # proof that it trains without one
            config=config,
            seeds=(seed,),
            validation_dataset=validation,
            device=device,
        )
        done[seed] = {
            "acc": r["accs"][0],
            "curve": r["curves"][0],
            "seconds": r["seconds_per_student"],
            "weighted": r["weighted"],
        }
        atomic_write_text(json.dumps({"identity": identity, "runs": done}), pending)
    runs = [done[s] for s in seeds]
    save_accuracy_curve(
        {f"seed {s}": done[s]["curve"] for s in seeds}, plot, f"{config.protocol} protocol (validation accuracy)"
    )
    return {
        "seeds": list(seeds),
        "accs": [r["acc"] for r in runs],
        "curves": [r["curve"] for r in runs],
        "seconds_per_student": round(float(np.mean([r["seconds"] for r in runs])), 1),
        "weighted": runs[0]["weighted"],
    }


def _runs(result: dict) -> list[dict]:
    return [
        {"seed": s, "acc": a, "val_acc": c[-1][1] if c else None, "curve": c}
        for s, a, c in zip(result["seeds"], result["accs"], result["curves"])
    ]


def reused_budget_runs(existing: dict, ipc: int, method: str, protocol: str, config, steps: int, args) -> dict:
    """Seed-0 budget runs whose protocol equals this row's (same steps, same set, same device kind): reused instead
    of trained again."""
    b = existing.get("budget", {}).get(str(ipc))
    if not b or protocol != "soft" or not config.augment or not config.weighted_kd or b["max_steps"] != steps:
        return {}
    run = b.get("runs", {}).get(method)
    if not run or run.get("device", "cpu") != device_name(args.device):
        return {}
    if method in SYNTHESIS and run.get("synthesis", b.get("synthesis")) != args.overrides:
        return {}  # the budget curve was measured on a set made with other synthesis options
    return {0: run}


def make_row(method, ipc, protocol, config, runs, seconds, extra, result) -> dict:
    accs = [r["acc"] for r in runs]
    vals = [r["val_acc"] for r in runs if r.get("val_acc") is not None]
    return {
        "method": method,
        "ipc": ipc,
        "protocol": protocol,
        "augment": config.augment,
        "weighted_kd": config.weighted_kd,
        "weighted": bool(result.get("weighted", method in SYNTHESIS and config.weighted_kd and protocol == "soft")),
        "student": f"{config.student} {config.student_kwargs}",
        "steps": config.steps,
        "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "accs": accs,
        "val_acc_mean": float(np.mean(vals)) if vals else None,
        "seeds": [r["seed"] for r in runs],
        "seconds_per_student": result.get("seconds_per_student"),
        "distill_seconds": round(seconds, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # merge_results: the newest row wins
        **extra,
    }


def run_budget(ipc, args, teacher, train, validation, test, work, payload, results) -> None:
    max_steps = args.budget_steps or OLD_STEPS[ipc] * args.budget_factor
    config = EvaluationConfig(steps=max_steps, eval_every=max(1, max_steps // 12), progress=False)
    curves, runs = {}, {}
    for method in ("random", "wmdd"):
        dataset, _, _ = build_set(method, ipc, args, teacher, train, work)
        r = evaluate_distilled(
            dataset, test, teacher=teacher, config=config, seeds=(0,), validation_dataset=validation, device=args.device
        )
        curves[method] = r["curves"][0]
        # the test accuracy is kept for the table row (seed 0) and never looked at here
        runs[method] = {
            "seed": 0,
            "acc": r["accs"][0],
            "val_acc": r["curves"][0][-1][1],
            "curve": r["curves"][0],
            "seconds": r["seconds_per_student"],
            "device": device_name(args.device),
            **({"synthesis": args.overrides} if method in SYNTHESIS else {}),
        }
        print(json.dumps({"ipc": ipc, "method": method, "curve": curves[method]}), flush=True)
    chosen, gains, reason = choose_budget(curves, max_steps)
    plot = curves_dir(args) / f"budget-ipc{ipc}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    save_accuracy_curve(curves, plot, f"IPC {ipc}: validation accuracy, soft protocol, seed 0 (chosen {chosen})")
    data = read_results(results)
    budget = data.get("budget", {})
    budget[str(ipc)] = {
        "max_steps": max_steps,
        "factor": args.budget_factor,
        "old_steps": OLD_STEPS[ipc],
        "chosen": chosen,
        "reason": reason,
        "gains": gains,
        "plot": f"benchmarks/results/curves/{plot.name}",
        "runs": runs if chosen == max_steps else {},
        "device": device_name(args.device),
    }
    steps = {**data.get("protocol", {}).get("steps", {}), str(ipc): chosen}
    merge_results(results, {**payload, "budget": budget, "protocol": {**payload["protocol"], "steps": steps}}, [])


def publish_random(ipc, args, teacher, train, work) -> Path:
    """The random real subset of ``ipc`` images per class, written like a distilled set (Hub layout, the same
    teacher's soft labels at temperature 1, uniform weights), for benchmarks/plain_user.py."""
    from wmdd_hf.data import uint8_to_png_images
    from wmdd_hf.hub import save_distilled
    from wmdd_hf.soft_labels import soft_labels as teacher_soft_labels

    subset, _, _ = build_set("random", ipc, args, teacher, train, work)
    images, labels, _ = _as_tensors(subset, teacher.spec)
    probs = teacher_soft_labels(teacher, images.float() / 255, temperature=1.0)
    features = subset.features.copy()
    from datasets import Dataset, Sequence, Value

    features["soft_label"] = Sequence(Value("float32"))
    features["barycenter_weight"] = Value("float32")
    dataset = Dataset.from_dict(
        {
            "image": uint8_to_png_images(images),
            "label": labels.tolist(),
            "soft_label": probs.float().tolist(),
            "barycenter_weight": [1.0 / ipc] * len(labels),
        },
        features=features,
    )
    folder = work / f"random-ipc{ipc}-published"
    meta = {
        "arguments": {"images_per_class": ipc, "temperature": 1.0, "soft_label_epochs": 0},
        "num_images": len(dataset),
        "num_classes": len(features["label"].names),
        "source_dataset": "fashion_mnist",
        "method": "random",
    }
    save_distilled(folder, dataset, meta)
    print(folder)
    return folder


def run_full_data(args, teacher, train, validation, test, payload, results) -> None:
    """The same student on all 55,000 non-validation training images: soft protocol (the teacher online, as for
    every set) and hard labels. One long run each (seed 0); its validation curve says whether it converged by the
    budget rule; the test split is read once, at the end."""
    data = read_results(results)
    full = data.get("full_data") or {}
    for protocol in args.protocols:
        steps = args.full_data_steps if protocol == "soft" else args.full_data_hard_steps
        config = EvaluationConfig(
            protocol=protocol, steps=steps, batch_size=256, eval_every=max(1, steps // 12), progress=False
        )
        r = evaluate_distilled(
            train,
            test,
            teacher=teacher,
            config=config,
            seeds=(0,),
            validation_dataset=validation,
            device=args.device,
        )
        curve = r["curves"][0]
        chosen, gains, reason = choose_budget({"full data": curve}, steps)
        plot = curves_dir(args) / f"full-data-{protocol}.png"
        plot.parent.mkdir(parents=True, exist_ok=True)
        save_accuracy_curve({"full data": curve}, plot, f"Full data, {protocol} protocol: validation accuracy")
        full[protocol] = {
            "acc_mean": r["acc_mean"],
            "acc_std": r["acc_std"],
            "steps": steps,
            "batch_size": 256,
            "curve": curve,
            "seeds": r["seeds"],
            "seconds": r["eval_seconds"],
            "device": device_name(args.device),
            "protocol": r["protocol"],
            "converged": chosen < steps or gains["full data"] < 0.003,
            "note": f"validation curve: {reason}; last-quarter gain {100 * gains['full data']:+.2f} points",
            "plot": f"benchmarks/results/curves/{plot.name}",
        }
        print(json.dumps({"full_data": protocol, **{k: v for k, v in full[protocol].items() if k != "curve"}}))
        merge_results(results, {**payload, "full_data": full}, [])


if __name__ == "__main__":
    main()
