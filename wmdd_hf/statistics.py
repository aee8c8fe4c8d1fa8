"""One pass of the frozen teacher over the real data: per-class features and per-class norm-layer statistics.

For every normalisation layer (BatchNorm; LayerNorm/GroupNorm for other backbones) the INPUT of the layer is
summarised per class and per channel by exact moments: the count of values, their mean and M2 (sum of squared
deviations), merged batch after batch with the parallel (Chan et al.) formula in float64. The pooled variance of a
class is ``M2 / count``. Moments from several processes merge with the same formula (:meth:`NormMoments.merge`),
so a data-parallel pass gives exactly the single-process statistics.

The teacher's own input is summarised the same way, as one more layer (:attr:`ClassStatistics.inputs`): the
moments of its channels and of every pairwise channel difference (:func:`input_channels`), which fix each class's
channel means and its full channel covariance.

Channel conventions: BatchNorm/GroupNorm inputs are ``(B, C, *spatial)`` (channels on dim 1), LayerNorm inputs
``(B, *tokens, C)`` (channels last). Statistics of a layer are ``(num_classes, C)`` arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import AugmentConfig, apply_views, sample_views
from .backbones import Backbone, norm_channel_dim, norm_kind
from .feature_store import FOLDER, ClassShards, write_class


@dataclass
class NormMoments:
    """Per-class moments of one layer's input: ``count (K,)``, ``mean (K, C)``, ``m2 (K, C)``, all float64."""

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int, channels: int) -> NormMoments:
        z = torch.zeros(num_classes, channels, dtype=torch.float64)
        return cls(torch.zeros(num_classes, dtype=torch.float64), z.clone(), z.clone())

    def merge(self, other: NormMoments) -> NormMoments:
        """Exact union of two sets of moments (parallel variance formula), class by class."""
        n = self.count + other.count
        safe = n.clamp(min=1)[:, None]
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count[:, None] / safe)
        m2 = self.m2 + other.m2 + delta.pow(2) * (self.count * other.count)[:, None] / safe
        return NormMoments(n, mean, m2)

    @property
    def var(self) -> torch.Tensor:
        """Pooled (biased) variance per class and channel, ``(K, C)``."""
        return self.m2 / self.count.clamp(min=1)[:, None]

    def pooled(self) -> NormMoments:
        """All classes together: moments of shape ``(1, C)`` (what global, class-blind BN matching uses)."""
        out = NormMoments.zeros(1, self.mean.shape[1])
        for k in range(len(self.count)):
            out = out.merge(NormMoments(self.count[k : k + 1], self.mean[k : k + 1], self.m2[k : k + 1]))
        return out


