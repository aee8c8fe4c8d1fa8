"""The synthesis step beside its physical limit at ImageNet shape: timm resnet18 (random weights), 224 px.

    python benchmarks/gpu.py                                    # CUDA when present, else --device cpu
    python benchmarks/gpu.py --batches 100 200 500 --compile --profile
    python benchmarks/gpu.py --device cpu --size 32 --batches 20 --steps 2     # the plumbing, on a CPU

The limit is the teacher's own work: a bare forward + input-gradient backward of the same batch at the same
precision and layout (no augmentation, no statistics hooks, no optimiser). For every batch (IPC 10, so batch / 10
classes) and setting (fp32; bf16 autocast; bf16 + channels_last; with ``--compile``, + ``Module.compile()`` of the
teacher) it times both in one process, alternately, on CUDA events, and reports seconds per step, images x iterations
per second, their ratio (target <= 1.3), the achieved TFLOP/s (torch.utils.flop_counter) and the peak device memory.
``--profile`` writes the ten most expensive kernels of one step per setting (torch.profiler, batch of the first
``--batches``) as text beside the results (``gpu_profile.txt``). Results: ``benchmarks/results/gpu.json``.
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
from common import pick_device, provenance  # noqa: E402

SETTINGS = {  # name: (precision, channels_last, compile); the compiled ones last (compilation stays on)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+channels_last": ("bf16", True, False),
    "fp32+compile": ("fp32", False, True),
    "bf16+channels_last+compile": ("bf16", True, True),
}


class Case:
    """One batch at ImageNet shape: the teacher, per-class targets from a short pass, points, weights, a start."""

    def __init__(self, teacher, batch: int, ipc: int, size: int, device: torch.device):
        self.teacher, self.device = teacher, device
        k = batch // ipc
        real = torch.randint(0, 256, (k * 2, 3, size, size), dtype=torch.uint8)
        labels = torch.arange(k).repeat_interleave(2)
        stats = collect_class_statistics(teacher, [(real, labels, torch.arange(len(real)))], teacher.num_classes)
        targets = NormTargets.from_moments(stats.norms, "per_class")
        # on the device already: the one-off copies of a batch's start are not part of its (1,000-step) work
        self.targets = NormTargets(
            {n: t.to(device) for n, t in targets.mean.items()}, {n: t.to(device) for n, t in targets.var.items()}
        )
        self.labels = torch.arange(k, device=device).repeat_interleave(ipc)
        self.points = torch.randn(k * ipc, teacher.feature_dim, device=device)
        self.weights = torch.full((k * ipc,), 1.0 / ipc, device=device)
        self.init = torch.rand(k * ipc, 3, size, size, device=device)

    def config(self, steps: int, setting: str) -> SynthesisConfig:
        precision, channels_last, _ = SETTINGS[setting]
        return SynthesisConfig(iterations=steps, precision=precision, channels_last=channels_last, log_every=10**9)

    def step(self, steps: int, setting: str) -> None:
        """``steps`` synthesis steps (the library's, as the Distiller calls it)."""
        args = (self.labels, self.points, self.weights, self.targets, self.config(steps, setting))
        synthesize_batch(self.teacher, self.init, *args, torch.Generator().manual_seed(0))

    def bare(self, steps: int, setting: str) -> None:
        """``steps`` bare forward + input-gradient backward passes at the same precision and layout."""
        precision, channels_last, _ = SETTINGS[setting]
        x = self.init.clone().requires_grad_(True)
        for _ in range(steps):
            view = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits, feats = self.teacher(view)
            (feats.float().pow(2).sum() + logits.float().sum()).backward()
            x.grad = None


def seconds(fn, device: torch.device) -> float:
    """Wall seconds of ``fn()`` (CUDA events on a GPU)."""
    if device.type != "cuda":
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / 1000


def measure(case: Case, setting: str, steps: int, repeats: int, flops: float | None = None) -> dict:
    """The step and the bare pass, alternately ``repeats`` times after a warm-up; the best of each. ``flops``: of
    one step, when known (a compiled teacher's are its eager twin's)."""
    device = case.device
    case.bare(3, setting), case.step(3, setting)  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = bare = float("inf")
    for _ in range(repeats):
        bare = min(bare, seconds(lambda: case.bare(steps, setting), device) / steps)
        step = min(step, seconds(lambda: case.step(steps, setting), device) / steps)
    flops = step_flops(case, setting) if flops is None else flops
    n = len(case.labels)
    return {
        "setting": setting,
        "batch": n,
        "seconds_per_step": round(step, 5),
        "bare_fwd_bwd_s": round(bare, 5),
        "step_over_bare": round(step / bare, 3),
        "images_x_iterations_per_s": round(n / step, 1),
        "tflops_per_step": round(flops / 1e12, 4),
        "achieved_tflop_s": round(flops / step / 1e12, 2),
        "peak_device_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }


def step_flops(case: Case, setting: str) -> float:
    """FLOPs of one forward + backward to the pixels (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        case.bare(1, setting)
    return float(counter.get_total_flops())


def profile_table(case: Case, setting: str, steps: int = 5) -> str:
    """The ten most expensive kernels (device time; CPU time on a CPU) of ``steps`` synthesis steps."""
    from torch.profiler import ProfilerActivity, profile

    cuda = case.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    case.step(2, setting)
    with profile(activities=activities) as prof:
        case.step(steps, setting)
        if cuda:
            torch.cuda.synchronize()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    title = f"== {setting}, batch {len(case.labels)}, {steps} synthesis steps, sorted by {sort}"
    return title + "\n" + prof.key_averages().table(sort_by=sort, row_limit=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[100, 200, 500])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add the Module.compile() setting (last: it stays on)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--budget_s", type=float, default=300, help="skip what would start after this many seconds")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = p.parse_args()
    device, start = pick_device(args.device), time.time()
    torch.manual_seed(0)
    teacher = load_backbone(args.model, num_classes=max(args.batches) // args.ipc, pretrained=False, img_size=args.size)
    teacher = teacher.freeze().to(device)
    settings = [s for s in SETTINGS if args.compile or not SETTINGS[s][2]]
    rows, profiles, skipped, flops = [], [], [], {}
    for setting in settings:
        _, channels_last, compiled = SETTINGS[setting]
        teacher.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        if compiled:  # in place: module names (and so the norm-layer statistics' keys) stay the same
            # this script runs the teacher in more variants than a Distiller run (two batches, with and without the
            # statistics hooks, under grad and no-grad): without room for them dynamo stops compiling part-way
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            teacher.model.compile()
        for batch in args.batches:
            # compilation is slow: the smallest and the largest batch only
            if time.time() - start > args.budget_s or (compiled and batch not in (args.batches[0], args.batches[-1])):
                skipped.append(f"{setting} batch {batch}")
                continue
            case = Case(teacher, batch, args.ipc, args.size, device)
            try:
                rows.append(measure(case, setting, args.steps, args.repeats, flops.get(batch) if compiled else None))
                flops[batch] = rows[-1]["tflops_per_step"] * 1e12
                if args.profile and batch == args.batches[0]:
                    profiles.append(profile_table(case, setting))
            except Exception as error:  # noqa: BLE001 - a failing setting (compilation, memory) is a result too
                rows.append({"setting": setting, "batch": batch, "error": f"{type(error).__name__}: {error}"[:500]})
            if compiled:  # what torch.compile met: graph breaks and recompilations, by reason
                rows[-1]["dynamo"] = dynamo_counters()
            print(json.dumps(rows[-1]), flush=True)
            write(args, device, start, rows, skipped, profiles)  # after every row: a run stopped early keeps them
            del case
    write(args, device, start, rows, skipped, profiles)


def dynamo_counters() -> dict:
    """``torch._dynamo``'s counts so far: graph breaks by reason, and the frames and recompilations it met."""
    from torch._dynamo.utils import counters

    return {group: {str(k)[:200]: v for k, v in counters[group].items()} for group in ("graph_break", "stats")}


def write(args, device: torch.device, start: float, rows: list, skipped: list, profiles: list) -> None:
    out = {
        **provenance("gpu.py", device),
        "shape": {"model": f"{args.model} (timm, random weights)", "size": args.size, "ipc": args.ipc},
        "steps": args.steps,
        "repeats": args.repeats,
        "target_step_over_bare": 1.3,
        "rows": rows,
        "skipped_at_budget": skipped,
        "seconds": round(time.time() - start, 1),
    }
    Path(args.results).write_text(json.dumps(out, indent=2))
    if profiles:
        Path(args.results).with_name(Path(args.results).stem + "_profile.txt").write_text("\n\n".join(profiles))


if __name__ == "__main__":
    main()
