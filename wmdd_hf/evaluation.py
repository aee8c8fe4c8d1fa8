"""Judge a distilled set the way users do: train a fresh student on it, test it on the real test split.

Protocols (every hyper-parameter is in :class:`EvaluationConfig` and is written next to every result):

* ``soft`` (the paper's): knowledge distillation from the teacher on the fly. Each step takes a batch, renders a
  random resized crop + flip of every image, applies cutmix, and minimises ``T^2 * KL(teacher/T || student/T)``
  with AdamW and a cosine schedule. Without a teacher, stored augmented-view soft labels are used instead (view
  ``epoch % E`` of each image, rebuilt with :func:`wmdd_hf.augment.apply_views`).
* ``hard``: cross-entropy on the class labels only, SGD with momentum, learning rate x0.1 at half time, crop + flip
  augmentation: the classic dataset-distillation protocol (literature tables use it).

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from tqdm.auto import tqdm

from .augment import AugmentConfig, apply_views, augment, cutmix
from .backbones import Backbone, load_backbone
from .data import ImageSpec, decode_all, detect_columns


@dataclass
class EvaluationConfig:
    """How a student is trained and tested."""

    protocol: str = "soft"
    student: str = "wmdd_convnet"
    student_kwargs: dict = field(default_factory=lambda: {"width": 64})
    epochs: int | None = None  # None: min(1000, max(150, 30000 // N)) for N training images
    batch_size: int = 128
    learning_rate: float | None = None  # None: 1e-3 (soft, AdamW) / 1e-2 (hard, SGD)
    weight_decay: float | None = None  # None: 1e-2 (soft) / 5e-4 (hard)
    temperature: float = 4.0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    cutmix_p: float = 0.5
    eval_every: int | None = None  # None: about 4 evaluations per run (the last one is the result)
    progress: bool = True

    def __post_init__(self):
        if self.protocol not in ("soft", "hard"):
            raise ValueError(f"protocol={self.protocol!r}: use 'soft' or 'hard'.")

    def resolved(self, n: int) -> EvaluationConfig:
        c = EvaluationConfig(**asdict(self))
        c.epochs = self.epochs or int(min(1000, max(150, 30000 // max(n, 1))))
        c.learning_rate = self.learning_rate or (1e-3 if self.protocol == "soft" else 1e-2)
        c.weight_decay = (
            self.weight_decay if self.weight_decay is not None else (1e-2 if self.protocol == "soft" else 5e-4)
        )
        c.eval_every = self.eval_every or max(1, c.epochs // 4)
        return c

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        d["optimizer"] = "AdamW, cosine" if self.protocol == "soft" else "SGD momentum 0.9, x0.1 at half"
        d["augmentation"] = f"random resized crop {self.crop_scale} + flip" + (
            f" + cutmix p={self.cutmix_p}" if self.protocol == "soft" else ""
        )
        return d


@torch.no_grad()
def test_accuracy(
    model: Backbone, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """``(top-1, top-5)`` accuracy of ``model`` on uint8 ``images (N, C, H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    top1 = top5 = 0
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].to(device).float().div_(255)
        y = labels[s : s + batch_size].to(device)
        logits, _ = model(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        top1 += (top[:, 0] == y).sum().item()
        top5 += (top == y[:, None]).any(1).sum().item()
    return top1 / len(images), top5 / len(images)


def build_student(config: EvaluationConfig, spec: ImageSpec, num_classes: int, seed: int) -> Backbone:
    torch.manual_seed(seed)
    kwargs = dict(config.student_kwargs)
    if config.protocol == "hard" and config.student == "wmdd_convnet":
        kwargs.setdefault("norm", "instance")  # the literature's ConvNet for hard labels
    return load_backbone(
        config.student,
        num_classes=num_classes,
        in_chans=spec.channels,
        img_size=spec.size[0],
        pretrained=False,
        **kwargs,
    )


def train_student(
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    config: EvaluationConfig,
    seed: int = 0,
    teacher: Backbone | None = None,
    views: torch.Tensor | None = None,
    view_probs: torch.Tensor | None = None,
    num_classes: int | None = None,
    desc: str = "student",
) -> dict:
    """Trains one student from scratch on ``images (N, C, H, W)`` uint8 and tests it.

    Returns ``{"acc", "top5", "curve": [(epoch, acc)], "seconds"}``.
    """
    start = time.time()
    num_classes = num_classes or (teacher.num_classes if teacher is not None else int(labels.max()) + 1)
    spec = ImageSpec(images.shape[1], tuple(images.shape[2:]))
    c = config.resolved(len(images))
    if c.protocol == "soft" and teacher is None and views is None:
        raise ValueError("The soft protocol needs a teacher or stored soft labels (views and view_probs).")
    student = build_student(c, spec, num_classes, seed)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(images) / c.batch_size)
    total = c.epochs * steps_per_epoch
    if c.protocol == "soft":
        optimizer = torch.optim.AdamW(student.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    else:
        optimizer = torch.optim.SGD(student.parameters(), lr=c.learning_rate, momentum=0.9, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [total // 2], 0.1)
    aug = AugmentConfig(scale=c.crop_scale, flip=True)
    pixels = images.float() / 255
    curve = []
    bar = tqdm(range(c.epochs), desc=desc, disable=not c.progress, leave=False)
    for epoch in bar:
        student.train()
        order = torch.randperm(len(images), generator=g)
        for s in range(0, len(images), c.batch_size):
            idx = order[s : s + c.batch_size]
            if c.protocol == "hard":
                x = augment(pixels[idx], aug, g)
                loss = F.cross_entropy(student(x)[0], labels[idx])
            elif teacher is not None:
                x = cutmix(augment(pixels[idx], aug, g), g, p=c.cutmix_p)
                with torch.no_grad():
                    target = F.softmax(teacher(x)[0] / c.temperature, 1)
                loss = _kd_loss(student(x)[0], target, c.temperature)
            else:
                e = epoch % views.shape[0]
                x = apply_views(pixels[idx], views[e, idx])
                loss = _kd_loss(student(x)[0], view_probs[e, idx].float(), c.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if (epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs:
            acc, top5 = test_accuracy(student, test_images, test_labels)
            curve.append((epoch + 1, acc))
            bar.set_postfix(acc=f"{acc:.4f}")
    return {"acc": acc, "top5": top5, "curve": curve, "seconds": round(time.time() - start, 1)}


def _kd_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p = F.log_softmax(student_logits / temperature, 1)
    return F.kl_div(log_p, target_probs, reduction="batchmean") * temperature**2


def _as_tensors(dataset: Dataset, spec: ImageSpec | None) -> tuple[torch.Tensor, torch.Tensor, ImageSpec]:
    image_col, label_col = detect_columns(dataset.features)
    if spec is None:
        first = dataset[0][image_col]
        spec = ImageSpec(1 if first.mode in ("L", "1", "I", "F") else 3, (first.height, first.width))
    images, labels = decode_all(dataset, spec, image_col, label_col, progress=False)
    return images, labels, spec


def evaluate_distilled(
    distilled: Dataset | str,
    eval_dataset: Dataset,
    teacher: Backbone | str | None = None,
    config: EvaluationConfig | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    use_stored_soft_labels: bool = False,
    plot_path: str | None = None,
    **config_kwargs,
) -> dict:
    """Trains one student per seed on ``distilled`` (a Dataset, a local folder or a Hub id) and tests it on
    ``eval_dataset``. Returns ``{"acc_mean", "acc_std", "top5_mean", "accs", "seeds", "curves", "protocol",
    "eval_seconds"}``; ``plot_path`` saves the accuracy curves as a PNG."""
    from .hub import load_distilled

    config = config or EvaluationConfig(**config_kwargs)
    views = view_probs = None
    if isinstance(distilled, str):
        distilled, stored, _ = load_distilled(distilled)
        if use_stored_soft_labels and stored is not None:
            stored = stored.with_format("torch")
            n = len(distilled)
            epochs = len(stored) // n
            views = stored["view"].reshape(epochs, n, 5)
            view_probs = stored["soft_label"].reshape(epochs, n, -1)
    teacher_bb = load_backbone(teacher).freeze() if teacher is not None else None
    spec = teacher_bb.spec if teacher_bb is not None else None
    images, labels, spec = _as_tensors(distilled, spec)
    test_images, test_labels, _ = _as_tensors(eval_dataset, spec)
    num_classes = distilled.features[detect_columns(distilled.features)[1]].num_classes
    runs = []
    for seed in seeds:
        runs.append(
            train_student(
                images,
                labels,
                test_images,
                test_labels,
                config,
                seed,
                teacher=None if use_stored_soft_labels else teacher_bb,
                views=views,
                view_probs=view_probs,
                num_classes=num_classes,
                desc=f"student seed {seed}",
            )
        )
    accs = [r["acc"] for r in runs]
    result = {
        "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "top5_mean": float(np.mean([r["top5"] for r in runs])),
        "accs": accs,
        "seeds": list(seeds),
        "curves": [r["curve"] for r in runs],
        "protocol": config.resolved(len(images)).describe(),
        "eval_seconds": round(sum(r["seconds"] for r in runs), 1),
    }
    if plot_path:
        from .visualization import save_accuracy_curve

        save_accuracy_curve(
            {f"seed {s}": r["curve"] for s, r in zip(seeds, runs)}, plot_path, f"{config.protocol} protocol"
        )
    return result
