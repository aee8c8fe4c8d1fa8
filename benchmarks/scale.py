"""Memory and time of the stages as the number of classes and images per class grow (generated data, 2 cores).

    OMP_NUM_THREADS=1 python benchmarks/scale.py                          # the default grid, one process
    OMP_NUM_THREADS=1 python benchmarks/scale.py --classes 100 --per_class 50 200 --cap 64

Each configuration runs in a fresh subprocess (so peak RSS is its own): a generated image-classification
``datasets.Dataset`` (random 32 px RGB pixels, K classes x n images), a randomly initialised small teacher
(``wmdd_convnet`` width 16), then the statistics pass, the barycenters and ONE synthesis class batch through the
Distiller's stages. It records peak RSS (MB) and seconds per stage. With ``--processes 2`` the same runs under two
gloo processes (``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu``) and each process reports its own peak.
Results merge into ``benchmarks/results/scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"


def child(k: int, n: int, cap: int | None, out: str) -> None:
    """One configuration (runs inside the subprocess)."""
    import numpy as np
    import torch
    from datasets import ClassLabel, Dataset, Features, Image

    sys.path.insert(0, str(ROOT))
    from wmdd_hf import DistillationArguments, Distiller, load_backbone
    from wmdd_hf.checkpoint import read_events
    from wmdd_hf.synthesis import NormTargets, synthesize_batch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    start = time.time()
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(k * n)]
    data = Dataset.from_dict(
        {"image": images, "label": [c for c in range(k) for _ in range(n)]},
        features=Features({"image": Image(), "label": ClassLabel(num_classes=k)}),
    )
    del images  # only the Dataset keeps the data
    build_s = time.time() - start
    teacher = load_backbone("wmdd_convnet", num_classes=k, in_chans=3, img_size=32, pretrained=False, width=16)
    with tempfile.TemporaryDirectory() as folder:
        args = DistillationArguments(
            output_dir=folder,
            images_per_class=2,
            iterations=5,
            batch_size=20,
            max_features_per_class=cap,
            disable_tqdm=True,
            save_plots=False,
        )
        d = Distiller(teacher, args, data)
        d._prepare_output_dir()
        times = {"build_s": round(build_s, 2)}
        rss_before = _current_rss_mb()
        _reset_peak_rss()  # the peak of the pass itself, not of building the generated dataset before it
        t = time.time()
        stats = d.compute_statistics()
        times["statistics_s"] = round(time.time() - t, 2)
        rss_after_stats = _peak_rss_mb()
        t = time.time()
        bary = d.compute_barycenters(stats)
        times["barycenters_s"] = round(time.time() - t, 2)
        t = time.time()
        first = d.class_batches()[0]  # one class batch, as a process would synthesise it
        generator = torch.Generator().manual_seed(0)
        init = d.initial_images(first, stats, bary, generator)
        labels = torch.tensor([c for c in first for _ in range(args.images_per_class)])
        points, weights = bary.points(first), bary.point_weights(first)
        targets = NormTargets.from_moments(stats.norms, "per_class")
        synthesize_batch(d.teacher, init, labels, points, weights, targets, args.synthesis_config(), generator)
        times["synthesis_batch_s"] = round(time.time() - t, 2)
        rank = d.accelerator.process_index
        written = [e for e in read_events(folder) if e["stage"] == "statistics_features" and e["process"] == rank]
        kept = written[-1]["rows"]  # the features this process received and wrote: those of the classes it owns
    report = {
        "classes": k,
        "per_class": n,
        "cap": cap,
        "process": d.accelerator.process_index,
        "processes": d.accelerator.num_processes,
        "kept_features": kept,
        "rss_mb_before_statistics": round(rss_before, 1),
        "peak_rss_mb_after_statistics": round(rss_after_stats, 1),
        "statistics_rss_growth_mb": round(rss_after_stats - rss_before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **times,
    }
    Path(out).with_suffix(f".{d.accelerator.process_index}.json").write_text(json.dumps(report))


def _reset_peak_rss() -> None:
    """Resets the kernel's high-water mark of this process's RSS (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak below is the lifetime peak, as before


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--per_class", type=int, nargs="+", default=[50, 200])
    p.add_argument("--cap", type=int, default=64)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    p.add_argument("--render", action="store_true", help="Only rewrite scale.md from scale.json.")
    args = p.parse_args()
    if args.render:
        render(json.loads(RESULTS.read_text()))
        return
    if args.child:
        k, n, cap, out = args.child
        child(int(k), int(n), None if cap == "none" else int(cap), out)
        return
    rows = []
    for k in args.classes:
        for n in args.per_class:
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "report")
                cmd = [sys.executable, __file__, "--child", str(k), str(n), str(args.cap), out]
                env = dict(os.environ)
                if args.processes > 1:
                    env["ACCELERATE_USE_CPU"] = "true"
                    cmd = [
                        "accelerate",
                        "launch",
                        "--multi_gpu",
                        "--num_processes",
                        str(args.processes),
                        "--num_machines",
                        "1",
                        "--mixed_precision",
                        "no",
                        "--dynamo_backend",
                        "no",
                        *cmd[1:],
                    ]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                for f in sorted(Path(tmp).glob("report.*.json")):
                    row = json.loads(f.read_text())
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    key = lambda r: (r["classes"], r["per_class"], r["cap"], r["processes"], r["process"])  # noqa: E731
    new = {key(r) for r in rows}
    data["rows"] = sorted([r for r in data["rows"] if key(r) not in new] + rows, key=key)
    data.setdefault("commands", [])
    cmd = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    if cmd not in data["commands"]:
        data["commands"].append(cmd)
    RESULTS.write_text(json.dumps(data, indent=2))
    render(data)


