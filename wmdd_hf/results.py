"""What the stages of :class:`wmdd_hf.Distiller` hand each other: typed results, and what is made from them.

* :class:`Barycenters`: per class, the W2 barycenter's support points, their weights and the solver's costs.
* :class:`SyntheticImages`: the optimised images (uint8), their labels and the loss histories of their batches.
* :class:`SoftLabels`: the teacher's probabilities on each image and, optionally, its logits on stored views.

Each converts to and from the plain dict of its checkpoint file (``to_state`` / ``from_state``; the dicts are read
with ``weights_only=True``, :mod:`wmdd_hf.checkpoint`); between stages they travel as these objects.
:func:`build_dataset`, :func:`views_dataset` and :func:`set_metrics` turn them into the distilled set's two
configs and ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value

from .backbones import Backbone
from .data import uint8_to_png_images
from .scores import colour_spread
from .soft_labels import ViewLabels, storage_bytes, teacher_outputs
from .statistics import ClassStatistics


@dataclass
class Barycenters:
    """Per class ``k``: ``positions[k] (m, D)`` support points (teacher-feature units), ``weights[k] (m,)``
    summing to 1, ``costs[k]`` the W2 cost after each solver round."""

    positions: dict[int, np.ndarray]
    weights: dict[int, np.ndarray]
    costs: dict[int, list[float]]

    @classmethod
    def from_state(cls, state: dict) -> Barycenters:
        keys = sorted(state)
        return cls(*({k: state[k][f] for k in keys} for f in ("positions", "weights", "costs")))

    def to_state(self) -> dict:
        return {
            k: {"positions": self.positions[k], "weights": self.weights[k], "costs": self.costs[k]}
            for k in self.positions
        }

    def points(self, classes: list[int]) -> torch.Tensor:
        """``(sum of m, D)`` float32: the points of ``classes``, class after class."""
        return torch.cat([torch.as_tensor(np.asarray(self.positions[k]), dtype=torch.float32) for k in classes])

    def point_weights(self, classes: list[int]) -> torch.Tensor:
        """``(sum of m,)`` float32: the weights of ``classes``' points, in the order of :meth:`points`."""
        return torch.cat([torch.from_numpy(np.asarray(self.weights[k], dtype=np.float32)) for k in classes])

    @property
    def w2_cost_mean(self) -> float:
        """The final W2 cost, averaged over classes."""
        return float(np.mean([self.costs[k][-1] for k in sorted(self.costs)]))


@dataclass
class SyntheticImages:
    """``images (N, C, H, W)`` uint8, ``labels (N,)`` int64 (class after class, m per class), and per class batch
    ``{"classes": [...], "history": [log records]}``."""

    images: torch.Tensor
    labels: torch.Tensor
    histories: list[dict]


@dataclass
class SoftLabels:
    """``probs (N, K)`` float16 teacher probabilities on the un-augmented images; ``views`` the stored augmented
    views and the teacher's logits on them (None without ``soft_label_epochs``); ``logits (N, K)`` float32 the
    teacher's logits on the un-augmented images (None in runs from before they were kept); ``bytes`` what all take."""

    probs: torch.Tensor
    views: ViewLabels | None = None
    logits: torch.Tensor | None = None

    @property
    def bytes(self) -> int:
        tensors = [self.probs] + ([self.logits] if self.logits is not None else [])
        if self.views is not None:
            tensors += [self.views.views, self.views.partners, self.views.boxes, self.views.logits]
        return storage_bytes(*tensors)

    @classmethod
    def from_state(cls, state: dict) -> SoftLabels:
        views = None
        if "views" in state:
            views = ViewLabels(state["views"], state["partners"], state["boxes"], state["logits"])
        return cls(state["probs"], views, state.get("clean_logits"))

    def to_state(self) -> dict:
        state = {"probs": self.probs}
        if self.logits is not None:
            state["clean_logits"] = self.logits
        if self.views is not None:
            v = self.views
            state.update(views=v.views, partners=v.partners, boxes=v.boxes, logits=v.logits)
        state["bytes"] = self.bytes
        return state


