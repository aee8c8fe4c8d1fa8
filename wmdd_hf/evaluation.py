"""Judge a distilled set the way users do: train a fresh student on it, test it once on the real test split.

Protocols (every hyper-parameter is in :class:`EvaluationConfig` and is written next to every result):

* ``soft`` (the paper's): knowledge distillation. Each step takes a batch, renders a random resized crop + flip of
  every image, applies cutmix, and minimises ``T^2 * KL(teacher/T || student/T)`` with AdamW and a cosine schedule.
  With ``weighted_kd`` (the paper's relabelling) each image's KL term is multiplied by its barycenter weight divided
  by the batch mean. Without a teacher, stored views and logits (:class:`wmdd_hf.soft_labels.ViewLabels`) are used:
  view ``step's epoch % E`` of each image, the same crop, flip and cutmix the teacher saw.
* ``hard``: cross-entropy on the class labels only, SGD with momentum, learning rate x0.1 at half time, crop + flip
  augmentation: the classic dataset-distillation protocol (literature tables use it).
* ``fixed``: one fixed soft label per image, no teacher: ``T^2 * KL(softmax(log p / T) || student/T)`` against the
  set's ``soft_label`` column ``p`` (``T`` = 1 by default: the stored probabilities as they are), AdamW and cosine as
  ``soft``, crop + flip (no cutmix: a pasted box would need a label of its own). This is what a user who loads a
  published set trains on. Sets without the column (real subsets) get it from the teacher once per image, with
  :func:`wmdd_hf.soft_labels.soft_labels` at the same temperature as a distilled set's (``with_soft_labels``).

``augment=False`` turns crop, flip and cutmix off (DD-Ranking's "without augmentation" runs).

The budget is counted in optimiser steps (``steps``). Curves are drawn on a **validation** split held out from the
training data; the test split is read once per student, at the end. Everything (teacher, student, batches) lives on
one device: ``device=`` when given, else the teacher's, else the CPU. Accuracies are fractions in [0, 1].
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

from .augment import AugmentConfig, apply_cutmix, augment, sample_cutmix
from .backbones import Backbone, load_backbone
from .data import ImageSpec, decode_all, detect_columns
from .soft_labels import ViewLabels

#: Student steps per images-per-class, chosen on the validation split: the smallest budget after which neither random
#: nor wmdd students gain 0.3 points over the last quarter (the curves and the reasons per IPC:
#: benchmarks/results/fashion_mnist.md, "Step budgets").
DEFAULT_STEPS = {1: 8000, 10: 1200, 50: 4800}


#: How a student is taught (module docstring): the teacher online, hard labels, or one fixed soft label per image.
PROTOCOLS = ("soft", "hard", "fixed")
LABELS = {
    "soft": "the teacher on every augmented batch",
    "hard": "class labels",
    "fixed": "the set's soft_label column, one per image; no teacher",
}


def default_steps(images_per_class: float) -> int:
    """The validated budget of the nearest IPC at or above ``images_per_class`` (the largest one beyond)."""
    for ipc in sorted(DEFAULT_STEPS):
        if images_per_class <= ipc:
            return DEFAULT_STEPS[ipc]
    return DEFAULT_STEPS[max(DEFAULT_STEPS)]


@dataclass
class EvaluationConfig:
    """How a student is trained and tested."""

    protocol: str = "soft"  # one of PROTOCOLS
    student: str = "wmdd_convnet"
    student_kwargs: dict = field(default_factory=lambda: {"width": 64})
    steps: int | None = None  # optimiser steps; None: default_steps(images per class)
    batch_size: int = 128
    learning_rate: float | None = None  # None: 1e-3 (soft, AdamW) / 1e-2 (hard, SGD)
    weight_decay: float | None = None  # None: 1e-2 (soft) / 5e-4 (hard)
    temperature: float | None = None  # None: 4 (soft) / 1 (fixed: the stored probabilities as they are)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    cutmix_p: float = 0.5
    augment: bool = True
    weighted_kd: bool = True
    eval_every: int | None = None  # validation every this many steps; None: 8 points per run
    channels_last: bool | None = None  # NHWC student and batches (same numbers up to rounding); None: _fast_layout
    progress: bool = True

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r}: use one of {', '.join(map(repr, PROTOCOLS))}.")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps} must be at least 1.")

    def resolved(self, n: int, num_classes: int) -> EvaluationConfig:
        """A copy with every ``None`` filled in for ``n`` training images of ``num_classes`` classes."""
        c = EvaluationConfig(**asdict(self))
        c.steps = self.steps or default_steps(n / max(num_classes, 1))
        adamw = self.protocol in ("soft", "fixed")
        c.learning_rate = self.learning_rate or (1e-3 if adamw else 1e-2)
        c.weight_decay = self.weight_decay if self.weight_decay is not None else (1e-2 if adamw else 5e-4)
        c.temperature = self.temperature or (1.0 if self.protocol == "fixed" else 4.0)
        c.eval_every = self.eval_every or max(1, c.steps // 8)
        return c

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        d.pop("channels_last")  # speed only: the protocol is the same either way
        d["optimizer"] = "SGD momentum 0.9, x0.1 at half" if self.protocol == "hard" else "AdamW, cosine"
        if not self.augment:
            d["augmentation"] = "none"
        else:
            d["augmentation"] = f"random resized crop {self.crop_scale} + flip" + (
                f" + cutmix p={self.cutmix_p}" if self.protocol == "soft" else ""
            )
        d["labels"] = LABELS[self.protocol]
        return d


def resolve_device(device: str | torch.device | None, teacher: Backbone | None = None) -> torch.device:
    """The one device of an evaluation: ``device`` when given, else the teacher's, else the CPU."""
    if device is not None:
        return torch.device(device)
    if teacher is not None:
        return next(teacher.parameters()).device
    return torch.device("cpu")


