"""Train a teacher (any backbone the adapter accepts) on a `datasets` image dataset, with Accelerate.

The teacher is saved with :func:`wmdd_hf.backbones.save_backbone` (config + safetensors + class names) together with
its test accuracy, the command's arguments and the wall time in ``wmdd_hf.json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import AugmentConfig, augment
from .backbones import Backbone, load_backbone, save_backbone
from .data import (
    ImageSpec,
    decode_all,
    fits_in_memory,
    image_channels,
    load_image_dataset,
    train_validation_split,
    validate_dataset,
)
from .evaluation import test_accuracy


@dataclass
class TeacherTrainingArguments:
    """Arguments of ``examples/train_teacher.py`` (also readable from a YAML/JSON file with ``--config``)."""

    output_dir: str = field(default="outputs/teacher-fashion-mnist", metadata={"help": "Where the teacher is saved."})
    model: str = field(
        default="wmdd_convnet",
        metadata={"help": "timm name (e.g. resnet18_small: ResNet-18 with a 3x3 stem), transformers id or folder."},
    )
    dataset: str = field(
        default="fashion_mnist",
        metadata={
            "help": "'fashion_mnist', 'fashion_mnist_rgb32' (its RGB copy at 32 px), a Hub id or a local folder."
        },
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_size: int = field(
        default=0,
        metadata={
            "help": "Hold out this many training images (the seeded, class-stratified part that the benchmarks "
            "choose on, wmdd_hf.data.train_validation_split) and train on the rest; 0 trains on the whole split."
        },
    )
    eval_split: str = field(default="test", metadata={"help": "Split to report accuracy on."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (auto-detected)."})
    label_column: str | None = field(default=None, metadata={"help": "ClassLabel column (auto-detected)."})
    img_size: int | None = field(
        default=None, metadata={"help": "Input size in pixels (default: the first training image's shorter side)."}
    )
    in_chans: int | None = field(default=None, metadata={"help": "Input channels (default: the dataset's mode)."})
    width: int | None = field(default=None, metadata={"help": "Width of wmdd_convnet (ignored by other models)."})
    model_kwargs: str | None = field(
        default=None, metadata={"help": 'JSON of extra model arguments, e.g. \'{"patch_size": 4, "embed_dim": 96}\'.'}
    )
    epochs: int = field(default=12, metadata={"help": "Training epochs."})
    batch_size: int = field(default=256, metadata={"help": "Batch size per process."})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW peak learning rate (cosine decay)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "AdamW weight decay."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the cross-entropy."})
    crop_scale_min: float = field(default=0.7, metadata={"help": "Smallest crop area fraction of the augmentation."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers for datasets too large for memory."})
    eval_every: int = field(default=2, metadata={"help": "Evaluate every this many epochs (and at the end)."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars (the epoch lines stay)."})


def build_teacher(args: TeacherTrainingArguments, num_classes: int, class_names: list[str], channels: int) -> Backbone:
    import json

    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    if args.model == "wmdd_convnet" and args.width:
        kwargs["width"] = args.width
    return load_backbone(
        args.model,
        num_classes=num_classes,
        class_names=class_names,
        in_chans=args.in_chans or channels,
        img_size=args.img_size,
        pretrained=False,
        **kwargs,
    )


def pixel_statistics(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``uint8`` images ``(N, C, H, W)``, as fractions of 255 (one pass,
    in chunks, accumulated in float64)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255)
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def data_tag(dataset: str) -> str:
    """``"fashion_mnist"``, ``"org/name"`` or a folder path -> a short tag for the saved config (``name``)."""
    return re.sub(r"[^a-z0-9]+", "_", Path(dataset.rstrip("/")).name.lower()).strip("_") or "data"


def train_teacher(args: TeacherTrainingArguments) -> dict:
    """Trains and saves a teacher; returns ``{"test_acc": fraction, "wall_s": seconds, ...}``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator()
    set_seed(args.seed)
    start = time.time()
    args, backbone, (x_train, y_train), test = _teacher_and_data(args, accelerator)
    mean, std = _normalise_to(backbone, x_train, args.dataset, accelerator)
    history = _fit(backbone, x_train, y_train, test, args, accelerator)
    result = {"test_acc": history[-1]["test_acc"], "wall_s": round(time.time() - start, 1), "history": history}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_backbone(
            backbone,
            args.output_dir,
            metadata={
                "training_arguments": asdict(args),
                "dataset": args.dataset,
                "normalization": {"mean": mean, "std": std, "from": _trained_on(args)},
                "trained_on": _trained_on(args),
                "command": training_command(args),
                "num_processes": accelerator.num_processes,
                **result,
            },
        )
    return result


