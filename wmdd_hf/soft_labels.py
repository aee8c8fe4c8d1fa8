"""Soft labels: the teacher's probabilities on the synthetic images.

* :func:`soft_labels`: per image, ``softmax(logits / T)`` on the un-augmented image, ``(N, K)`` float16.
* :func:`augmented_soft_labels`: for a fixed, seeded sequence of augmented views (``epochs`` views per image, the
  view of epoch e drawn from ``seed + e``), the view parameters ``(E, N, 5)`` float32 and the probabilities
  ``(E, N, K)`` float16, so a student loop rebuilds view (e, i) with :func:`wmdd_hf.augment.apply_views` and
  trains on its stored label without the teacher.
"""

from __future__ import annotations

import torch

from .augment import AugmentConfig, apply_views, sample_views
from .backbones import Backbone


@torch.no_grad()
def soft_labels(
    backbone: Backbone, images: torch.Tensor, temperature: float = 1.0, batch_size: int = 500
) -> torch.Tensor:
    """``(N, K)`` float16 probabilities of ``backbone`` on ``images (N, C, H, W)`` in [0, 1] at ``temperature``."""
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        logits, _ = backbone(images[s : s + batch_size].to(device).float())
        out.append(torch.softmax(logits.float() / temperature, dim=1).half().cpu())
    return torch.cat(out) if out else torch.zeros(0, backbone.num_classes, dtype=torch.float16)


@torch.no_grad()
def augmented_soft_labels(
    backbone: Backbone,
    images: torch.Tensor,
    epochs: int,
    augment: AugmentConfig,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """View parameters ``(E, N, 5)`` and float16 probabilities ``(E, N, K)`` for ``epochs`` seeded views per image."""
    views, probs = [], []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        v = sample_views(len(images), augment, generator)
        views.append(v)
        probs.append(soft_labels(backbone, apply_views(images.float(), v), temperature, batch_size))
    return torch.stack(views), torch.stack(probs)


def storage_bytes(*tensors: torch.Tensor) -> int:
    """Bytes taken by the given tensors (what stored soft labels cost on disk, before compression)."""
    return sum(t.numel() * t.element_size() for t in tensors)
