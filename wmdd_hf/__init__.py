"""wmdd_hf: dataset distillation via the Wasserstein metric (WMDD), for the Hugging Face ecosystem."""

from .arguments import DistillationArguments, ResearchOptions
from .augment import AugmentConfig, apply_views, augment, sample_views
from .backbones import Backbone, load_backbone, save_backbone
from .barycenter import BarycenterResult, wasserstein_barycenter
from .data import DatasetValidationError, load_fashion_mnist, load_image_dataset, validate_dataset
from .distiller import Distiller, DistillerState
from .evaluation import EvaluationConfig, evaluate_distilled
from .hub import load_distilled, push_distilled, save_distilled
from .results import Barycenters, SoftLabels, SyntheticImages
from .soft_labels import augmented_soft_labels, soft_labels
from .statistics import ClassStatistics, collect_class_statistics
from .synthesis import SynthesisConfig, SynthesisTerms, synthesize_batch

__version__ = "0.1.0"

#: transformers.Trainer glue for a published set, imported on first use (transformers' Trainer is slow to import).
_TRAINER_NAMES = ("SoftLabelTrainer", "StoredViewsDataset", "soft_label_loss", "soft_label_transform")


def __getattr__(name: str):
    if name in _TRAINER_NAMES:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'wmdd_hf' has no attribute {name!r}")


__all__ = [
    "AugmentConfig",
    "Backbone",
    "BarycenterResult",
    "Barycenters",
    "ClassStatistics",
    "DatasetValidationError",
    "DistillationArguments",
    "Distiller",
    "DistillerState",
    "EvaluationConfig",
    "ResearchOptions",
    "SoftLabelTrainer",
    "SoftLabels",
    "StoredViewsDataset",
    "SynthesisConfig",
    "SynthesisTerms",
    "SyntheticImages",
    "apply_views",
    "augment",
    "augmented_soft_labels",
    "collect_class_statistics",
    "evaluate_distilled",
    "load_backbone",
    "load_distilled",
    "load_fashion_mnist",
    "load_image_dataset",
    "push_distilled",
    "sample_views",
    "save_backbone",
    "save_distilled",
    "soft_label_loss",
    "soft_label_transform",
    "soft_labels",
    "synthesize_batch",
    "validate_dataset",
    "wasserstein_barycenter",
]