def build_dataset(synthetic: SyntheticImages, soft: SoftLabels, bary: Barycenters, class_names: list[str]) -> Dataset:
    """The default config: ``image`` (PNG), ``label``, ``soft_label``, ``barycenter_weight`` and, when kept,
    ``teacher_logits`` (the logits behind ``soft_label``: a user picks another temperature from them)."""
    columns = {
        "image": Image(),
        "label": ClassLabel(names=class_names),
        "soft_label": Sequence(Value("float32")),
        "barycenter_weight": Value("float32"),
    }
    weights = bary.point_weights(list(range(len(class_names)))).numpy()
    rows = {
        "image": uint8_to_png_images(synthetic.images),
        "label": synthetic.labels.tolist(),
        "soft_label": soft.probs.float().numpy().tolist(),
        "barycenter_weight": weights.tolist(),
    }
    if soft.logits is not None:
        columns["teacher_logits"] = Sequence(Value("float32"))
        rows["teacher_logits"] = soft.logits.float().numpy().tolist()
    return Dataset.from_dict(rows, features=Features(columns))


def views_dataset(soft: SoftLabels) -> Dataset | None:
    """The ``soft_labels`` config (one row per epoch and image), or None when no views were stored."""
    if soft.views is None:
        return None
    features = Features(
        {
            "epoch": Value("int32"),
            "image_index": Value("int32"),
            "view": Sequence(Value("float32"), length=5),
            "partner": Value("int32"),
            "box": Sequence(Value("int32"), length=4),
            "logits": Sequence(Value("float16")),
        }
    )
    return Dataset.from_dict(soft.views.to_columns(), features=features)


@torch.no_grad()
def point_distances(
    teacher: Backbone, images_uint8: torch.Tensor, labels: torch.Tensor, stats: ClassStatistics, bary: Barycenters
) -> dict:
    """Per class: how close the synthetic images got to their barycenter points, against how close real images are.

    ``synthetic_to_own_point``: mean Euclidean distance between the teacher feature of each synthetic image
    (un-augmented, as stored: uint8 pixels) and its own point. ``real_median_to_nearest_point``: median over the
    class's kept real features of the distance to the nearest point. Feature units (the teacher's penultimate layer).
    """
    feats = teacher_outputs(teacher, images_uint8)[1].cpu()
    out = {}
    for k in sorted(bary.positions):
        points = torch.as_tensor(np.asarray(bary.positions[k]), dtype=torch.float32)
        own = feats[labels == k][: len(points)]
        real = stats.features[k].float()
        out[str(k)] = {
            "synthetic_to_own_point": float((own - points[: len(own)]).norm(dim=1).mean()),
            "real_median_to_nearest_point": float(np.median(torch.cdist(real, points).min(dim=1).values.numpy())),
        }
    return out


def set_metrics(
    teacher: Backbone, synthetic: SyntheticImages, soft: SoftLabels, stats: ClassStatistics, bary: Barycenters
) -> dict:
    """What ``metrics.json`` reports about the set (losses are sums over the class batches' first and last logs)."""
    first = [h["history"][0] for h in synthetic.histories]
    last = [h["history"][-1] for h in synthetic.histories]
    distances = point_distances(teacher, synthetic.images, synthetic.labels, stats, bary)
    return {
        "num_images": len(synthetic.images),
        "feature_loss_start": float(sum(r["feature_loss"] for r in first)),
        "feature_loss_end": float(sum(r["feature_loss"] for r in last)),
        "bn_loss_start": float(sum(r["bn_loss"] for r in first)),
        "bn_loss_end": float(sum(r["bn_loss"] for r in last)),
        "teacher_agreement": float((soft.probs.float().argmax(1) == synthetic.labels).float().mean()),
        "w2_cost_mean": bary.w2_cost_mean,
        "colour_spread": colour_spread(synthetic.images),
        "soft_label_bytes": int(soft.bytes),
        "point_distances": distances,
        "classes_closer_than_median_real": int(
            sum(d["synthetic_to_own_point"] < d["real_median_to_nearest_point"] for d in distances.values())
        ),
        "moved_from_start": moved_from_start(synthetic),
    }


def moved_from_start(synthetic: SyntheticImages) -> float | None:
    """Mean over images of the RMS pixel change from the start synthesis began at, in grey levels (0-255); None
    when a batch was written before the change was recorded."""
    moved = [h.get("moved") for h in synthetic.histories]
    if not moved or any(m is None for m in moved):
        return None
    return float(torch.cat([torch.as_tensor(m) for m in moved]).mean())
