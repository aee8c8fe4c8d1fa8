"""Where synthesis optimises: pixels, or the latents of a ``diffusers`` autoencoder.

:class:`PixelSpace` (the default) optimises the pixels themselves, clamped to [0, 1] after every step.
:class:`DataBasisSpace` (``research_options={"pixel_basis": "data"}``) optimises them in the real data's colour
basis, so that an Adam step moves each principal colour axis by the learning rate times its standard deviation.
:class:`LatentSpace` optimises the latents ``z`` of an ``AutoencoderKL`` (a folder or a Hub id, ``generator=``) and
renders ``images = (decode(z) + 1) / 2`` clamped to [0, 1], so every image the teacher sees is one the decoder can
make: the synthesis stays near the data the autoencoder was trained on. The start is the encoding (the posterior
mean) of the initial images, whatever ``init`` made them. The feature and statistic terms are unchanged.

:func:`train_autoencoder` trains the project's small ``AutoencoderKL`` on a ``datasets`` image split
(``examples/train_autoencoder.py``); a user at ImageNet scale passes a pretrained VAE instead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


class PixelSpace:
    """Optimise the pixels ``(B, C, H, W)`` in [0, 1] directly."""

    def start(self, images: torch.Tensor) -> torch.Tensor:
        """The leaf to optimise, from initial images in [0, 1]."""
        return images.detach().clone()

    def render(self, leaf: torch.Tensor) -> torch.Tensor:
        return leaf

    @torch.no_grad()
    def project(self, leaf: torch.Tensor) -> None:
        """After every optimiser step: pixels back into [0, 1]."""
        leaf.clamp_(0.0, 1.0)


class DataBasisSpace:
    """Optimise pixels in the real data's colour basis: per pixel ``x = mean + A z`` with ``A = U diag(s)``, where
    ``U`` and ``s^2`` are the eigenvectors and eigenvalues of the training pixels' channel covariance (each ``s``
    floored at 1e-3 of the largest, so the map stays invertible).

    Adam moves every coordinate of ``z`` by about the learning rate a step, so a principal colour axis moves by the
    learning rate times its standard deviation: a colour the data never varies in stays where it started (every
    colour, for grey images stored as RGB), and one learning rate means the same relative step on data of any
    contrast. 1 channel: ``z = (x - mean) / std``. The leaf is ``z (B, C, H, W)``; images are clamped to [0, 1]
    after every step, as pixels are.
    """

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor):
        eigenvalues, vectors = torch.linalg.eigh(covariance.double())
        s = eigenvalues.clamp_min(0).sqrt()
        s = s.clamp_min(1e-3 * float(s.max().clamp_min(1e-12)))
        self.mean = mean.double().flatten()
        self.basis = vectors * s  # (C, C): x - mean = basis @ z
        self.inverse = (vectors / s).T  # z = inverse @ (x - mean)
        self.std = s

    @classmethod
    def from_moments(cls, inputs, channels: int) -> DataBasisSpace:
        """From the pass's input moments (:attr:`wmdd_hf.statistics.ClassStatistics.inputs`), pooled over classes."""
        from .statistics import channel_covariance

        mean, covariance = channel_covariance(inputs.pooled(), channels)
        return cls(mean[0], covariance[0])

    def _map(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("dc,bchw->bdhw", matrix.to(x.device, x.dtype), x)

    def start(self, images: torch.Tensor) -> torch.Tensor:
        """``z`` of initial images in [0, 1]."""
        mean = self.mean.to(images.device, images.dtype).view(1, -1, 1, 1)
        return self._map(self.inverse, images.detach() - mean).contiguous()

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)``, differentiable in ``z``."""
        return self._map(self.basis, z) + self.mean.to(z.device, z.dtype).view(1, -1, 1, 1)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """A noise start in [0, 1] drawn in this basis: the data's mean plus one standard deviation of noise along
        each principal colour axis (grey noise for grey data)."""
        return self.render(torch.randn(shape, generator=generator, dtype=torch.float64)).float().clamp(0, 1)

    @torch.no_grad()
    def project(self, z: torch.Tensor) -> None:
        """After every optimiser step: the images back into [0, 1], and ``z`` to match them."""
        z.copy_(self.start(self.render(z).clamp(0.0, 1.0)))


class LatentSpace:
    """Optimise the latents of a frozen ``diffusers.AutoencoderKL`` whose inputs are images in [-1, 1]."""

    def __init__(self, autoencoder: torch.nn.Module):
        self.autoencoder = autoencoder.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> LatentSpace:
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_pretrained(name_or_path))

    @property
    def channels(self) -> int:
        return int(self.autoencoder.config.in_channels)

    def to(self, device) -> LatentSpace:
        self.autoencoder.to(device)
        return self

    @torch.no_grad()
    def start(self, images: torch.Tensor) -> torch.Tensor:
        """``z (B, latent channels, h, w)``: the posterior mean of each initial image."""
        device = next(self.autoencoder.parameters()).device
        return self.autoencoder.encode(images.to(device) * 2 - 1).latent_dist.mean.detach().clone()

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1], differentiable in ``z``."""
        return ((self.autoencoder.decode(z).sample + 1) / 2).clamp(0.0, 1.0)

    def project(self, z: torch.Tensor) -> None:
        """Latents are unconstrained."""


