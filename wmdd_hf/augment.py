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


def sample_cutmix(
    n: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    alpha: float = 1.0,
    p: float = 0.5,
    pool: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cutmix parameters for ``n`` images of ``size = (H, W)``: ``partners (n,)`` int64 and ``boxes (n, 4)`` int64.

    With probability ``p`` the batch is mixed: image ``i`` gets the box ``(y0, y1, x0, x1)`` (pixels, end exclusive;
    area fraction ``1 - lam`` with ``lam ~ Beta(alpha, alpha)``) pasted from image ``partners[i]``, a random
    permutation of ``range(pool or n)``. Otherwise every box is empty and every image is its own partner.
    Parameters, not pixels: the stored soft labels keep them, so a student rebuilds the very view the teacher saw.
    """
    pool = n if pool is None else pool
    boxes = torch.zeros(n, 4, dtype=torch.long)
    if torch.rand(1, generator=generator).item() >= p:
        return torch.arange(n) % max(pool, 1), boxes
    h, w = size
    lam = _beta(alpha, generator) if generator is not None else float(torch.distributions.Beta(alpha, alpha).sample())
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy = torch.randint(0, h, (1,), generator=generator).item()
    cx = torch.randint(0, w, (1,), generator=generator).item()
    boxes[:] = torch.tensor(
        [max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)]
    )
    partners = (
        torch.randperm(pool, generator=generator)[:n]
        if pool >= n
        else torch.randint(0, pool, (n,), generator=generator)
    )
    return partners, boxes


def apply_cutmix(images: torch.Tensor, partner_images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``images (B, C, H, W)`` with the box ``boxes[i] = (y0, y1, x0, x1)`` of ``partner_images[i]`` pasted in."""
    if len(images) == 0 or not bool((boxes[:, 1] > boxes[:, 0]).any()):
        return images
    h, w = images.shape[-2:]
    boxes = boxes.to(images.device)
    ys = torch.arange(h, device=images.device)[None, :, None]
    xs = torch.arange(w, device=images.device)[None, None, :]
    inside = (
        (ys >= boxes[:, 0, None, None])
        & (ys < boxes[:, 1, None, None])
        & (xs >= boxes[:, 2, None, None])
        & (xs < boxes[:, 3, None, None])
    )
    return torch.where(inside[:, None], partner_images, images)


def cutmix(
    images: torch.Tensor, generator: torch.Generator | None = None, alpha: float = 1.0, p: float = 0.5
) -> torch.Tensor:
    """With probability ``p``, pastes a random box of a shuffled partner into every image (box area ~ Beta(alpha)).

    Labels are not returned: under knowledge distillation the teacher labels the mixed image itself.
    """
    partners, boxes = sample_cutmix(len(images), tuple(images.shape[-2:]), generator, alpha, p)
    return apply_cutmix(images, images[partners.to(images.device)], boxes)


def _beta(alpha: float, generator: torch.Generator) -> float:
    """Beta(alpha, alpha) from a generator, via two Gamma draws (torch's Gamma takes no generator)."""
    g = torch._standard_gamma(torch.full((2,), alpha), generator=generator)
    return float(g[0] / g.sum())