def training_command(args: TeacherTrainingArguments) -> str:
    """The ``examples/train_teacher.py`` command that trains this teacher again: a flag for every argument that is
    not at its default (``img_size`` when the data chose it is left to the data again)."""
    defaults = TeacherTrainingArguments()
    flags = [
        f"--{f.name} {getattr(args, f.name)}"
        for f in dataclasses.fields(args)
        if getattr(args, f.name) != getattr(defaults, f.name) and f.name != "img_size"
    ]
    return " ".join(["python examples/train_teacher.py", *flags])


def _trained_on(args: TeacherTrainingArguments) -> str:
    """What the teacher saw, in words: the split, less the held-out validation part if any."""
    held_out = f" less its {args.validation_size}-image validation part (seed 0)" if args.validation_size else ""
    return f"{args.dataset} {args.train_split} split{held_out}"


def _teacher_and_data(args: TeacherTrainingArguments, accelerator):
    """``(args with img_size set, an untrained Backbone, (x_train, y_train), (x_test, y_test))``: the splits
    decoded to ``(N, C, H, W)`` uint8 at the teacher's input size, and ``(N,)`` class ids."""
    with accelerator.main_process_first():
        train = load_image_dataset(args.dataset, args.train_split)
        test = load_image_dataset(args.dataset, args.eval_split)
    image_col, label_col = validate_dataset(train, args.image_column, args.label_column)
    names = train.features[label_col].names
    if args.validation_size:  # the part the benchmarks choose on stays unseen by the teacher
        train, _ = train_validation_split(train, args.validation_size, label_column=label_col)
    first = train[0][image_col]
    if args.img_size is None:  # the data's size, not the architecture's default
        args = dataclasses.replace(args, img_size=min(first.size))
    backbone = build_teacher(args, len(names), names, image_channels(first))
    if not fits_in_memory(train, backbone.spec):
        raise ValueError("This teacher trainer keeps the decoded training set in memory; use a smaller dataset.")
    progress = accelerator.is_main_process and not args.disable_tqdm
    with accelerator.main_process_first():
        decoded_train = decode_all(train, backbone.spec, image_col, label_col, progress=progress)
        decoded_test = decode_all(test, backbone.spec, image_col, label_col, progress=progress)
    return args, backbone, decoded_train, decoded_test


def _normalise_to(backbone: Backbone, x_train: torch.Tensor, dataset: str, accelerator) -> tuple[list, list]:
    """Sets the teacher's input normalisation to the training split's per-channel mean and std (returned, in
    [0, 1] units), and a timm teacher's config tag to the dataset's."""
    mean, std = pixel_statistics(x_train)
    backbone.mean.copy_(torch.tensor(mean).view_as(backbone.mean))
    backbone.std.copy_(torch.tensor(std).view_as(backbone.std))
    if backbone.source == "timm":  # the saved config names this data, not the architecture's default tag
        backbone.model.pretrained_cfg = {**backbone.model.pretrained_cfg, "tag": data_tag(dataset)}
    spec: ImageSpec = backbone.spec
    accelerator.print(
        f"teacher input: {spec.channels} channel(s) at {spec.size[0]}x{spec.size[1]} px, normalised with the "
        f"training split's mean {[round(m, 4) for m in mean]} and std {[round(v, 4) for v in std]}"
    )
    return mean, std


def _fit(backbone: Backbone, x_train, y_train, test, args: TeacherTrainingArguments, accelerator) -> list[dict]:
    """Trains ``backbone`` in place (AdamW, one-cycle schedule, crop + flip, cross-entropy) and returns the test
    accuracy every ``eval_every`` epochs and at the last, ``[{"epoch", "test_acc"}]``."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train, y_train),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=len(x_train) > args.batch_size,  # a dataset smaller than one batch is one batch
    )
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    total = args.epochs * max(1, math.ceil(len(loader) / accelerator.num_processes))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=total, pct_start=0.15
    )
    model, optimizer, loader, scheduler = accelerator.prepare(backbone, optimizer, loader, scheduler)
    aug = AugmentConfig(scale=(args.crop_scale_min, 1.0), flip=True)
    history = []
    for epoch in range(args.epochs):
        model.train()
        quiet = args.disable_tqdm or not accelerator.is_main_process
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=quiet)
        for x, y in bar:
            logits, _ = model(augment(x.float().div_(255), aug))
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            acc, _ = test_accuracy(accelerator.unwrap_model(model), *test)
            history.append({"epoch": epoch + 1, "test_acc": acc})
            accelerator.print(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
    return history