@torch.inference_mode()
def test_accuracy(
    model: Backbone, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """``(top-1, top-5)`` accuracy of ``model`` on uint8 ``images (N, C, H, W)`` (moved to the model's device)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    top1 = top5 = 0
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].to(device).float().div_(255)
        if x.dim() == 4:
            x = x.contiguous(memory_format=_layout_of(model))
        y = labels[s : s + batch_size].to(device)
        logits, _ = model(x)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        top1 += (top[:, 0] == y).sum().item()
        top5 += (top == y[:, None]).any(1).sum().item()
    model.train(was_training)
    return top1 / max(len(images), 1), top5 / max(len(images), 1)


def _layout_of(model: torch.nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored NHWC, else contiguous."""
    for p in model.parameters():
        if p.dim() == 4:
            return (
                torch.channels_last if p.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            )
    return torch.contiguous_format


def _fast_layout(model: torch.nn.Module, channels_last: bool | None) -> torch.memory_format:
    """The memory format a student trains fastest in; ``channels_last`` True/False forces it.

    None: NHWC unless the model has a GroupNorm (instance norm), which has no fast NHWC kernel on the CPU (the
    timings behind this: README.md, "How quality is measured").
    """
    if channels_last is None:
        channels_last = not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    return torch.channels_last if channels_last else torch.contiguous_format


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


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` per image, averaged over the batch.

    ``weights (B,)``: each image's term is multiplied by ``weights / weights.mean()`` (the paper's weighted
    relabelling: barycenter weights normalised to mean 1 within the batch).
    """
    log_p = F.log_softmax(student_logits / temperature, 1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, 1)
    per_image = (log_q.exp() * (log_q - log_p)).sum(1)
    if weights is not None:
        per_image = per_image * (weights / weights.mean().clamp_min(1e-12))
    return per_image.mean() * temperature**2


def train_student(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: EvaluationConfig,
    seed: int = 0,
    teacher: Backbone | None = None,
    weights: torch.Tensor | None = None,
    stored: ViewLabels | None = None,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    desc: str = "student",
    soft_targets: torch.Tensor | None = None,
) -> dict:
    """Trains one student from scratch on ``images (N, C, H, W)`` uint8 with ``labels (N,)``.

    ``weights (N,)``: per-image KD weights (soft protocol, when ``config.weighted_kd``). ``soft_targets (N, K)``:
    the fixed protocol's per-image probabilities (a set's ``soft_label`` column). ``validation`` / ``test``: uint8
    images and labels; validation accuracy is recorded every ``eval_every`` steps, the test split is read once at
    the end. Returns ``{"acc", "top5"}`` (test; None without a test split), ``"val_acc"``, ``"curve":
    [(step, validation accuracy)]``, ``"seconds"``, ``"seconds_per_step"``.
    """
    start = time.time()
    num_classes = num_classes or (teacher.num_classes if teacher is not None else int(labels.max()) + 1)
    spec = ImageSpec(images.shape[1], tuple(images.shape[2:]))
    c = config.resolved(len(images), num_classes)
    _check_protocol_inputs(c, teacher, stored, soft_targets, len(images), num_classes)
    device = resolve_device(device, teacher)
    if teacher is not None and next(teacher.parameters()).device != device:
        teacher = teacher.to(device)
    student = build_student(c, spec, num_classes, seed).to(device)
    layout = _fast_layout(student, c.channels_last) if images.dim() == 4 else torch.contiguous_format
    student = student.to(memory_format=layout)
    g = torch.Generator().manual_seed(seed)
    optimizer, scheduler = _optimizer(c, student)
    pixels = images.to(device).float().div_(255)  # each batch is put in `layout` right before the student sees it
    batch_loss = _protocol_loss(
        c, student, pixels, labels.to(device), layout, g, teacher, weights, stored, soft_targets
    )
    curve = _train_steps(c, student, batch_loss, optimizer, scheduler, len(images), g, device, validation, desc)
    train_seconds = time.time() - start
    acc, top5 = test_accuracy(student, *test) if test is not None else (None, None)
    return {
        "acc": acc,
        "top5": top5,
        "val_acc": curve[-1][1] if curve else None,
        "curve": curve,
        "steps": c.steps,
        "seconds": round(time.time() - start, 1),
        "seconds_per_step": train_seconds / c.steps,
    }


def _train_steps(c, student, batch_loss, optimizer, scheduler, n: int, g, device, validation, desc: str) -> list:
    """``c.steps`` optimisation steps over shuffled batches of the ``n`` images (a new order each epoch, drawn from
    ``g``); returns the validation curve ``[(step, accuracy)]`` every ``c.eval_every`` steps and at the last."""
    batch = min(c.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    curve: list[tuple[int, float]] = []
    order = torch.empty(0, dtype=torch.long)
    bar = tqdm(range(c.steps), desc=desc, disable=not c.progress, leave=False)
    student.train()
    for step in bar:
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0:
            order = torch.randperm(n, generator=g)
        loss = batch_loss(epoch, order[position * batch : (position + 1) * batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if validation is not None and ((step + 1) % c.eval_every == 0 or step + 1 == c.steps):
            val_acc, _ = test_accuracy(student, *validation)
            curve.append((step + 1, val_acc))
            bar.set_postfix(val=f"{val_acc:.4f}")
    return curve


def _check_protocol_inputs(c: EvaluationConfig, teacher, stored, soft_targets, n: int, num_classes: int) -> None:
    if c.protocol == "soft" and teacher is None and stored is None:
        raise ValueError(
            "The soft protocol needs a teacher (this set carries none in teacher/): pass teacher=, or use the stored "
            "soft labels (use_stored_soft_labels=True), or the 'fixed' or 'hard' protocol."
        )
    if c.protocol == "fixed" and (soft_targets is None or soft_targets.shape != (n, num_classes)):
        shape = None if soft_targets is None else tuple(soft_targets.shape)
        raise ValueError(
            f"The fixed protocol needs soft_targets of shape {(n, num_classes)} (got {shape}): one "
            "probability row per image, e.g. the set's soft_label column or wmdd_hf.evaluation.with_soft_labels."
        )


def _optimizer(c: EvaluationConfig, student: torch.nn.Module):
    """AdamW + cosine for the soft protocol; SGD with momentum and one step decay at half-way for the others."""
    if c.protocol == "soft":
        optimizer = torch.optim.AdamW(student.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, c.steps)
    optimizer = torch.optim.SGD(student.parameters(), lr=c.learning_rate, momentum=0.9, weight_decay=c.weight_decay)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, [c.steps // 2], 0.1)


def _protocol_loss(c: EvaluationConfig, student, pixels, labels, layout, g, teacher, weights, stored, soft_targets):
    """The loss of one batch under ``c.protocol``, chosen once: ``(epoch, idx (b,)) -> scalar``. ``pixels (N, C,
    H, W)`` in [0, 1] and ``labels (N,)`` on the student's device; ``g`` draws the augmentation."""
    aug = AugmentConfig(scale=c.crop_scale, flip=True)
    device = pixels.device

    def view(idx):
        return augment(pixels[idx], aug, g) if c.augment else pixels[idx]

    if c.protocol == "hard":
        return lambda epoch, idx: F.cross_entropy(student(view(idx).contiguous(memory_format=layout))[0], labels[idx])
    if c.protocol == "fixed":
        # the targets as logits: softmax(log p / T) in kd_loss (float16 zeros clamped, not -inf)
        fixed_logits = soft_targets.to(device).float().clamp_min(1e-8).log()
        return lambda epoch, idx: kd_loss(
            student(view(idx).contiguous(memory_format=layout))[0], fixed_logits[idx], c.temperature
        )
    w = weights.to(device).float() if (weights is not None and c.weighted_kd) else None
    if teacher is not None:  # the teacher labels every crop + flip + cutmix view

        def relabelled(epoch, idx):
            x = pixels[idx]
            if c.augment:
                x = augment(x, aug, g)
                partners, boxes = sample_cutmix(len(idx), tuple(pixels.shape[2:]), g, p=c.cutmix_p)
                x = apply_cutmix(x, x[partners.to(device)], boxes)
            x = x.contiguous(memory_format=layout)
            with torch.no_grad():
                target = teacher(x)[0]
            return kd_loss(student(x)[0], target, c.temperature, None if w is None else w[idx])

        return relabelled

    def replayed(epoch, idx):  # the stored views and the teacher's logits on them
        e = epoch % stored.epochs
        x = (stored.render(pixels, e, idx) if c.augment else pixels[idx]).contiguous(memory_format=layout)
        target = stored.logits[e, idx.to(stored.logits.device)].to(device)
        return kd_loss(student(x)[0], target, c.temperature, None if w is None else w[idx])

    return replayed


def _as_tensors(dataset: Dataset, spec: ImageSpec | None) -> tuple[torch.Tensor, torch.Tensor, ImageSpec]:
    image_col, label_col = detect_columns(dataset.features)
    if spec is None:
        first = dataset[0][image_col]
        spec = ImageSpec(1 if first.mode in ("L", "1", "I", "F") else 3, (first.height, first.width))
    images, labels = decode_all(dataset, spec, image_col, label_col, progress=False)
    return images, labels, spec


def stored_soft_labels(dataset: Dataset) -> torch.Tensor:
    """The ``soft_label`` column as ``(N, K)`` float32 probabilities; a clear error when the set has none."""
    if "soft_label" not in dataset.column_names:
        raise ValueError(
            "The fixed protocol trains on the set's soft_label column, and this set has none: add one with "
            "wmdd_hf.evaluation.with_soft_labels(dataset, teacher) (a real subset) or use protocol='hard'."
        )
    return torch.tensor(np.asarray(dataset["soft_label"], dtype=np.float32))


def with_soft_labels(dataset: Dataset, teacher: Backbone | str, temperature: float = 1.0) -> Dataset:
    """``dataset`` with its ``soft_label`` column (re)written by ``teacher``: ``softmax(logits / temperature)`` on
    each un-augmented image, once per image, the call that writes a distilled set's column
    (:func:`wmdd_hf.soft_labels.soft_labels`). Gives a real subset the labels a published set carries."""
    from datasets import Sequence, Value

    from .soft_labels import soft_labels

    teacher = load_backbone(teacher).freeze() if isinstance(teacher, str) else teacher
    images, _, _ = _as_tensors(dataset, teacher.spec)
    probs = soft_labels(teacher, images, temperature).float().numpy()
    if "soft_label" in dataset.column_names:
        dataset = dataset.remove_columns("soft_label")
    return dataset.add_column("soft_label", probs.tolist(), feature=Sequence(Value("float32")))


def barycenter_weights(dataset: Dataset) -> torch.Tensor | None:
    """The ``barycenter_weight`` column as ``(N,)`` float32, or None (uniform) when the set has none."""
    if "barycenter_weight" not in dataset.column_names:
        return None
    return torch.tensor(np.asarray(dataset["barycenter_weight"], dtype=np.float32))


def evaluate_distilled(
    distilled: Dataset | str,
    eval_dataset: Dataset,
    teacher: Backbone | str | None = None,
    config: EvaluationConfig | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    use_stored_soft_labels: bool = False,
    plot_path: str | None = None,
    validation_dataset: Dataset | None = None,
    device: str | torch.device | None = None,
    **config_kwargs,
) -> dict:
    """Trains one student per seed on ``distilled`` (a Dataset, a local folder or a Hub id) and tests it once on
    ``eval_dataset``. ``validation_dataset`` (held out from the training data) gives the curves. Without a
    ``teacher``, the soft protocol uses the one a folder or Hub set carries in ``teacher/``.

    Returns ``{"acc_mean", "acc_std", "top5_mean", "accs", "val_acc_mean", "seeds", "curves", "protocol",
    "eval_seconds", "seconds_per_student", "seconds_per_step"}``; ``plot_path`` saves the validation curves.
    """
    config = config or EvaluationConfig(**config_kwargs)
    teacher = _bundled_teacher_if_needed(distilled, teacher, config.protocol, use_stored_soft_labels)
    distilled, stored = _distilled_and_stored_views(distilled, use_stored_soft_labels)
    teacher_bb = load_backbone(teacher).freeze() if teacher is not None else None
    device = resolve_device(device, teacher_bb)
    if teacher_bb is not None:
        teacher_bb = teacher_bb.to(device)
    spec = teacher_bb.spec if teacher_bb is not None else None
    images, labels, spec = _as_tensors(distilled, spec)
    test = _as_tensors(eval_dataset, spec)[:2]
    validation = _as_tensors(validation_dataset, spec)[:2] if validation_dataset is not None else None
    num_classes = distilled.features[detect_columns(distilled.features)[1]].num_classes
    weights = barycenter_weights(distilled)
    fixed = stored_soft_labels(distilled) if config.protocol == "fixed" else None
    runs = [
        train_student(
            images,
            labels,
            config,
            seed,
            teacher=None if use_stored_soft_labels else teacher_bb,
            weights=weights,
            stored=stored,
            validation=validation,
            test=test,
            num_classes=num_classes,
            device=device,
            desc=f"student seed {seed}",
            soft_targets=fixed,
        )
        for seed in seeds
    ]
    result = summarise_students(runs, seeds)
    result["protocol"] = config.resolved(len(images), num_classes).describe()
    result["weighted"] = weights is not None and config.weighted_kd and config.protocol == "soft"
    if plot_path and validation is not None:
        from .visualization import save_accuracy_curve

        curves = {f"seed {s}": r["curve"] for s, r in zip(seeds, runs)}
        save_accuracy_curve(curves, plot_path, f"{config.protocol} protocol (validation accuracy)")
    return result


def _bundled_teacher_if_needed(distilled, teacher, protocol: str, use_stored_soft_labels: bool):
    """``teacher``, or, when the soft protocol needs one and none was passed, the one a distilled folder or Hub set
    carries in ``teacher/`` (None if it carries none)."""
    if teacher is not None or not isinstance(distilled, str) or protocol != "soft" or use_stored_soft_labels:
        return teacher
    from .hub import bundled_teacher

    return bundled_teacher(distilled)


def _distilled_and_stored_views(distilled: Dataset | str, use_stored_soft_labels: bool):
    """``(the set as a Dataset, its stored per-view soft labels or None)``: a folder or Hub id is loaded; the stored
    views are read only with ``use_stored_soft_labels``, which needs a set that has them."""
    from .hub import load_distilled

    stored = None
    if isinstance(distilled, str):
        distilled, view_rows, _ = load_distilled(distilled)
        if use_stored_soft_labels and view_rows is not None:
            stored = ViewLabels.from_columns(view_rows, len(distilled))
    if use_stored_soft_labels and stored is None:
        raise ValueError("use_stored_soft_labels=True needs a distilled folder or Hub id with a soft_labels config.")
    return distilled, stored


def summarise_students(runs: list[dict], seeds) -> dict:
    """Mean and std over the students of :func:`train_student` (accuracies as fractions, times in seconds)."""
    accs = [r["acc"] for r in runs]
    vals = [r["val_acc"] for r in runs if r["val_acc"] is not None]
    return {
        "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "top5_mean": float(np.mean([r["top5"] for r in runs])),
        "accs": accs,
        "val_acc_mean": float(np.mean(vals)) if vals else None,
        "seeds": list(seeds),
        "curves": [r["curve"] for r in runs],
        "eval_seconds": round(sum(r["seconds"] for r in runs), 1),
        "seconds_per_student": round(float(np.mean([r["seconds"] for r in runs])), 1),
        "seconds_per_step": float(np.mean([r["seconds_per_step"] for r in runs])),
    }
