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
from wmdd_hf.visualization import save_accuracy_curve  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import (  # noqa: E402
    DATASETS,
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
from merge_results import merge_results, read_results  # noqa: E402
from report import images_add, pct  # noqa: E402
from run_experiments import experiment_name  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: --student: name -> (timm architecture, its arguments); the ConvNet is the teacher's family, the others are not.
STUDENTS = {
    "convnet": ("wmdd_convnet", {"width": 64}),
    "vit_d96x6": ("vit_tiny_patch16_224", {"patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}),
    "resnet18": ("resnet18_small", {}),  # timm's ResNet-18 with a 3x3 stem and no max-pool (wmdd_hf.models)
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


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["budget", "table", "sets", "full_data", "publish_random"], default="table")
    p.add_argument("--teacher", default=str(ROOT / "checkpoints" / "fashion-mnist-convnet64"))
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=list(DATASETS),
        help="fashion_mnist_rgb32: the grey images in three channels at 32 px, for the second teacher family.",
    )
    p.add_argument(
        "--budget_from",
        default=None,
        help="Another results file whose validated step budgets this one adopts for IPCs it has none for (its "
        "rows' validation curves still show whether they converged); recorded as protocol.steps_from.",
    )
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
    p.add_argument(
        "--soft_label_epochs", type=int, default=0, help="--stage publish_random: stored views per image, as a set's."
    )
    p.add_argument(
        "--iterations", type=int, default=None, help="Synthesis steps per class batch, over --synthesis (default 1000)."
    )
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
    p.add_argument(
        "--work_dir", default=None, help="Sets and students (default: outputs/benchmark-v2, or -<dataset> for another)."
    )
    p.add_argument("--results", default=None, help="Default: benchmarks/results/<dataset>.json.")
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
    if args.work_dir is None:  # a dataset of its own never shares a statistics pass or a set with another
        folder = "benchmark-v2" if args.dataset == "fashion_mnist" else f"benchmark-{args.dataset}"
        args.work_dir = str(ROOT / "outputs" / folder)
    args.results = args.results or str(RESULTS / f"{args.dataset}.json")
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
    overrides = {"iterations": 1000, **extra}
    if args.iterations is not None:  # e.g. the plumbing checks' few steps, whatever the experiment declares
        overrides["iterations"] = args.iterations
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
    folder = "curves" if args.dataset == "fashion_mnist" else f"curves-{args.dataset}"  # the same row names
    return Path(args.results).resolve().parent / folder


def distil(method: str, ipc: int, args, teacher, train, work: Path) -> tuple[object, float, dict]:
    out = set_folder(work, method, ipc, args.overrides)
    if (out / "distilled" / "wmdd_hf.json").exists() and not (out / "run_config.json").exists():
        # a finished set brought back without its run folder (e.g. from the lent GPU): train on that very set
        dataset, _, metadata = load_distilled(str(out / "distilled"))
        print(f"reusing the finished set {out / 'distilled'}", flush=True)
        return dataset, 0.0, metadata.get("metrics", {})
    start = time.time()
    distiller = set_distiller(method, ipc, args, teacher, train, work)
    distilled = distiller.distill()
    share_statistics(out, work / statistics_file(args.overrides))
    return distilled, time.time() - start, distiller.metrics


def set_distiller(method: str, ipc: int, args, teacher, train, work: Path) -> Distiller:
    """The Distiller of ``method``'s set at ``ipc`` with this command's synthesis options, in its set folder, which
    starts from the shared statistics pass when there is one (the pass does not depend on the synthesis)."""
    feature_loss, bn_loss = SYNTHESIS[method]
    out = set_folder(work, method, ipc, args.overrides)
    reuse_statistics(work / statistics_file(args.overrides), out)
    d_args = distillation_arguments(
        output_dir=str(out),
        images_per_class=ipc,
        feature_loss=feature_loss,
        bn_loss=bn_loss,
        seed=0,
        disable_tqdm=True,
        **args.overrides,
    )
    return Distiller(teacher, d_args, train)


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
    """Training rows (in order) that the selection ``method`` picks at ``ipc``: from the shared statistics pass and,
    for ``barycenter_nearest_real``, the wmdd set's barycenters. Only those two stages of the wmdd run are computed
    (or read back); a selection never waits for a synthesis."""
    if method not in SELECTIONS:
        raise SystemExit(f"unknown method {method}")
    distiller = set_distiller("wmdd", ipc, args, teacher, train, work)
    stats = distiller.compute_statistics()
    share_statistics(set_folder(work, "wmdd", ipc, args.overrides), work / statistics_file(args.overrides))
    bary = None
    if method.startswith("bary"):
        distiller.compute_barycenters(stats)  # written to its barycenters.pt, whose state select_rows reads
        bary = load_checkpoint(set_folder(work, "wmdd", ipc, args.overrides) / "barycenters.pt")
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


def adopted_budgets(source: Path, own: dict[int, int], ipcs: list[int]) -> dict[str, int]:
    """``{str(ipc): steps}`` from ``source``'s validated budgets for the IPCs of ``ipcs`` that ``own`` lacks."""
    theirs = read_results(source).get("protocol", {}).get("steps", {})
    missing = [ipc for ipc in ipcs if ipc not in own and str(ipc) not in theirs]
    if missing:
        raise SystemExit(f"{source} has no validated budget for IPC {missing}: run --stage budget there first.")
    return {str(ipc): theirs[str(ipc)] for ipc in ipcs if ipc not in own}


def payload_of(args, teacher, train) -> dict:
    """What every results file records beside its rows: the command, machine, teacher, synthesis and protocol."""
    path = Path(args.teacher)
    return {
        "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:]),
        "dataset": args.dataset,
        "machine": args.device_note if args.device.type == "cpu" else f"{device_name(args.device)} (students)",
        "teacher": {
            "arch": teacher.metadata.get("architecture"),
            "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else args.teacher,
            "test_acc": teacher.metadata.get("test_acc"),
        },
        "synthesis": {**args.overrides, "seed": 0},
        "protocol": {
            "validation_size": VALIDATION_SIZE,
            "split_seed": SPLIT_SEED,
            "train_size": len(train),
            "weighted_kd": True,
            "test_reads": "once per student, at the end",
        },
    }


def main() -> None:
    args = parse()
    torch.manual_seed(0)
    work = work_folder(args.work_dir, args.limit_train)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    train, validation, test = benchmark_splits(args.limit_train, args.dataset)
    teacher = load_backbone(args.teacher).freeze().to(args.device)
    payload = payload_of(args, teacher, train)
    steps_table = {int(k): v for k, v in read_results(results).get("protocol", {}).get("steps", {}).items()}
    if args.budget_from:
        adopted = adopted_budgets(Path(args.budget_from), steps_table, args.ipc)
        steps_table.update({int(k): v for k, v in adopted.items()})
        if adopted:
            steps = {**read_results(results).get("protocol", {}).get("steps", {}), **adopted}
            payload["protocol"] = {**payload["protocol"], "steps": steps, "steps_from": args.budget_from}
    if args.student_steps:
        steps_table = {ipc: args.student_steps for ipc in args.ipc}
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
                built = (dataset, seconds, extra, digest)
                row = measure_row(method, ipc, config, built, args, teacher, (train, validation, test), work)
                print(json.dumps(row), flush=True)
                merged = merge_results(results, payload, [row])
                (work / "pending" / f"{experiment_name(row)}.json").unlink(missing_ok=True)  # the row is in now
                if method in SYNTHESIS:
                    write_card_scores(set_folder(work, method, ipc, args.overrides), method, ipc, merged)


def measure_row(method: str, ipc: int, config, built: tuple, args, teacher, splits: tuple, work: Path) -> dict:
    """The results row of ``method``'s set at ``ipc`` under ``config``: another selection's row when it picked the
    same images (``twin_row``), else students for the seeds not already measured (budget runs, pending seeds)."""
    (dataset, seconds, extra, digest), (train, validation, test) = built, splits
    name = args.row_name or method
    existing = read_results(Path(args.results))
    twin = twin_row(existing, method, ipc, config, args, teacher, train, work)
    if twin is not None:
        return {**{k: v for k, v in twin.items() if k not in SCORE_KEYS}, "method": name, "same_set_as": twin["method"]}
    student = f"{config.student} {config.student_kwargs}"
    tag = experiment_name(
        dict(
            method=name,
            ipc=ipc,
            protocol=config.protocol,
            augment=config.augment,
            weighted_kd=config.weighted_kd,
            student=student,
        )
    )
    plot = curves_dir(args) / f"{tag}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    reuse = reused_budget_runs(existing, ipc, method, config.protocol, config, config.steps, args)
    seeds = [s for s in args.seeds if s not in reuse]
    identity = {
        "row": tag,
        "protocol": config.describe(),
        "set": digest,
        "device": device_name(args.device),
        "teacher": str(args.teacher),
    }
    if config.protocol == "fixed":  # every set's labels from one call: the same teacher, T, once per image
        dataset = with_soft_labels(dataset, teacher, temperature=1.0)
    pending = work / "pending" / f"{tag}.json"
    result = None
    if seeds:
        result = train_seeds(dataset, test, teacher, config, seeds, validation, plot, args.device, pending, identity)
    runs = [*reuse.values(), *(_runs(result) if result else [])]
    row = make_row(name, ipc, config.protocol, config, runs, seconds, extra, result or {})
    row["device"] = device_name(args.device)
    if method in SYNTHESIS:
        row["synthesis"] = args.overrides
    return row


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
    views = None
    if args.soft_label_epochs:  # stored views, drawn as a distilled set's are (the library's defaults)
        from wmdd_hf.results import SoftLabels, views_dataset
        from wmdd_hf.soft_labels import augmented_soft_labels

        augment = distillation_arguments(output_dir="unused").synthesis_config().augment
        stored = augmented_soft_labels(teacher, images.float() / 255, args.soft_label_epochs, augment, seed=0)
        views = views_dataset(SoftLabels(probs, stored))
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
    folder = work / (f"random-ipc{ipc}-published" + (f"-views{args.soft_label_epochs}" if views is not None else ""))
    meta = {
        "arguments": {"images_per_class": ipc, "temperature": 1.0, "soft_label_epochs": args.soft_label_epochs},
        "num_images": len(dataset),
        "num_classes": len(features["label"].names),
        "source_dataset": "fashion_mnist",
        "method": "random",
    }
    save_distilled(folder, dataset, meta, soft_label_views=views)
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
