"""Optimise synthetic pixels so that the frozen teacher sees the barycenter (the WMDD objective).

For a batch holding every image of a few classes (class k's m images ``x_kj`` with barycenter points ``b_kj`` and
weights ``w_kj``), each step renders a random augmented view of every image and minimises

    L = sum_kj ||f(x_kj) - b_kj||^2                                    (feature_loss="wasserstein")
      + lambda * sum_k sum_l ( ||mean_kl - M_kl||^2 + ||var_kl - V_kl||^2 )   (bn_loss="per_class")

where ``mean_kl``/``var_kl`` are the w-weighted mean and variance of the input of norm layer l over class k's
synthetic images (per channel, pooled over positions) and ``M_kl``/``V_kl`` the real per-class statistics from
:mod:`wmdd_hf.statistics`. Ablations: ``feature_loss="cross_entropy"`` (sum of CE to the class label),
``bn_loss="global"`` (unweighted batch statistics against the class-blind real statistics, as SRe2L) or ``"none"``.

Priors (0 by default): ``tv_weight`` and ``l2_weight`` (DeepInversion's, on the pixels) and ``input_weight``
(:class:`InputStatisticsLoss`: the teacher's input as one more norm layer, its per-class channel means and channel
covariance matched to the real class's).

Pixels live in [0, 1] (clamped after every Adam step); the teacher is in eval mode with frozen weights.

Scales (``loss_scale``): ``"sum"`` is the formula above. ``"mean"`` makes lambda a ratio users can reason about: the
feature term is the mean over images of ``||f - b||^2`` (``feature_norm="squared"``) or of ``||f - b||``
(``"norm"``), or ``||F - B||`` over the whole batch (``"frobenius"``, the official code's term); the statistic term
is the mean over classes and layers of ``||mean - M|| + ||var - V||`` (per-layer norms, not squared), the first
layer's term times ``first_bn_multiplier``. ``bn_to_feature`` (lambda x statistic term / feature term) is logged.
``ce_weight`` adds ``ce_weight * CE(logits, label)`` (mean over images) to the Wasserstein objective (the official
code's ``r_wb``). ``"official"`` is the official code's loss: ``||F - B||`` over the whole batch plus ``ce_weight * CE``, and the
statistic term summed over layers (each the mean over classes of ``||mean - M|| + ||var - V||``). ``roll`` (a fraction
of the side) shifts every view by a random 0..roll*side pixels down and right (circular, as the official jitter:
32 px of 224 is 0.143). ``crop_milestone`` is the official easy-to-hard curriculum: until that fraction of the iterations the
smallest crop area falls from 1 to ``scale[0]`` along a half cosine, then stays there. ``keep_best`` returns the
iterate with the lowest loss (on the step's own views) instead of the last one. ``feature_view="clean"``: the
barycenter points are features of un-augmented real images, so the feature term is computed on the un-augmented
synthetic images (a second forward, statistics hooks off), while the statistic and cross-entropy terms use the
augmented view.

GPU switches (off by default): ``precision="bf16"`` runs the teacher forward under bf16 autocast while the
norm-statistic hooks and both loss terms stay float32; ``channels_last`` feeds NHWC views (convert the teacher with
``backbone.to(memory_format=torch.channels_last)``; the Distiller does it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from .augment import AugmentConfig, augment
from .backbones import Backbone, norm_channel_dim
from .generators import PixelSpace
from .statistics import NormMoments, input_channels, per_sample_moments

FeatureLoss = Literal["wasserstein", "cross_entropy"]
BnLoss = Literal["per_class", "global", "none"]
LossScale = Literal["sum", "mean", "official"]
FeatureNorm = Literal["squared", "norm", "frobenius"]
FeatureView = Literal["augmented", "clean"]
Precision = Literal["fp32", "bf16"]
FEATURE_LOSSES, BN_LOSSES, LOSS_SCALES = get_args(FeatureLoss), get_args(BnLoss), get_args(LossScale)
FEATURE_NORMS, FEATURE_VIEWS, PRECISIONS = get_args(FeatureNorm), get_args(FeatureView), get_args(Precision)


class NonFiniteLossError(FloatingPointError):
    """The synthesis loss became NaN/Inf; ``iteration`` says when. Finished batches are kept on disk."""

    def __init__(self, iteration: int, classes: list[int]):
        self.iteration, self.classes = iteration, classes
        super().__init__(
            f"The synthesis loss is not finite at iteration {iteration} (classes {classes}). Rerun with a lower "
            "--learning_rate (or --bn_weight) and --overwrite_output_dir True, or into a new --output_dir: a resume "
            "refuses changed arguments, because the finished batches were made with the old ones."
        )


@dataclass
class SynthesisConfig:
    """Hyper-parameters of the pixel optimisation: the one owner of their defaults and checks
    (:class:`wmdd_hf.DistillationArguments` takes both from here and holds their help strings)."""

    iterations: int = 1000
    learning_rate: float = 0.1
    bn_weight: float = 10.0
    feature_loss: FeatureLoss = "wasserstein"
    bn_loss: BnLoss = "per_class"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(scale=(0.5, 1.0), flip=True, jitter=0.0))
    log_every: int = 50
    loss_scale: LossScale = "mean"
    feature_norm: FeatureNorm = "squared"
    first_bn_multiplier: float = 1.0
    ce_weight: float = 0.0
    roll: float = 0.0
    crop_milestone: float | None = None
    keep_best: bool = False
    precision: Precision = "fp32"
    channels_last: bool = False
    feature_view: FeatureView = "augmented"
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    input_weight: float = 0.0

    def __post_init__(self):
        if self.iterations < 1 or self.log_every < 1:
            raise ValueError(f"iterations={self.iterations} and logging_steps={self.log_every} must be at least 1.")
        if self.learning_rate <= 0 or self.bn_weight < 0:
            raise ValueError(
                f"learning_rate={self.learning_rate} must be > 0 and bn_weight={self.bn_weight} must be >= 0."
            )
        if self.feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"feature_loss={self.feature_loss!r} is not one of {FEATURE_LOSSES}.")
        if self.bn_loss not in BN_LOSSES:
            raise ValueError(f"bn_loss={self.bn_loss!r} is not one of {BN_LOSSES}.")
        if self.loss_scale not in LOSS_SCALES:
            raise ValueError(f"loss_scale={self.loss_scale!r} is not one of {LOSS_SCALES}.")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm={self.feature_norm!r} is not one of {FEATURE_NORMS}.")
        if self.loss_scale != "mean" and self.feature_norm != "squared":
            raise ValueError("feature_norm needs loss_scale='mean' (the 'sum' and 'official' formulas are fixed).")
        if self.loss_scale == "sum" and self.first_bn_multiplier != 1.0:
            raise ValueError("first_bn_multiplier needs loss_scale='mean' or 'official'.")
        if self.feature_view not in FEATURE_VIEWS:
            raise ValueError(f"feature_view={self.feature_view!r} is not one of {FEATURE_VIEWS}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}.")
        if self.crop_milestone is not None and not 0 < self.crop_milestone <= 1:
            raise ValueError(f"crop_milestone={self.crop_milestone} must be in (0, 1].")
        knobs = (self.ce_weight, self.roll, self.first_bn_multiplier, self.tv_weight, self.l2_weight, self.input_weight)
        if min(knobs) < 0:
            raise ValueError(
                "ce_weight, roll, first_bn_multiplier, tv_weight, l2_weight and input_weight must be >= 0."
            )

    def augment_at(self, iteration: int) -> AugmentConfig:
        """The augmentation of ``iteration``: with ``crop_milestone``, the smallest crop area goes from 1 down to
        ``scale[0]`` (half cosine) until the milestone, then stays at ``scale[0]``."""
        if self.crop_milestone is None:
            return self.augment
        end = self.crop_milestone * self.iterations
        low = self.augment.scale[0]
        if iteration < end:
            low = low + (1.0 - low) * (1 + math.cos(math.pi * iteration / end)) / 2
        return AugmentConfig(
            scale=(low, 1.0), ratio=self.augment.ratio, flip=self.augment.flip, jitter=self.augment.jitter
        )


@dataclass
class NormTargets:
    """Real statistics to match, per layer: ``mean``/``var`` of shape ``(K, C)`` (per class) or ``(1, C)`` (global);
    ``input_mean``/``input_var`` the same for the teacher's input channels and their pairwise differences
    (:func:`wmdd_hf.statistics.input_channels`), or None."""

    mean: dict[str, torch.Tensor]
    var: dict[str, torch.Tensor]
    input_mean: torch.Tensor | None = None
    input_var: torch.Tensor | None = None

    @classmethod
    def from_moments(cls, norms: dict[str, NormMoments], mode: str, inputs: NormMoments | None = None) -> NormTargets:
        """``mode``: ``"per_class"`` keeps one row per class, ``"global"`` pools the classes (SRe2L)."""
        pool = (lambda m: m.pooled()) if mode == "global" else (lambda m: m)
        layers = {n: pool(m) for n, m in norms.items()}
        targets = cls({n: m.mean.float() for n, m in layers.items()}, {n: m.var.float() for n, m in layers.items()})
        if inputs is not None:
            targets.input_mean, targets.input_var = pool(inputs).mean.float(), pool(inputs).var.float()
        return targets


@dataclass
class SynthesisTerms:
    """What one synthesis step computed, handed to the loss hook (:meth:`wmdd_hf.Distiller.synthesis_loss`).

    ``pixels (B, C, H, W)`` in [0, 1] are the optimised leaf; ``views`` the augmented batch the teacher saw;
    ``logits (B, K)`` and ``features (B, D)`` its outputs (float32); ``labels (B,)``, ``points (B, D)`` and
    ``weights (B,)`` (summing to 1 per class) the targets; ``feature_loss`` and ``bn_loss`` the method's two terms
    (scalars, as scaled by ``loss_scale``); ``prior_loss`` the weighted image priors (``tv_weight``, ``l2_weight``)
    and input-statistics term (``input_weight``), None when all three weights are 0; ``iteration`` counts from 0.
    """

    iteration: int
    pixels: torch.Tensor
    views: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor
    points: torch.Tensor
    weights: torch.Tensor
    feature_loss: torch.Tensor
    bn_loss: torch.Tensor
    prior_loss: torch.Tensor | None = None


def default_loss(terms: SynthesisTerms, bn_weight: float) -> torch.Tensor:
    """The WMDD objective: ``feature_loss + bn_weight * bn_loss``, plus the image priors when they are on."""
    loss = terms.feature_loss + bn_weight * terms.bn_loss
    return loss if terms.prior_loss is None else loss + terms.prior_loss


def image_prior(pixels: torch.Tensor, tv_weight: float, l2_weight: float) -> torch.Tensor:
    """DeepInversion's priors on ``pixels (B, C, H, W)`` in [0, 1]: ``tv_weight`` x the mean absolute difference
    of neighbouring pixels (down and right) plus ``l2_weight`` x the mean squared pixel, a mean over images."""
    tv = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean() + (pixels[..., 1:] - pixels[..., :-1]).abs().mean()
    return tv_weight * tv + l2_weight * pixels.pow(2).mean()


def class_mixing(
    classes: torch.Tensor, slots: torch.Tensor, weights: torch.Tensor, per_class: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mixing (G, B), group (B,))``: ``mixing[g, b]`` the weight of image b in group g and each image's group.
    ``per_class``: one group per class slot with the barycenter weights; else one group, every image weighted
    equally (the batch statistics)."""
    if per_class:
        mixing = torch.zeros(len(classes), len(slots), device=weights.device)
        mixing[slots, torch.arange(len(slots), device=weights.device)] = weights
        return mixing, slots
    return torch.full((1, len(slots)), 1.0 / len(slots), device=weights.device), torch.zeros_like(slots)