def render(data: dict) -> None:
    lines = ["# Scale: memory and time per stage (generated 32 px data, wmdd_convnet width 16, random weights)", ""]
    lines += [
        "Peak RSS includes the interpreter and libraries (about 1 GB), the generated Dataset held in memory (its PNG "
        "bytes) and, for a dataset under 2 GB decoded, the decoded uint8 array kept for the pass (3 KB per 32 px "
        "image): these grow with the number of images by design (larger datasets stream and keep neither). "
        "`stats growth MB` is the statistics pass's own peak above the RSS it started from (the kernel's high-water "
        "mark is reset before the pass): with the cap it stays at tens of MB whatever the images per class. `kept "
        "features` are those the process holds after the pass: K x cap rows with one process; with several, only "
        "the classes it owns (each class's features go to its owner alone, since 2026-11-30; the rows measured "
        "before that held all K x cap in every process). Plot: `scale.png`.",
        "",
    ]
    lines += [f"- `{c}`" for c in data["commands"]] + [
        "",
        "| K | per class | cap | processes | process | kept features | stats growth MB | peak RSS MB | statistics s | "
        "barycenters s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['classes']} | {r['per_class']} | {r['cap']} | {r['processes']} | {r['process']} | "
            f"{r['kept_features']} | {r.get('statistics_rss_growth_mb', '—')} | {r['peak_rss_mb']} | "
            f"{r['statistics_s']} | {r['barycenters_s']} |"
        )
    plot(data["rows"], RESULTS.with_suffix(".png"))
    lines += ["", *imagenet_extrapolation()]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    """Peak RSS and the statistics pass's own growth against K (one line per images-per-class), one process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    one = [r for r in rows if r["processes"] == 1]
    for n in sorted({r["per_class"] for r in one}):
        rs = sorted((r for r in one if r["per_class"] == n), key=lambda r: r["classes"])
        ks = [r["classes"] for r in rs]
        axes[0].plot(ks, [r["peak_rss_mb"] for r in rs], "o-", label=f"{n} images per class")
        axes[1].plot(ks, [r.get("statistics_rss_growth_mb", float("nan")) for r in rs], "o-", label=f"{n} per class")
    axes[0].set(xscale="log", xlabel="classes K", ylabel="peak RSS (MB)", title="whole run (data held in memory)")
    axes[1].set(xscale="log", xlabel="classes K", ylabel="MB", title="statistics pass: growth above its start")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def imagenet_extrapolation(images_per_class: int = 1300, classes: int = 1000) -> list[str]:
    """What the statistics pass holds for ImageNet-1K at 224 px, from the per-class costs (computed from the timm
    architectures, no weights): kept features min(n, cap) x width x 4 B, norm moments 2 x channels x 8 B (float64
    mean and M2). The 224 px images are never decoded into memory (above 2 GB the pass streams batches)."""
    import timm
    import torch

    lines = [
        f"## Extrapolation: ImageNet-1K ({classes} classes, about {images_per_class} images each, 224 px)",
        "",
        "Per class: kept features = min(images, cap) x feature width x 4 bytes; per-class norm moments = 2 x "
        "(sum of norm-layer channels) x 8 bytes. The decoded images are never held (above 2 GB the pass streams).",
        "",
        "| teacher | feature width | norm channels | cap | features per class MB | moments per class KB | "
        "total features GB | per process, 1 process GB | per process, 8 processes (each owns 1/8 of the classes) GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("resnet18", "resnet50"):
        model = timm.create_model(name, pretrained=False)
        width = model.num_features
        channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        for cap in (None, 4096, 1000):
            kept = images_per_class if cap is None else min(images_per_class, cap)
            per_class = kept * width * 4
            total = per_class * classes
            lines.append(
                f"| {name} | {width} | {channels} | {cap or 'none'} | {per_class / 2**20:.2f} | "
                f"{2 * channels * 8 / 1024:.0f} | {total / 2**30:.2f} | {total / 2**30:.2f} | "
                f"{total / 8 / 2**30:.2f} |"
            )
    lines += [
        "",
        "The default cap (4096) does not bind on ImageNet-1K (at most 1,300 images per class); it bounds datasets "
        "with larger classes. Each class's features go only to the process that owns its barycenter, which writes "
        "them to `statistics_features/class_*.safetensors`; later stages read one class at a time from there, so "
        "`statistics.pt` holds the moments alone (about 75 KB per class for ResNet-18) and no process ever holds "
        "more than its share plus the partial features of its own pass. A cap of 1,000 costs +1.86 % in barycenter "
        "W2 on Fashion-MNIST (`cap_cost.md`).",
    ]
    return lines


if __name__ == "__main__":
    main()
