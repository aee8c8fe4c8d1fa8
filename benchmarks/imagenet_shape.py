"""ImageNet shape end to end: generated 224 px JPEGs, a timm resnet18 with random weights, IPC 10.

    python benchmarks/imagenet_shape.py                     # on a GPU: 100 classes x 100 images, 30 steps
    python benchmarks/imagenet_shape.py --device cpu --classes 4 --per_class 12 --size 32 --iterations 2   # tiny

1. Data: every image a random texture (smooth noise around a colour of its class), JPEG-encoded and stored the way
   ``datasets`` stores an Image column (bytes), built once into ``--work_dir``.
2. The statistics pass in images per second, beside a bare teacher forward over the same images already decoded on
   the device (target >= 0.7): the library's pass over the encoded data as the Distiller runs it for data too large
   for memory (decoded on the GPU there, :mod:`wmdd_hf.device_decode`), and the DataLoader path with
   ``--num_workers`` PIL workers; and its parts: decoding alone, and the pass over images already decoded.
3. ``Distiller.distill()`` with ``--iterations`` synthesis steps: stage seconds, peak host and device memory, and
   synthesis images x iterations per second (the synthesis stage's wall time, batches' overheads included).
4. The projection to ImageNet-1K (1,281,167 images, 1,000 classes, 1,000 iterations) at IPC 10 and 50 on one GPU and
   on eight (the statistics pass is data-parallel, synthesis is sharded by class), from the rates of 2 and 3.

Results: ``benchmarks/results/imagenet_shape.json`` with the command, device and date.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import DistillationArguments, Distiller, load_backbone  # noqa: E402
from wmdd_hf import data as data_module  # noqa: E402
from wmdd_hf.data import iterate_batches  # noqa: E402
from wmdd_hf.device_decode import decodes_on_device, iterate_device_batches  # noqa: E402
from wmdd_hf.statistics import collect_class_statistics  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import pick_device, provenance  # noqa: E402

IMAGENET_IMAGES, IMAGENET_CLASSES, IMAGENET_ITERATIONS = 1_281_167, 1000, 1000


def texture(seed: int, label: int, size: int) -> bytes:
    """One JPEG: smooth random noise around the class's colour, ``size`` x ``size`` RGB, quality 90."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    colour = np.random.default_rng(label).integers(40, 216, 3)
    coarse = np.clip(colour + rng.normal(0, 50, (size // 16 + 2, size // 16 + 2, 3)), 0, 255).astype(np.uint8)
    image = PILImage.fromarray(coarse).resize((size, size), PILImage.BICUBIC)
    fine = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3)), 0, 255)
    buffer = io.BytesIO()
    PILImage.fromarray(fine.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _texture(job: tuple[int, int, int]) -> bytes:
    return texture(*job)


def build_dataset(classes: int, per_class: int, size: int, folder: Path):
    """The generated dataset (``image``: Image feature of JPEG bytes, ``label``: ClassLabel), cached in ``folder``."""
    from datasets import ClassLabel, Dataset, Features, Image, load_from_disk

    path = folder / f"textures-{classes}x{per_class}-{size}px"
    if (path / "dataset_info.json").exists():
        return load_from_disk(str(path))
    labels = [c for c in range(classes) for _ in range(per_class)]
    with Pool() as pool:
        encoded = pool.map(_texture, [(i, c, size) for i, c in enumerate(labels)], chunksize=64)
    features = Features({"image": Image(), "label": ClassLabel(names=[f"class_{c}" for c in range(classes)])})
    data = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in encoded], "label": labels}, features)
    data.save_to_disk(str(path))
    return load_from_disk(str(path))


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def statistics_rates(teacher, data, batch: int, num_workers: int, device: torch.device) -> dict:
    """Images per second of the statistics pass (each decoder) and of a bare forward over pre-decoded images."""
    spec, k, n = teacher.spec, teacher.num_classes, len(data)
    decoded = list(iterate_device_batches(data, spec, "image", "label", batch, device))  # on the device, kept

    def bare():
        with torch.inference_mode():
            for images, _, _ in decoded:
                teacher(images.float().div_(255))

    def device_pass():
        collect_class_statistics(teacher, iterate_device_batches(data, spec, "image", "label", batch, device), k)

    def loader_pass():
        batches = iterate_batches(data, spec, "image", "label", batch, num_workers)
        collect_class_statistics(teacher, ((x.to(device, non_blocking=True), y, r) for x, y, r in batches), k)

    def decode_only():
        for _ in iterate_device_batches(data, spec, "image", "label", batch, device):
            pass

    def predecoded_pass():
        collect_class_statistics(teacher, iter(decoded), k)

    bare()  # warm-up
    rates = {"bare_forward_img_s": n / min(timed(bare, device) for _ in range(2))}
    rates["decode_only_img_s"] = n / timed(decode_only, device)
    rates["pass_predecoded_img_s"] = n / timed(predecoded_pass, device)
    rates["pass_device_decode_img_s"] = n / timed(device_pass, device)
    rates["pass_dataloader_img_s"] = n / timed(loader_pass, device)
    out = {k: round(v, 1) for k, v in rates.items()}
    for name in ("pass_predecoded_img_s", "pass_device_decode_img_s", "pass_dataloader_img_s"):
        out[name.replace("_img_s", "_over_bare")] = round(rates[name] / rates["bare_forward_img_s"], 3)
    out.update(images=n, batch=batch, num_workers=num_workers, target_over_bare=0.7)
    return out


