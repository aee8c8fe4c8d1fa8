"""Differentiable, batched image augmentations shared by synthesis, soft labels and evaluation.

Views are described by explicit parameters so that the same view can be rebuilt later (stored soft labels are
indexed by view). :func:`sample_views` draws parameters from a ``torch.Generator``; :func:`apply_views` renders them
with one ``affine_grid``/``grid_sample`` call (differentiable w.r.t. the pixels). Shapes: images ``(B, C, H, W)``
floats in [0, 1]; view parameters ``(B, 5)`` = (width fraction, height fraction, x shift, y shift, flip sign), in
the normalised coordinates of ``affine_grid`` ([-1, 1] spans the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Random resized crop (``scale`` of the area, ``ratio`` of the aspect), horizontal flip, translation jitter of
    up to ``jitter`` (fraction of the side)."""

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.0


def sample_views(n: int, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, 5)`` view parameters on the CPU, drawn from ``generator``."""
    u = torch.rand(n, 5, generator=generator)
    area = config.scale[0] + (config.scale[1] - config.scale[0]) * u[:, 0]
    log_lo, log_hi = math.log(config.ratio[0]), math.log(config.ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    tx = (1 - w) * (2 * u[:, 2] - 1)
    ty = (1 - h) * (2 * u[:, 3] - 1)
    if config.jitter > 0:
        jitter = 2 * config.jitter * (2 * torch.rand(n, 2, generator=generator) - 1)
        tx, ty = tx + jitter[:, 0], ty + jitter[:, 1]
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if config.flip else torch.ones(n)
    return torch.stack([w, h, tx, ty, flip], dim=1)


def apply_views(images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Renders ``views`` ``(B, 5)`` of ``images`` ``(B, C, H, W)`` at the same size (bilinear, border padding)."""
    views = views.to(images.device, images.dtype)
    theta = torch.zeros(len(images), 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = views[:, 0] * views[:, 4]
    theta[:, 0, 2] = views[:, 2]
    theta[:, 1, 1] = views[:, 1]
    theta[:, 1, 2] = views[:, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh random view of every image."""
    return apply_views(images, sample_views(len(images), config, generator))


def cutmix(
    images: torch.Tensor, generator: torch.Generator | None = None, alpha: float = 1.0, p: float = 0.5
) -> torch.Tensor:
    """With probability ``p``, pastes a random box of a shuffled partner into every image (box area ~ Beta(alpha)).

    Labels are not returned: under knowledge distillation the teacher labels the mixed image itself.
    """
    if torch.rand(1, generator=generator).item() >= p:
        return images
    n, _, h, w = images.shape
    lam = torch.distributions.Beta(alpha, alpha).sample().item() if generator is None else _beta(alpha, generator)
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = (
        torch.randint(0, h, (1,), generator=generator).item(),
        torch.randint(0, w, (1,), generator=generator).item(),
    )
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    perm = torch.randperm(n, generator=generator).to(images.device)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[perm][:, :, y0:y1, x0:x1]
    return mixed


def _beta(alpha: float, generator: torch.Generator) -> float:
    """Beta(alpha, alpha) from a generator, via two Gamma draws (torch's Gamma takes no generator)."""
    g = torch._standard_gamma(torch.full((2,), alpha), generator=generator)
    return float(g[0] / g.sum())
