"""``init="patches"``: start each synthetic image as a mosaic of the most class-typical real crops near its point.

RDED's observation (more real content per pixel helps small sets), put on the barycenter points: for point ``j`` of
class ``k`` take the ``candidates`` real images whose teacher features are nearest to it, draw ``crops_per_image``
random crops of each (area fraction ``crop_scale``), score every crop by the teacher's probability of class ``k``
(at the crop's input size), keep the ``grid x grid`` best and tile them into one image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig, apply_views, sample_views
from .backbones import Backbone


def nearest_rows(features: torch.Tensor, rows: torch.Tensor, point: np.ndarray, n: int) -> list[int]:
    """Dataset rows of the ``n`` real images whose features ``(N, D)`` are nearest to ``point (D,)``."""
    d = (features.double() - torch.as_tensor(point, dtype=torch.float64)).pow(2).sum(1)
    order = torch.argsort(d)[:n]
    return [int(rows[i]) for i in order]


@torch.no_grad()
def mosaic(
    teacher: Backbone,
    images: torch.Tensor,
    class_id: int,
    grid: int = 2,
    crops_per_image: int = 4,
    crop_scale: tuple[float, float] = (0.25, 0.6),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One ``(C, H, W)`` image in [0, 1]: the ``grid**2`` crops of ``images (N, C, H, W)`` in [0, 1] that the teacher
    scores highest for ``class_id``, each resized to ``(H / grid, W / grid)`` and tiled row by row."""
    n, c, h, w = images.shape
    views = sample_views(n * crops_per_image, AugmentConfig(scale=crop_scale, flip=False), generator)
    crops = apply_views(images.repeat_interleave(crops_per_image, 0), views)  # (n * crops, C, H, W)
    device = next(teacher.parameters()).device
    scores = torch.softmax(teacher(crops.to(device))[0].float(), 1)[:, class_id].cpu()
    best = torch.argsort(scores, descending=True)[: grid * grid]
    if len(best) < grid * grid:  # fewer crops than tiles: repeat the best ones
        best = best.repeat((grid * grid + len(best) - 1) // len(best))[: grid * grid]
    th, tw = h // grid, w // grid
    tiles = F.interpolate(crops[best], size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    out = torch.zeros(c, h, w)
    for t, tile in enumerate(tiles):
        r, q = divmod(t, grid)
        out[:, r * th : (r + 1) * th, q * tw : (q + 1) * tw] = tile
    return out.clamp(0, 1)