def check_generator(space: LatentSpace, channels: int, size: tuple[int, int]) -> None:
    """A clear error, before any work, when the autoencoder cannot make the teacher's images."""
    if space.channels != channels:
        raise ValueError(
            f"The generator makes {space.channels}-channel images but the teacher takes {channels}: pass an "
            "autoencoder trained on data like the teacher's (examples/train_autoencoder.py), or generator=None."
        )
    with torch.no_grad():
        device = next(space.autoencoder.parameters()).device
        out = space.render(space.start(torch.full((1, channels, *size), 0.5, device=device)))
    if tuple(out.shape[-2:]) != tuple(size):
        raise ValueError(
            f"The generator turns {tuple(size)} px images into {tuple(out.shape[-2:])} px ones: the image side must "
            "be a multiple of its downsampling factor. Resize the data, or use another autoencoder."
        )


@dataclass
class AutoencoderTrainingConfig:
    """A small ``AutoencoderKL`` and how it is trained (reconstruction MSE on [-1, 1] images + ``kl_weight`` x KL)."""

    block_out_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    layers_per_block: int = 1
    norm_num_groups: int = 8
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0


def build_autoencoder(channels: int, size: int, config: AutoencoderTrainingConfig):
    from diffusers import AutoencoderKL

    blocks = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=size,
    )


def train_autoencoder(
    images: torch.Tensor,
    config: AutoencoderTrainingConfig,
    validation: torch.Tensor | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict]:
    """Trains an ``AutoencoderKL`` on ``images (N, C, H, W)`` uint8. Returns it and ``{"val_mse", "train_mse",
    "seconds", "parameters"}`` (MSE on [0, 1] pixels; ``val_mse`` on ``validation`` uint8 images, None without)."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    start = time.time()
    ae = build_autoencoder(images.shape[1], images.shape[-1], config)
    optimizer = torch.optim.Adam(ae.parameters(), lr=config.learning_rate)
    g = torch.Generator().manual_seed(config.seed)
    last = math.nan
    ae.train()
    for step in tqdm(range(config.steps), desc="autoencoder", disable=not progress):
        lr = 0.5 * config.learning_rate * (1 + math.cos(math.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = images[torch.randint(0, len(images), (config.batch_size,), generator=g)].float() / 255 * 2 - 1
        posterior = ae.encode(x).latent_dist
        recon = ae.decode(posterior.sample(generator=None)).sample
        loss = F.mse_loss(recon, x) + config.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = float(F.mse_loss(recon.detach(), x)) / 4  # on [0, 1] pixels
    ae.eval()
    report = {
        "train_mse": last,
        "val_mse": reconstruction_mse(ae, validation) if validation is not None else None,
        "seconds": round(time.time() - start, 1),
        "parameters": sum(p.numel() for p in ae.parameters()),
    }
    return ae, report


@torch.no_grad()
def reconstruction_mse(ae, images: torch.Tensor, batch_size: int = 500) -> float:
    """Mean squared error on [0, 1] pixels of ``decode(mean(encode(x)))`` over ``images (N, C, H, W)`` uint8."""
    space, total = LatentSpace(ae), 0.0
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].float() / 255
        total += float(F.mse_loss(space.render(space.start(x)), x, reduction="sum"))
    return total / images.numel()


def save_autoencoder(ae, folder: str | Path, metadata: dict) -> Path:
    """``ae.save_pretrained(folder)`` plus ``wmdd_hf.json`` (how it was trained and its reconstruction error)."""
    import json

    folder = Path(folder)
    ae.save_pretrained(folder)
    (folder / "wmdd_hf.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    return folder
