"""Synthesis speed at ImageNet shape: timm resnet18 (random weights), 224 px, a few classes of random pixels.

    python benchmarks/gpu.py                       # CUDA when present, else a short CPU run (--device cpu)
    python benchmarks/gpu.py --classes 10 --ipc 10 --steps 30

For each setting (fp32; bf16 autocast; bf16 + channels_last; and, with --compile, torch.compile of the teacher) it
times synthesis steps of one class batch (IPC x classes images, per-class norm statistics on) and reports images x
iterations per second and the achieved TFLOP/s of a step, counted with torch.utils.flop_counter (forward + backward to
the pixels). Results go to benchmarks/results/gpu.json with the device name and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import load_backbone  # noqa: E402
from wmdd_hf.statistics import collect_class_statistics  # noqa: E402
from wmdd_hf.synthesis import NormTargets, SynthesisConfig, synthesize_batch  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_name, pick_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = p.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    teacher = load_backbone(args.model, num_classes=args.classes, pretrained=False, img_size=args.size).freeze()
    teacher = teacher.to(device)
    k, m, size = args.classes, args.ipc, args.size
    real = torch.randint(0, 256, (k * 4 * m, 3, size, size), dtype=torch.uint8)
    labels = torch.arange(k).repeat_interleave(4 * m)
    batches = [
        (real[s : s + 64], labels[s : s + 64], torch.arange(s, min(s + 64, len(real)))) for s in range(0, len(real), 64)
    ]
    stats = collect_class_statistics(teacher, batches, k)
    targets = NormTargets.from_moments(stats.norms, "per_class")
    syn_labels = torch.arange(k).repeat_interleave(m)
    points = torch.stack([stats.features[c][:m] for c in range(k)]).reshape(k * m, -1)
    weights = torch.full((k * m,), 1.0 / m)
    init = torch.rand(k * m, 3, size, size)
    settings = [("fp32", False, False), ("bf16", False, False), ("bf16", True, False)]
    if args.compile:
        settings.append(("bf16", True, True))
    rows = []
    for precision, channels_last, compiled in settings:
        net = (
            teacher.to(memory_format=torch.channels_last)
            if channels_last
            else teacher.to(memory_format=torch.contiguous_format)
        )
        if compiled:  # in place: module names (and so the norm-layer statistics' keys) stay the same
            net.model.compile()
        config = SynthesisConfig(
            iterations=args.steps, precision=precision, channels_last=channels_last, log_every=10**9
        )
        synthesize_batch(
            net,
            init,
            syn_labels,
            points,
            weights,
            targets,
            SynthesisConfig(iterations=3, precision=precision, channels_last=channels_last),
        )  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.time()
        synthesize_batch(net, init, syn_labels, points, weights, targets, config)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.time() - start) / args.steps
        flops = step_flops(net, init.to(device), precision, channels_last)
        row = {
            "precision": precision,
            "channels_last": channels_last,
            "compile": compiled,
            "seconds_per_step": seconds,
            "images_x_iterations_per_s": k * m / seconds,
            "tflops_per_step": flops / 1e12,
            "achieved_tflop_s": flops / seconds / 1e12,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:]),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "shape": {"model": args.model, "size": size, "classes": k, "ipc": m},
        "rows": rows,
    }
    Path(args.results).write_text(json.dumps(out, indent=2))


def step_flops(net, pixels: torch.Tensor, precision: str, channels_last: bool) -> float:
    """FLOPs of one synthesis step's forward + backward to the pixels (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = pixels.clone().requires_grad_(True)
    view = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, feats = net(view)
        (feats.float().pow(2).sum() + logits.float().sum()).backward()
    return float(counter.get_total_flops())


if __name__ == "__main__":
    main()
