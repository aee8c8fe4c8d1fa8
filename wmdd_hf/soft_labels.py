"""Soft labels: the teacher's view of the synthetic images.

* :func:`soft_labels`: per image, ``softmax(logits / T)`` on the un-augmented image, ``(N, K)`` float16 (the
  ``soft_label`` column of a distilled set).
* :func:`augmented_soft_labels`: for a fixed, seeded sequence of augmented views (``epochs`` views per image: random
  resized crop + flip, then cutmix with a partner image), the view parameters and the teacher's **logits** on each
  view, as a :class:`ViewLabels`. Logits, not probabilities: a student picks its own temperature. A student loop
  rebuilds view ``(e, i)`` with :meth:`ViewLabels.render` and trains on its stored logits without the teacher; the
  rendered pixels are the ones the teacher saw (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .augment import AugmentConfig, apply_cutmix, apply_views, sample_cutmix, sample_views
from .backbones import Backbone


@torch.no_grad()
def teacher_outputs(
    backbone: Backbone, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, K), features (N, D))`` float32 of ``backbone`` in eval mode on ``images (N, C, H, W)``: floats in
    [0, 1], or uint8 pixels (divided by 255 one batch at a time), ``batch_size`` images at a time on its device."""
    backbone.eval()
    device = next(backbone.parameters()).device
    logits, feats = [], []
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].to(device).float()
        out, feat = backbone(x / 255 if images.dtype == torch.uint8 else x)
        logits.append(out.float())
        feats.append(feat.float())
    if not logits:
        return torch.zeros(0, backbone.num_classes, device=device), torch.zeros(0, 0, device=device)
    return torch.cat(logits), torch.cat(feats)


def teacher_logits(backbone: Backbone, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``(N, K)`` float32 logits of ``backbone`` on ``images (N, C, H, W)`` in [0, 1], on the backbone's device."""
    return teacher_outputs(backbone, images, batch_size)[0]


def soft_labels(
    backbone: Backbone, images: torch.Tensor, temperature: float = 1.0, batch_size: int = 500
) -> torch.Tensor:
    """``(N, K)`` float16 probabilities (CPU) of ``backbone`` on ``images (N, C, H, W)`` in [0, 1] at ``temperature``."""
    logits = teacher_logits(backbone, images, batch_size)
    return torch.softmax(logits / temperature, dim=1).half().cpu()


@dataclass
class ViewLabels:
    """Stored augmented views and the teacher's logits on them (``E`` epochs of views of ``N`` images).

    ``views (E, N, 5)`` float32 crop/flip parameters (see :mod:`wmdd_hf.augment`), ``partners (E, N)`` int64 cutmix
    partner of each image, ``boxes (E, N, 4)`` int64 pasted box ``(y0, y1, x0, x1)`` in pixels (empty: no mix),
    ``logits (E, N, K)`` float16.
    """

    views: torch.Tensor
    partners: torch.Tensor
    boxes: torch.Tensor
    logits: torch.Tensor

    @property
    def epochs(self) -> int:
        return int(self.views.shape[0])

    def render(self, pixels: torch.Tensor, epoch: int, index: torch.Tensor) -> torch.Tensor:
        """The stored view of epoch ``epoch`` for images ``index`` of ``pixels (N, C, H, W)`` in [0, 1]: each image's
        crop/flip with its partner's crop/flip pasted into its box. On ``pixels``' device."""
        index = index.to(self.views.device)
        partners = self.partners[epoch, index]
        own = apply_views(pixels[index.to(pixels.device)], self.views[epoch, index])
        other = apply_views(pixels[partners.to(pixels.device)], self.views[epoch, partners])
        return apply_cutmix(own, other, self.boxes[epoch, index])

    def to_columns(self) -> dict[str, list]:
        """Rows ``(epoch, image_index, view, partner, box, logits)``, epoch-major: the ``soft_labels`` config."""
        e, n = self.views.shape[:2]
        return {
            "epoch": torch.arange(e).repeat_interleave(n).tolist(),
            "image_index": torch.arange(n).repeat(e).tolist(),
            "view": self.views.reshape(e * n, 5).tolist(),
            "partner": self.partners.reshape(-1).tolist(),
            "box": self.boxes.reshape(e * n, 4).tolist(),
            "logits": self.logits.reshape(e * n, -1).float().tolist(),
        }

    @classmethod
    def from_columns(cls, rows, num_images: int) -> ViewLabels:
        """Inverse of :meth:`to_columns`; ``rows`` is a ``datasets.Dataset`` (or dict) with those columns."""
        columns = rows if isinstance(rows, dict) else rows.with_format("torch")[:]

        def get(name: str) -> torch.Tensor:
            return torch.as_tensor(columns[name])

        epoch, index = get("epoch").long(), get("image_index").long()
        e = int(epoch.max()) + 1 if len(epoch) else 0
        if len(epoch) != e * num_images:
            raise ValueError(f"The soft_labels config has {len(epoch)} rows, not {e} epochs x {num_images} images.")
        order = torch.argsort(epoch * num_images + index)
        return cls(
            views=get("view").float()[order].reshape(e, num_images, 5),
            partners=get("partner").long()[order].reshape(e, num_images),
            boxes=get("box").long()[order].reshape(e, num_images, 4),
            logits=get("logits").half()[order].reshape(e, num_images, -1),
        )

    def nbytes(self) -> int:
        return storage_bytes(self.views, self.partners, self.boxes, self.logits)


@torch.no_grad()
def augmented_soft_labels(
    backbone: Backbone,
    images: torch.Tensor,
    epochs: int,
    augment: AugmentConfig,
    seed: int = 0,
    cutmix_p: float = 0.5,
    block: int = 128,
    batch_size: int = 500,
) -> ViewLabels:
    """``epochs`` seeded views per image of ``images (N, C, H, W)`` in [0, 1] and the teacher's logits on them.

    Epoch ``e`` draws from ``seed + e``; cutmix is decided per block of ``block`` images (the student's batch
    size), partners come from the whole set.
    """
    n = len(images)
    size = tuple(images.shape[-2:])
    pixels = images.float()
    views, partners, boxes, logits = [], [], [], []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        v = sample_views(n, augment, generator)
        parts = [sample_cutmix(min(block, n - s), size, generator, p=cutmix_p, pool=n) for s in range(0, n, block)]
        p = torch.cat([q for q, _ in parts]) if parts else torch.zeros(0, dtype=torch.long)
        b = torch.cat([r for _, r in parts]) if parts else torch.zeros(0, 4, dtype=torch.long)
        if not bool((b[:, 1] > b[:, 0]).any()):  # unmixed blocks: every image is its own partner
            p = torch.arange(n)
        else:
            p = torch.where(b[:, 1] > b[:, 0], p, torch.arange(n))
        views.append(v)
        partners.append(p)
        boxes.append(b)
    labels = ViewLabels(torch.stack(views), torch.stack(partners), torch.stack(boxes), torch.empty(0))
    for epoch in range(epochs):
        rendered = labels.render(pixels, epoch, torch.arange(n))
        logits.append(teacher_logits(backbone, rendered, batch_size).half().cpu())
    labels.logits = torch.stack(logits)
    return labels


def storage_bytes(*tensors: torch.Tensor) -> int:
    """Bytes taken by the given tensors (what stored soft labels cost on disk, before compression)."""
    return sum(t.numel() * t.element_size() for t in tensors)