class InputStatisticsLoss:
    """The input-statistics term: the teacher's input treated as one more norm layer. For each class of the batch,
    the w-weighted moments of the view's channels and of their pairwise differences
    (:func:`wmdd_hf.statistics.input_channels`, pooled over positions) against the real class's. Matching the
    differences' variance is matching the channel covariance, so grey data stays grey and colour keeps its colours.

    :meth:`value` is ``sum (mean - M)^2 + sum (var - V)^2`` (``loss_scale="sum"``) or the mean over classes of
    ``||mean - M|| + ||var - V||`` (otherwise), in pixel units ([0, 1]).
    """

    def __init__(self, targets: NormTargets, classes: torch.Tensor, slots: torch.Tensor, weights: torch.Tensor, config):
        if targets is None or targets.input_mean is None:
            raise ValueError(
                "input_weight > 0 needs the real input statistics, which this statistics pass lacks (it was saved "
                "before they were collected): rerun the statistics stage (--overwrite_output_dir True, or a new "
                "--output_dir)."
            )
        device, self.config = weights.device, config
        rows = classes if config.bn_loss != "global" else slice(None)
        self.mean, self.var = targets.input_mean.to(device)[rows], targets.input_var.to(device)[rows]
        self.mixing, self.group = class_mixing(classes, slots, weights, per_class=config.bn_loss != "global")

    def value(self, view: torch.Tensor) -> torch.Tensor:
        """The term on the teacher's input ``view (B, C, H, W)`` of this step."""
        mean_i, m2_i, count = per_sample_moments(input_channels(view.float()), 1)
        mean = self.mixing @ mean_i
        var = self.mixing @ (m2_i / count + (mean_i - mean[self.group]).pow(2))
        gap_mean, gap_var = (mean - self.mean).pow(2), (var - self.var).pow(2)
        if self.config.loss_scale == "sum":
            return gap_mean.sum() + gap_var.sum()
        return (_sqrt(gap_mean.sum(1)) + _sqrt(gap_var.sum(1))).mean()