def end_to_end(teacher, data, args, device: torch.device) -> dict:
    """``Distiller.distill()`` on the generated data with the statistics pass of data too large for memory."""
    data_module.DECODED_CACHE_LIMIT_BYTES = 0  # as ImageNet-1K: no in-memory decode; the pass streams the encoded rows
    with tempfile.TemporaryDirectory() as folder:
        options = dict(
            output_dir=folder,
            images_per_class=args.ipc,
            iterations=args.iterations,
            synthesis_precision=args.precision,
            channels_last=args.channels_last,
            torch_compile=args.compile,
            num_workers=args.num_workers,
            stats_batch_size=args.batch,
            disable_tqdm=True,
            save_plots=False,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        distiller = Distiller(teacher, DistillationArguments(**options), data)
        start = time.time()
        distiller.distill()
        total = time.time() - start
        stages = dict(distiller.state.stage_seconds)
    images = args.classes * args.ipc
    return {
        "arguments": {k: v for k, v in options.items() if k != "output_dir"},
        "stage_seconds": stages,
        "total_s": round(total, 1),
        "synthesis_img_x_it_s": round(images * args.iterations / stages["synthesis_s"], 1),
        "statistics_img_s": round(len(data) / stages["statistics_s"], 1),
        "peak_host_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_device_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "decoded_on_device": decodes_on_device(data, "image", device),
    }


def projection(statistics_img_s: float, synthesis_img_x_it_s: float) -> dict:
    """Minutes for ImageNet-1K on 1 and 8 GPUs: the statistics pass at ``statistics_img_s`` per GPU, synthesis of
    1,000 classes x IPC images x 1,000 iterations at ``synthesis_img_x_it_s`` per GPU (batches of the same size)."""
    out = {"statistics_min": {g: round(IMAGENET_IMAGES / statistics_img_s / 60 / g, 1) for g in (1, 8)}}
    for ipc in (10, 50):
        work = IMAGENET_CLASSES * ipc * IMAGENET_ITERATIONS
        out[f"synthesis_ipc{ipc}_min"] = {g: round(work / synthesis_img_x_it_s / 60 / g, 1) for g in (1, 8)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--per_class", type=int, default=100)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--batch", type=int, default=250, help="statistics pass batch")
    p.add_argument("--num_workers", type=int, default=8)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--work_dir", default=str(ROOT / "outputs" / "imagenet-shape"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "imagenet_shape.json"))
    args = p.parse_args()
    device, start = pick_device(args.device), time.time()
    folder = Path(args.work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = build_dataset(args.classes, args.per_class, args.size, folder)
    build_s = time.time() - start
    torch.manual_seed(0)
    teacher = load_backbone("resnet18", num_classes=args.classes, pretrained=False, img_size=args.size)
    teacher = teacher.freeze().to(device)
    rates = statistics_rates(teacher, data, args.batch, args.num_workers, device)
    print(json.dumps(rates), flush=True)
    out = {
        **provenance("imagenet_shape.py", device),
        "data": {"classes": args.classes, "per_class": args.per_class, "size": args.size, "build_s": round(build_s, 1)},
        "statistics_pass": rates,
    }
    Path(args.results).write_text(json.dumps(out, indent=2))  # the pass's rates, should the run below fail
    out["end_to_end"] = run = end_to_end(teacher, data, args, device)
    print(json.dumps(run), flush=True)
    out["projection_imagenet_1k"] = projection(rates["pass_device_decode_img_s"], run["synthesis_img_x_it_s"])
    out["seconds"] = round(time.time() - start, 1)
    Path(args.results).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
