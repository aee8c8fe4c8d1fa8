"""Train your own ``transformers`` model on a published set's soft labels, in a few lines.

    from datasets import load_dataset
    from torchvision import transforms
    from transformers import TrainingArguments
    from wmdd_hf.trainer import SoftLabelTrainer, soft_label_transform

    train = load_dataset("user/fashion-mnist-wmdd-ipc10", split="train")
    train.set_transform(soft_label_transform(transforms.Compose([transforms.RandomResizedCrop(28, (0.5, 1)),
                                                                 transforms.RandomHorizontalFlip(),
                                                                 transforms.ToTensor()])))
    trainer = SoftLabelTrainer(model=model, args=TrainingArguments("out", num_train_epochs=200), train_dataset=train)
    trainer.train()

The set's ``soft_label`` column holds the teacher's probabilities, one row per image; :class:`SoftLabelTrainer`
trains on them with a KL loss (:func:`soft_label_loss`) and on the hard ``label`` where a batch has none. Passing the
probabilities as ``labels`` instead would make ``transformers`` switch to multi-label classification and train with
binary cross-entropy: the transform keeps them apart (``labels``: the class id, ``soft_labels``: the row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import Trainer

logger = logging.getLogger(__name__)


def soft_label_loss(logits: torch.Tensor, soft_labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(p_T || softmax(logits / T))``, the mean over the batch, where ``soft_labels (B, K)`` are stored
    probabilities ``p`` and ``p_T = softmax(log p / T)`` (``T = 1``: ``p`` itself). ``logits (B, K)``."""
    log_q = F.log_softmax(logits.float() / temperature, dim=1)
    log_p = F.log_softmax(soft_labels.float().clamp_min(1e-8).log() / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean() * temperature**2


def soft_label_transform(
    image_transform: Callable, image_column: str = "image", label_column: str = "label", mode: str | None = None
) -> Callable[[dict], dict]:
    """A ``Dataset.set_transform`` function: ``pixel_values`` (``image_transform`` of each image, converted to
    ``mode`` first when given, e.g. ``"L"`` or ``"RGB"``), ``labels`` (the class ids) and, when the set has a
    ``soft_label`` column, ``soft_labels`` (float32 rows)."""

    def transform(batch: dict) -> dict:
        images = batch[image_column]
        out = {
            "pixel_values": [image_transform(im.convert(mode) if mode else im) for im in images],
            "labels": batch[label_column],
        }
        if "soft_label" in batch:
            out["soft_labels"] = [torch.tensor(row, dtype=torch.float32) for row in batch["soft_label"]]
        return out

    return transform


class SoftLabelTrainer(Trainer):
    """``transformers.Trainer`` whose loss is :func:`soft_label_loss` on a batch's ``soft_labels`` (cross-entropy on
    ``labels`` for a batch without them). ``temperature``: that of the loss (1: the stored probabilities as they are).

    A transformed dataset needs its raw columns until the transform runs, so ``remove_unused_columns`` is turned off
    (with a warning when it was on)."""

    def __init__(self, *args, temperature: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0.")
        self.temperature = temperature
        if self.args.remove_unused_columns:
            logger.warning("SoftLabelTrainer: remove_unused_columns=False (the transform reads the raw columns).")
            self.args.remove_unused_columns = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        soft = inputs.pop("soft_labels", None)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        if soft is not None:
            loss = soft_label_loss(outputs.logits, soft, self.temperature)
        elif labels is not None:
            loss = F.cross_entropy(outputs.logits, labels)
        else:
            raise ValueError("SoftLabelTrainer needs 'soft_labels' or 'labels' in a batch: use soft_label_transform.")
        return (loss, outputs) if return_outputs else loss


class StoredViewsDataset(torch.utils.data.Dataset):
    """The ``soft_labels`` config of a distilled set replayed for :class:`SoftLabelTrainer`, no teacher needed: one
    item per stored ``(epoch, image)`` row, ``{"pixel_values": the stored view (crop, flip and the cutmix box with
    its partner's view) (C, H, W) in [0, 1], "soft_labels": softmax(stored logits) (K,), "labels"}``; the trainer's
    ``temperature`` then softens them (``softmax(log p / T) = softmax(logits / T)``).

    ``num_train_epochs=1`` over it shows every image as often as the set stores views (``soft_label_epochs``), each
    time through the view the teacher labelled.

        set, views, _ = wmdd_hf.load_distilled("user/set")
        train = StoredViewsDataset(set, views)
        SoftLabelTrainer(model=model, args=TrainingArguments("out", num_train_epochs=1), train_dataset=train)
    """

    def __init__(self, distilled, views):
        from .evaluation import _as_tensors
        from .soft_labels import ViewLabels

        if views is None:
            raise ValueError("This set stores no views (soft_label_epochs=0): use soft_label_transform instead.")
        images, self.labels, _ = _as_tensors(distilled, None)
        self.pixels = images.float() / 255
        self.stored = ViewLabels.from_columns(views, len(self.pixels))

    def __len__(self) -> int:
        return self.stored.epochs * len(self.pixels)

    def __getitem__(self, row: int) -> dict:
        epoch, index = divmod(int(row), len(self.pixels))
        view = self.stored.render(self.pixels, epoch, torch.tensor([index]))[0]
        probs = torch.softmax(self.stored.logits[epoch, index].float(), dim=-1)
        return {"pixel_values": view, "soft_labels": probs, "labels": int(self.labels[index])}
