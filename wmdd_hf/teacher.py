"""Train a teacher (any backbone the adapter accepts) on a `datasets` image dataset, with Accelerate.

The teacher is saved with :func:`wmdd_hf.backbones.save_backbone` (config + safetensors + class names) together with
its test accuracy, the command's arguments and the wall time in ``wmdd_hf.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import AugmentConfig, augment
from .backbones import Backbone, load_backbone, save_backbone
from .data import ImageSpec, decode_all, fits_in_memory, load_image_dataset, validate_dataset
from .evaluation import test_accuracy


@dataclass
class TeacherTrainingArguments:
    """Arguments of ``examples/train_teacher.py`` (also readable from a YAML/JSON file with ``--config``)."""

    output_dir: str = field(default="outputs/teacher-fashion-mnist", metadata={"help": "Where the teacher is saved."})
    model: str = field(default="wmdd_convnet", metadata={"help": "timm name, transformers id or folder."})
    dataset: str = field(default="fashion_mnist", metadata={"help": "'fashion_mnist', a Hub id or a local folder."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(default="test", metadata={"help": "Split to report accuracy on."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (auto-detected)."})
    label_column: str | None = field(default=None, metadata={"help": "ClassLabel column (auto-detected)."})
    img_size: int | None = field(
        default=None, metadata={"help": "Input size (default: the model's, 28 for the ConvNet)."}
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


def train_teacher(args: TeacherTrainingArguments) -> dict:
    """Trains and saves a teacher; returns ``{"test_acc": fraction, "wall_s": seconds, ...}``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator()
    set_seed(args.seed)
    start = time.time()
    with accelerator.main_process_first():
        train = load_image_dataset(args.dataset, args.train_split)
        test = load_image_dataset(args.dataset, args.eval_split)
    image_col, label_col = validate_dataset(train, args.image_column, args.label_column)
    names = train.features[label_col].names
    mode = train[0][image_col].mode
    backbone = build_teacher(args, len(names), names, 1 if mode in ("L", "1", "I", "F") else 3)
    spec: ImageSpec = backbone.spec
    if not fits_in_memory(train, spec):
        raise ValueError("This teacher trainer keeps the decoded training set in memory; use a smaller dataset.")
    with accelerator.main_process_first():
        x_train, y_train = decode_all(train, spec, image_col, label_col, progress=accelerator.is_main_process)
        x_test, y_test = decode_all(test, spec, image_col, label_col, progress=accelerator.is_main_process)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True, drop_last=True
    )
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    total = args.epochs * math.ceil(len(loader) / accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=total, pct_start=0.15
    )
    model, optimizer, loader, scheduler = accelerator.prepare(backbone, optimizer, loader, scheduler)
    aug = AugmentConfig(scale=(args.crop_scale_min, 1.0), flip=True)
    history = []
    for epoch in range(args.epochs):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not accelerator.is_main_process)
        for x, y in bar:
            x = augment(x.float().div_(255), aug)
            logits, _ = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            acc, _ = test_accuracy(accelerator.unwrap_model(model), x_test, y_test)
            history.append({"epoch": epoch + 1, "test_acc": acc})
            accelerator.print(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
    result = {"test_acc": history[-1]["test_acc"], "wall_s": round(time.time() - start, 1), "history": history}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_backbone(
            accelerator.unwrap_model(model),
            args.output_dir,
            metadata={
                "training_arguments": asdict(args),
                "dataset": args.dataset,
                "num_processes": accelerator.num_processes,
                **result,
            },
        )
    return result