def per_sample_moments(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample channel moments of a layer input: ``(mean (B, C), m2 (B, C), values per channel per sample)``.

    Two reductions over every dimension but the batch and channel ones: the per-sample sums and sums of squares
    (the squared ``vector_norm``, one fused pass, where no gradient is taken), then ``m2 = squares - sums * mean``;
    faster than ``torch.var_mean`` on CPU, with or without autograd.
    Where the mean is large against the spread (``mean^2 > 100 var`` for any sample and channel, where float32
    cancellation could cost more than about 1e-5 relative) it falls back to the fused, stable ``var_mean``. On an
    accelerator, and under ``torch.compile``, it always takes ``var_mean``: one fused pass there, and no host sync
    (or graph break) to test the condition.
    """
    channel = dim % x.ndim
    reduce = tuple(d for d in range(1, x.ndim) if d != channel)
    if not reduce:
        return x, torch.zeros_like(x), 1
    count = x.numel() // (x.shape[0] * x.shape[channel])
    if x.dtype == torch.float32 and x.device.type == "cpu" and not torch.compiler.is_compiling():
        sums = x.sum(dim=reduce)
        if x.requires_grad and torch.is_grad_enabled():
            squares = (x * x).sum(dim=reduce)
        else:  # one fused reduction, no x * x in memory: several times faster
            squares = torch.linalg.vector_norm(x, dim=reduce).square()
        mean = sums / count
        m2 = squares - sums * mean
        if bool((mean.detach().pow(2) * count <= 100 * m2.detach().clamp_min(0)).all()):
            return mean, m2.clamp_min(0), count
    var, mean = torch.var_mean(x, dim=reduce, correction=0)
    return mean, var * count, count


def batch_class_moments(x: torch.Tensor, labels: torch.Tensor, num_classes: int, dim: int) -> NormMoments:
    """Per-class moments of one batch's layer input ``x`` for integer ``labels (B,)``, in float64 on ``x``'s device
    (the pass merges them there and moves them to the CPU once, at its end: no host sync per layer)."""
    mean_i, m2_i, p = per_sample_moments(x.detach(), dim)
    mean_i, m2_i = mean_i.double(), m2_i.double()
    labels = labels.to(mean_i.device)
    channels, zeros = mean_i.shape[1], dict(dtype=torch.float64, device=mean_i.device)
    samples = torch.bincount(labels, minlength=num_classes).double()
    count = samples * p
    sums = torch.zeros(num_classes, channels, **zeros).index_add_(0, labels, mean_i)
    mean = sums / samples.clamp(min=1)[:, None]
    spread = (mean_i - mean[labels]).pow(2) * p
    m2 = torch.zeros(num_classes, channels, **zeros).index_add_(0, labels, m2_i + spread)
    return NormMoments(count, mean, m2)


def input_channels(pixels: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` pixels -> ``(B, C + C(C-1)/2, H, W)``: the channels, then every difference ``x_i - x_j``
    (``i < j``). The per-class means and variances of these fix the class's channel means and its whole channel
    covariance (``cov_ij = (var_i + var_j - var(x_i - x_j)) / 2``); on grey data stored as RGB the differences are
    0 everywhere, so matching their statistics keeps a set grey. One channel: the pixels themselves."""
    c = pixels.shape[1]
    pairs = [pixels[:, i] - pixels[:, j] for i in range(c) for j in range(i + 1, c)]
    return torch.cat([pixels, torch.stack(pairs, 1)], 1) if pairs else pixels


def channel_covariance(inputs: NormMoments, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`input_channels`' summary: moments ``(K, C + C(C-1)/2)`` of the channels and their
    pairwise differences -> ``(mean (K, C), covariance (K, C, C))`` in float64, with
    ``cov_ij = (var_i + var_j - var(x_i - x_j)) / 2``."""
    var = inputs.var
    cov = torch.diag_embed(var[:, :channels])
    pair = channels
    for i in range(channels):
        for j in range(i + 1, channels):
            cov[:, i, j] = cov[:, j, i] = (var[:, i] + var[:, j] - var[:, pair]) / 2
            pair += 1
    return inputs.mean[:, :channels], cov


@dataclass
class ClassStatistics:
    """What the one pass produces.

    Attributes:
        features: ``{class id: float32 tensor (n_k, D)}`` penultimate teacher features (at most the cap per class);
            a dict in memory, or :class:`~wmdd_hf.feature_store.ClassShards` (read from disk per class) once stored.
        rows: ``{class id: int64 tensor (n_k,)}`` the dataset row of each kept feature (same container).
        norms: ``{layer name: NormMoments}`` per-class moments of every norm layer's input.
        counts: ``(K,)`` examples seen per class.
        inputs: per-class moments of the teacher's input pixels in [0, 1] through :func:`input_channels`
            (``(K, C + C(C-1)/2)``); None in a pass saved before they were collected.
    """

    features: Mapping[int, torch.Tensor]
    rows: Mapping[int, torch.Tensor]
    norms: dict[str, NormMoments]
    counts: torch.Tensor
    layer_kinds: dict[str, str] = field(default_factory=dict)
    inputs: NormMoments | None = None

    def capped(self, cap: int | None, seed: int) -> ClassStatistics:
        """At most ``cap`` features per class: the rows with the smallest :func:`row_keys` (what one pass with the
        same cap keeps), in row order. Used after merging the passes of several processes."""
        if cap is None:
            return self
        features, rows = {}, {}
        for k, f in self.features.items():
            r = self.rows[k]
            if len(r) > cap:
                keep = torch.topk(row_keys(seed, k, r), cap, largest=False).indices
                keep = keep[torch.argsort(r[keep])]
                f, r = f[keep].clone(), r[keep]
            features[k], rows[k] = f, r
        return ClassStatistics(features, rows, self.norms, self.counts, self.layer_kinds, self.inputs)

    def merge(self, other: ClassStatistics) -> ClassStatistics:
        """Union of two partial passes (e.g. two processes): features concatenated, moments merged exactly."""
        features, rows = dict(self.features), dict(self.rows)
        for k, f in other.features.items():
            features[k] = torch.cat([features[k], f]) if k in features else f
            rows[k] = torch.cat([rows[k], other.rows[k]]) if k in rows else other.rows[k]
        norms = {name: m.merge(other.norms[name]) for name, m in self.norms.items()}
        kinds = {**self.layer_kinds, **other.layer_kinds}
        inputs = self.inputs.merge(other.inputs) if self.inputs is not None and other.inputs is not None else None
        return ClassStatistics(features, rows, norms, self.counts + other.counts, kinds, inputs)

    def to_state(self) -> dict:
        """Everything in memory, features included (small runs and tests; a run stores :meth:`summary_state`)."""
        return {
            "features": dict(self.features),
            "rows": dict(self.rows),
            **self.summary_state(),
        }

    def summary_state(self) -> dict:
        """What ``statistics.pt`` holds: moments, counts and layer kinds. The features live in one shard per class
        (:mod:`wmdd_hf.feature_store`), so the file's size does not grow with the dataset."""
        return {
            "norms": {n: (m.count, m.mean, m.m2) for n, m in self.norms.items()},
            "inputs": None if self.inputs is None else (self.inputs.count, self.inputs.mean, self.inputs.m2),
            "counts": self.counts,
            "layer_kinds": self.layer_kinds,
            "feature_shards": FOLDER,
            "feature_classes": sorted(int(k) for k in self.features),
        }

    @classmethod
    def from_state(cls, state: dict, folder: str | os.PathLike | None = None) -> ClassStatistics:
        """From :meth:`to_state`, or from :meth:`summary_state` with the features read lazily from the shards
        beside it (``folder``: the run folder that holds ``statistics.pt``)."""
        norms = {n: NormMoments(*v) for n, v in state["norms"].items()}
        if "features" in state:
            features, rows = state["features"], state["rows"]
        else:
            if folder is None:
                raise ValueError("these statistics keep their features in shards: pass the run folder")
            shards = Path(folder) / state["feature_shards"]
            features = ClassShards(shards, state["feature_classes"], "features")
            rows = ClassShards(shards, state["feature_classes"], "rows")
        inputs = NormMoments(*state["inputs"]) if state.get("inputs") is not None else None
        return cls(features, rows, norms, state["counts"], state.get("layer_kinds", {}), inputs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassStatistics:
        """Reads a run's ``statistics.pt`` (tensors only, ``weights_only``); features stay on disk until a class
        is read (``stats.features[k]``). Files of earlier versions, with every feature inside, load as well."""
        from .checkpoint import load

        return cls.from_state(load(path), Path(path).parent)

    def save(self, path: str | os.PathLike) -> None:
        """Writes every class's features as a shard beside ``path``, then ``statistics.pt`` itself (last, so
        its presence means the whole pass is on disk). One process; the pipeline writes shards per owner."""
        from .checkpoint import atomic_save

        for k in self.features:
            write_class(Path(path).parent / FOLDER, k, self.features[k], self.rows[k])
        atomic_save(self.summary_state(), path)


def row_keys(seed: int, class_id: int, rows: torch.Tensor) -> torch.Tensor:
    """A pseudo-random key in [0, 2^63) for every dataset row, from (seed, class, row) alone (splitmix64).

    Keeping the rows with the smallest keys gives a uniform random subset that does not depend on the order of the
    rows, on the batch size or on how rows are split between processes."""
    mask = (1 << 64) - 1
    base = (seed * 0x9E3779B97F4A7C15 + class_id * 0xBF58476D1CE4E5B9) & mask
    z = (rows.to(torch.int64).numpy().astype(np.uint64) + np.uint64(base)) & np.uint64(mask)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(1)).astype(np.int64))


class _Reservoir:
    """At most ``cap`` rows per class: those with the smallest :func:`row_keys` (bottom-k sampling).

    The kept set is a uniform random subset seeded by (seed, class), identical whatever the number of processes or the
    batch order (a union of per-process bottom-k sets holds the global bottom-k). Kept rows are copies: no view pins
    the batch it came from. Memory per process: ``cap x D`` floats per class at most (plus one batch).
    """

    def __init__(self, num_classes: int, cap: int | None, seed: int):
        self.cap, self.seed = cap, seed
        self.keys: dict[int, list[torch.Tensor]] = {k: [] for k in range(num_classes)}
        self.kept: dict[int, list[torch.Tensor]] = {k: [] for k in range(num_classes)}
        self.rows: dict[int, list[torch.Tensor]] = {k: [] for k in range(num_classes)}
        self.size = dict.fromkeys(range(num_classes), 0)

    def add(self, features: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> None:
        for k in labels.unique().tolist():
            mask = labels == k
            self.kept[k].append(features[mask].clone())
            self.rows[k].append(rows[mask].clone())
            self.keys[k].append(row_keys(self.seed, k, rows[mask]))
            self.size[k] += int(mask.sum())
            if self.cap is not None and self.size[k] > 2 * self.cap:  # amortised: shrink when twice the cap
                self._shrink(k)

    def _shrink(self, k: int) -> None:
        keys, feats, rows = torch.cat(self.keys[k]), torch.cat(self.kept[k]), torch.cat(self.rows[k])
        if self.cap is not None and len(keys) > self.cap:
            keep = torch.topk(keys, self.cap, largest=False).indices
            keep = keep[torch.argsort(rows[keep])]  # row order: deterministic, process-count independent
            keys, feats, rows = keys[keep], feats[keep].clone(), rows[keep]
        self.keys[k], self.kept[k], self.rows[k], self.size[k] = [keys], [feats], [rows], len(keys)

    def result(self, feature_dim: int) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        features, rows = {}, {}
        for k in self.kept:
            if self.kept[k]:
                self._shrink(k)
                features[k], rows[k] = self.kept[k][0], self.rows[k][0]
            else:
                features[k], rows[k] = torch.zeros(0, feature_dim), torch.zeros(0, dtype=torch.long)
        return features, rows


def row_views(rows: torch.Tensor, config: AugmentConfig, seed: int) -> torch.Tensor:
    """``(B, 5)`` view parameters (see :mod:`wmdd_hf.augment`), each drawn from a generator seeded by
    ``(seed, row)`` only."""
    out = torch.empty(len(rows), 5)
    for i, row in enumerate(rows.tolist()):
        out[i] = sample_views(1, config, torch.Generator().manual_seed(seed * 1_000_003 + int(row)))[0]
    return out


def _channels(module: torch.nn.Module) -> int:
    """The channel count a norm layer normalises (BatchNorm, GroupNorm, LayerNorm)."""
    return getattr(module, "num_features", None) or getattr(module, "num_channels", None) or module.normalized_shape[-1]


@torch.no_grad()
def collect_class_statistics(
    backbone: Backbone,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    num_classes: int,
    norm_kinds: tuple[str, ...] = ("batch", "layer", "group"),
    max_features_per_class: int | None = None,
    seed: int = 0,
    progress: bool = False,
    total: int | None = None,
    views: AugmentConfig | None = None,
) -> ClassStatistics:
    """Runs the frozen ``backbone`` once over ``batches`` of ``(uint8 images (B, C, H, W), labels (B,), rows (B,))``.

    ``views``: when given, every image is seen through one random view of this augmentation (the one synthesis
    uses), drawn from its row and ``seed`` alone (:func:`row_views`), so features and moments describe the
    augmented real distribution that synthesis's augmented views are compared with, identically whatever the
    batching or the number of processes.

    Returns per-class features (float32, CPU; with ``max_features_per_class``, the seeded bottom-k subset of
    :class:`_Reservoir`: the same rows whatever the batching or the number of processes), per-class moments of the
    inputs of the norm layers of ``norm_kinds``, and those of the teacher's input (:func:`input_channels`).
    """
    backbone.eval()
    device = next(backbone.parameters()).device
    layers = backbone.norm_layers(norm_kinds)
    norms: dict[str, NormMoments] = {}
    current: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in layers:

        def hook(mod, args, name=name):
            x = args[0]
            moments = batch_class_moments(x, current["labels"], num_classes, norm_channel_dim(mod))
            norms[name] = norms[name].merge(moments) if name in norms else moments

        handles.append(module.register_forward_pre_hook(hook))
    reservoir = _Reservoir(num_classes, max_features_per_class, seed)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    inputs: NormMoments | None = None
    try:
        bar = tqdm(batches, desc="class statistics", disable=not progress, total=total, leave=False)
        for images, labels, rows in bar:
            labels = labels.long()
            current["labels"] = labels.to(device, non_blocking=True)
            pixels = images.to(device).float().div_(255)
            if views is not None:
                pixels = apply_views(pixels, row_views(rows, views, seed))
            seen = batch_class_moments(input_channels(pixels), current["labels"], num_classes, 1)
            inputs = seen if inputs is None else inputs.merge(seen)
            _, feats = backbone(pixels)
            reservoir.add(feats.float().cpu(), labels.cpu(), rows.long().cpu())
            counts += torch.bincount(labels.cpu(), minlength=num_classes).double()
    finally:
        for h in handles:
            h.remove()
    kinds = {name: norm_kind(m) for name, m in layers}
    norms = {name: NormMoments(m.count.cpu(), m.mean.cpu(), m.m2.cpu()) for name, m in norms.items()}
    for name, module in layers:  # layers never reached (no data) still get zero moments
        if name not in norms:
            norms[name] = NormMoments.zeros(num_classes, _channels(module))
    if inputs is None:  # no data: zero moments of the input's channels
        c = backbone.spec.channels
        inputs = NormMoments.zeros(num_classes, c + c * (c - 1) // 2)
    inputs = NormMoments(inputs.count.cpu(), inputs.mean.cpu(), inputs.m2.cpu())
    features, rows = reservoir.result(backbone.feature_dim)
    return ClassStatistics(features, rows, norms, counts, kinds, inputs)