class NormStatisticsLoss:
    """The norm-statistics term: forward pre-hooks on the teacher's norm layers compare the (weighted, per-class or
    global) moments of each layer's input with the real ones. Use as a context manager (the hooks are removed on
    exit); read :meth:`value` after each forward, call :meth:`reset` before the next one.

    A hook keeps only its layer's per-sample moments, ``(B, C)`` float32 (two reductions of the input); :meth:`value`
    turns those of every layer into per-class moments with one ``(G, B) @ (B, sum C)`` product against the weighted
    class-slot matrix, and the term with a few ops over all layers at once. So the per-layer work is the reductions
    alone, and nothing in a step waits for the device.
    """

    def __init__(
        self,
        backbone: Backbone,
        targets: NormTargets | None,
        classes: torch.Tensor,
        slots: torch.Tensor,
        weights: torch.Tensor,
        config: SynthesisConfig,
    ):
        self.config, self.classes, self.slots, self.weights = config, classes, slots, weights
        self.layers = backbone.norm_layers() if config.bn_loss != "none" else []
        self.first = self.layers[0][0] if self.layers else None
        self.enabled = True  # off for a forward that must not count (the clean view of feature_view="clean")
        self.seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (layer, mean_i (B, C), var_i (B, C))
        self.handles: list = []
        self._joined: dict[tuple[str, ...], tuple[torch.Tensor, ...]] = {}
        if self.layers:  # the targets on the pixels' device once, not a host-to-device copy per layer per step
            device, names = weights.device, [n for n, _ in self.layers]
            rows = classes if config.bn_loss == "per_class" else slice(None)
            self.targets = NormTargets(
                {n: targets.mean[n].to(device)[rows] for n in names},
                {n: targets.var[n].to(device)[rows] for n in names},
            )
            self.mixing, self.group = class_mixing(classes, slots, weights, per_class=config.bn_loss == "per_class")

    def __enter__(self) -> NormStatisticsLoss:
        self.handles = [m.register_forward_pre_hook(lambda mod, a, n=n: self._hook(mod, a, n)) for n, m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()

    def reset(self) -> None:
        self.seen.clear()

    def _hook(self, module, args, name: str):
        if not self.enabled:
            return None
        x, mean_i, var_i = ChannelMoments.apply(args[0], norm_channel_dim(module))
        self.seen.append((name, mean_i, var_i))
        return (x, *args[1:])  # the layer reads the tapped input, so both gradients meet in one backward

    def value(self, device: torch.device) -> torch.Tensor:
        """The term of the last forward (0 without norm layers).

        Per layer: ``sum (mean - M)^2 + sum (var - V)^2`` (``loss_scale="sum"``), or the mean over classes of
        ``||mean - M|| + ||var - V||`` (the first layer's times ``first_bn_multiplier``); ``"mean"`` averages the
        layers' terms, ``"sum"`` and ``"official"`` add them. ``mean``/``var`` of class k are the moments of the
        w-weighted mixture of its images' value distributions: ``mean = sum_j w_j mean_j`` and
        ``var = sum_j w_j (var_j + (mean_j - mean)^2)``, from each image's own ``mean_j``/``var_j``.
        """
        if not self.seen:
            return torch.zeros((), device=device)
        names = tuple(name for name, _, _ in self.seen)
        t_mean, t_var, segment, multiplier = self._joined_targets(names)
        mean_i = torch.cat([m for _, m, _ in self.seen], dim=1)  # (B, sum C)
        var_i = torch.cat([v for _, _, v in self.seen], dim=1)
        mean = self.mixing @ mean_i  # (G, sum C)
        var = self.mixing @ (var_i + (mean_i - mean[self.group]).pow(2))
        gap_mean, gap_var = (mean - t_mean).pow(2), (var - t_var).pow(2)
        if self.config.loss_scale == "sum":
            return gap_mean.sum() + gap_var.sum()
        per_layer = torch.zeros(len(mean), len(names), device=mean.device)  # (G, layers)
        norms = _sqrt(per_layer.index_add(1, segment, gap_mean)) + _sqrt(per_layer.index_add(1, segment, gap_var))
        terms = norms.mean(0) * multiplier
        return terms.mean() if self.config.loss_scale == "mean" else terms.sum()

    def _joined_targets(self, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
        """The targets of the layers a forward reached, in its order, joined along channels: ``(mean (G, sum C),
        var (G, sum C), layer of each channel (sum C,), layer weights (layers,))``; built once per order."""
        if names not in self._joined:
            t = self.targets
            device = t.mean[names[0]].device
            segment = torch.cat([torch.full((t.mean[n].shape[1],), i, device=device) for i, n in enumerate(names)])
            weights = [self.config.first_bn_multiplier if n == self.first else 1.0 for n in names]
            self._joined[names] = (
                torch.cat([t.mean[n] for n in names], dim=1),
                torch.cat([t.var[n] for n in names], dim=1),
                segment,
                torch.tensor(weights, device=device),
            )
        return self._joined[names]


class ChannelMoments(torch.autograd.Function):
    """``(x, mean_i, var_i) = ChannelMoments.apply(x, dim)``: the identity on a norm layer's input ``x`` that also
    returns its per-sample channel moments ``(B, C)`` in float32 (whatever ``x``'s dtype, e.g. bf16 under autocast).

    Its backward adds the moments' gradient, ``grad_mean / n + 2 grad_var (x - mean) / n`` per sample and channel
    (``n`` values per channel), to the gradient that reaches ``x`` through the layer, in two elementwise passes: no
    second gradient for autograd to accumulate into ``x`` and no float32 copy of ``x`` kept for the backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int):
        mean, m2, count = per_sample_moments(x.float(), dim)
        ctx.save_for_backward(x, mean)
        ctx.channel, ctx.count = dim % x.ndim, count
        return x.view_as(x), mean, m2 / count

    @staticmethod
    def backward(ctx, grad_x, grad_mean, grad_var):
        x, mean = ctx.saved_tensors
        grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean
        grad_var = torch.zeros_like(mean) if grad_var is None else grad_var
        shape = [1] * x.ndim
        shape[0], shape[ctx.channel] = x.shape[0], x.shape[ctx.channel]
        scale = grad_var * (2.0 / ctx.count)  # d var / d x = 2 (x - mean) / n
        offset = grad_mean / ctx.count - scale * mean  # d mean / d x = 1 / n
        grad = torch.addcmul(offset.view(shape) if grad_x is None else grad_x, x, scale.view(shape))
        if grad_x is not None:
            grad = grad.add_(offset.view(shape))
        return grad.to(x.dtype), None


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a finite gradient at 0 (as ``Tensor.norm`` has)."""
    return x.clamp_min(1e-30).sqrt()


def render_view(
    pixels: torch.Tensor, config: SynthesisConfig, iteration: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The augmented view of one step: a random resized crop and flip (:func:`wmdd_hf.augment.augment`), then with
    ``roll`` a random circular shift, in NHWC with ``channels_last``. Same shape as ``pixels``."""
    view = augment(pixels, config.augment_at(iteration), generator)
    if config.roll > 0:
        h, w = view.shape[-2:]
        limit = (round(config.roll * h), round(config.roll * w))
        shifts = [int(torch.randint(0, m + 1, (1,), generator=generator)) for m in limit]
        view = torch.roll(view, shifts=shifts, dims=(-2, -1))
    if config.channels_last:
        view = view.contiguous(memory_format=torch.channels_last)
    return view


def synthesize_batch(
    backbone: Backbone,
    images: torch.Tensor,
    labels: torch.Tensor,
    points: torch.Tensor,
    weights: torch.Tensor,
    targets: NormTargets | None,
    config: SynthesisConfig,
    generator: torch.Generator | None = None,
    on_log: Callable[[int, dict], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    loss_fn: Callable[[SynthesisTerms], torch.Tensor] | None = None,
    space=None,
) -> tuple[torch.Tensor, list[dict]]:
    """Optimises one batch of synthetic images.

    Args:
        backbone: frozen teacher (eval mode).
        images: ``(B, C, H, W)`` initial pixels in [0, 1].
        labels: ``(B,)`` class ids; every class present must have ALL its images in this batch.
        points: ``(B, D)`` barycenter point each image should reach.
        weights: ``(B,)`` barycenter weight of each image (normalised within its class here).
        targets: real norm statistics (``None`` when ``bn_loss="none"``).
        config: the hyper-parameters; ``generator`` (a CPU generator) seeds the augmentation views.
        on_log: ``on_log(iteration, {"loss", "feature_loss", "bn_loss", "learning_rate"})`` every ``log_every``
            iterations and at the last; ``on_step(iteration)`` after every step.
        loss_fn: the step's loss from its :class:`SynthesisTerms` (default :func:`default_loss`).
        space: what is optimised: :class:`wmdd_hf.generators.PixelSpace` (default) or ``LatentSpace`` (an
            autoencoder's latents, images = their decoding).
    Returns the optimised images ``(B, C, H, W)`` in [0, 1] (detached) and the logged history.
    """
    device = next(backbone.parameters()).device
    labels, points = labels.to(device), points.to(device, torch.float32)
    classes, slots = labels.unique(sorted=True, return_inverse=True)
    weights = _within_class(weights.to(device, torch.float32), slots, len(classes))
    space = space or PixelSpace()
    leaf = space.start(images.to(device)).requires_grad_(True)
    optimizer = torch.optim.Adam([leaf], lr=config.learning_rate, betas=(0.5, 0.9))
    loss_fn = loss_fn or (lambda terms: default_loss(terms, config.bn_weight))
    history: list[dict] = []
    best_loss, best = math.inf, None
    first_bad = torch.full((), -1, device=device)  # the first iteration with a non-finite loss, read at logging steps
    inputs = InputStatisticsLoss(targets, classes, slots, weights, config) if config.input_weight > 0 else None
    with NormStatisticsLoss(backbone, targets, classes, slots, weights, config) as statistics:
        for it in range(config.iterations):
            lr = _cosine_learning_rate(optimizer, config, it)
            step_targets = (labels, points)
            terms = _step_terms(backbone, space.render(leaf), statistics, config, it, generator, step_targets, inputs)
            loss = loss_fn(terms)
            if config.keep_best and loss.item() < best_loss:  # a research option: one host sync a step
                best_loss, best = loss.item(), terms.pixels.detach().clone()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), it, first_bad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            space.project(leaf)
            if on_step is not None:
                on_step(it)
            if it % config.log_every == 0 or it == config.iterations - 1:
                if int(first_bad) >= 0:  # the loop's only host syncs: here and in the record
                    raise NonFiniteLossError(int(first_bad), classes.tolist())
                history.append(_record(it, loss, terms.feature_loss, terms.bn_loss, config.bn_weight, lr))
                if on_log is not None:
                    on_log(it, history[-1])
    if config.keep_best and best is not None:
        return best, history
    with torch.no_grad():
        return space.render(leaf).detach(), history


def _step_terms(
    backbone: Backbone,
    pixels: torch.Tensor,
    statistics: NormStatisticsLoss,
    config: SynthesisConfig,
    it: int,
    generator: torch.Generator | None,
    targets: tuple[torch.Tensor, torch.Tensor],
    inputs: InputStatisticsLoss | None = None,
) -> SynthesisTerms:
    """One step's forward: the view of ``pixels``, the teacher on it (the norm hooks collect the statistics term),
    the feature term against the ``targets`` ``(labels (B,), points (B, D))``, and the priors (image priors on the
    pixels, ``inputs`` on the view)."""
    (labels, points), device = targets, pixels.device
    statistics.reset()
    view = render_view(pixels, config, it, generator)
    logits, feats = _forward(backbone, view, config, device)
    if config.feature_view == "clean":  # the points are features of un-augmented images: match those
        feats = _clean_features(backbone, pixels, statistics, config, device)
    feature_loss = _feature_term(config, logits, feats, labels, points)
    bn_loss = statistics.value(device)
    prior = image_prior(pixels, config.tv_weight, config.l2_weight) if config.tv_weight or config.l2_weight else None
    if inputs is not None:
        weighted = config.input_weight * inputs.value(view)
        prior = weighted if prior is None else prior + weighted
    return SynthesisTerms(
        it, pixels, view, logits, feats, labels, points, statistics.weights, feature_loss, bn_loss, prior
    )


def _within_class(weights: torch.Tensor, slots: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B,)`` barycenter weights normalised to sum to 1 within each class (``slots``: each image's class slot)."""
    return weights / torch.zeros(n_classes, device=weights.device).index_add(0, slots, weights)[slots]


def _cosine_learning_rate(optimizer: torch.optim.Optimizer, config: SynthesisConfig, it: int) -> float:
    """Sets and returns the learning rate of step ``it``: cosine decay from ``config.learning_rate`` to 0."""
    lr = 0.5 * config.learning_rate * (1 + math.cos(math.pi * it / config.iterations))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _clean_features(backbone, pixels: torch.Tensor, statistics, config: SynthesisConfig, device) -> torch.Tensor:
    """``(B, D)`` features of the un-augmented images, with the norm-statistics hooks off for that forward."""
    statistics.enabled = False
    try:
        clean = pixels.contiguous(memory_format=torch.channels_last) if config.channels_last else pixels
        return _forward(backbone, clean, config, device)[1]
    finally:
        statistics.enabled = True


def _forward(backbone: Backbone, x: torch.Tensor, config: SynthesisConfig, device: torch.device):
    """``(logits, features)`` in float32 whatever the forward's precision (bf16 autocast with ``precision``)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        logits, feats = backbone(x)
    return logits.float(), feats.float()


def _record(it: int, loss, feature_loss, bn_loss, bn_weight: float, lr: float) -> dict:
    return {
        "iteration": it,
        "loss": loss.item(),
        "feature_loss": feature_loss.item(),
        "bn_loss": bn_loss.item(),
        "bn_to_feature": bn_weight * bn_loss.item() / max(feature_loss.item(), 1e-12),
        "learning_rate": lr,
    }


def _feature_term(config: SynthesisConfig, logits, feats, labels, points) -> torch.Tensor:
    if config.feature_loss == "cross_entropy":
        reduction = "sum" if config.loss_scale == "sum" else "mean"
        return F.cross_entropy(logits, labels, reduction=reduction)
    gaps = feats - points
    if config.loss_scale == "official" or config.feature_norm == "frobenius":
        term = gaps.norm()
    else:
        per_image = gaps.pow(2).sum(1) if config.feature_norm == "squared" else gaps.norm(dim=1)
        term = per_image.sum() if config.loss_scale == "sum" else per_image.mean()
    if config.ce_weight > 0:
        term = term + config.ce_weight * F.cross_entropy(logits, labels)
    return term
