"""``DistillationArguments``: every knob of a WMDD run, as a dataclass that ``HfArgumentParser`` reads from CLI flags
and YAML/JSON files. Names follow ``transformers.TrainingArguments`` where the concept exists there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .augment import AugmentConfig
from .backbones import FEATURE_POOLS
from .synthesis import BN_LOSSES, FEATURE_LOSSES, SynthesisConfig

INITS = ("noise", "real", "patches")
RECIPES = ("official",)
#: What a run folder written before an argument existed was run with, where that is not the argument's current
#: default (resume compares a missing key with this value, so a changed default never passes for the old behaviour).
BEFORE_THE_ARGUMENT = {"loss_scale": "sum"}
#: recipe="official": the loss and schedule of the official WMDD code (its argument defaults).
OFFICIAL_RECIPE = {
    "loss_scale": "official",
    "ce_weight": 1.0,
    "bn_weight": 0.05,
    "first_bn_multiplier": 1.0,
    "crop_scale_min": 0.08,
    "roll": 32 / 224,
    "learning_rate": 0.1,
    "iterations": 1000,
    "keep_best": False,
}
BARYCENTER_WEIGHTS = ("learned", "uniform")
BARYCENTER_SOLVERS = ("exact", "sinkhorn")

#: Arguments that do not change the distilled set: they may differ when a run is resumed.
NON_RESULT_FIELDS = {
    "output_dir",
    "torch_compile",  # the same computation, compiled: a run may resume with or without it
    "torch_compile_backend",
    "overwrite_output_dir",
    "logging_steps",
    "report_to",
    "run_name",
    "push_to_hub",
    "hub_dataset_id",
    "hub_private_repo",
    "hub_token",
    "num_workers",
    "disable_tqdm",
    "save_plots",
}


@dataclass
class DistillationArguments:
    """Arguments of :class:`wmdd_hf.Distiller` (and of ``examples/distill.py``)."""

    output_dir: str = field(
        default="outputs/wmdd-fashion-mnist-ipc10",
        metadata={"help": "Where checkpoints, pictures and the distilled set are written."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh even if output_dir holds another run."}
    )
    images_per_class: int = field(
        default=10, metadata={"help": "IPC: synthetic images (= barycenter points) per class."}
    )
    iterations: int = field(default=1000, metadata={"help": "Synthesis steps per class batch."})
    learning_rate: float = field(
        default=0.1, metadata={"help": "Adam learning rate on pixels in [0, 1] (cosine decay)."}
    )
    bn_weight: float = field(
        default=10.0,
        metadata={
            "help": "lambda: weight of the per-class norm-statistics term (a ratio with loss_scale='mean'; chosen on "
            "the validation split, benchmarks/results/sweep.md)."
        },
    )
    feature_loss: str = field(
        default="wasserstein",
        metadata={"help": "Feature term: 'wasserstein' (match barycenter points) or 'cross_entropy'."},
    )
    bn_loss: str = field(
        default="per_class", metadata={"help": "Norm-statistics term: 'per_class' (PCBN), 'global' (SRe2L) or 'none'."}
    )
    barycenter_weights: str = field(
        default="learned", metadata={"help": "'learned' (the paper) or 'uniform' barycenter weights."}
    )
    barycenter_iterations: int = field(default=30, metadata={"help": "Alternating rounds of the barycenter solver."})
    barycenter_solver: str = field(
        default="exact", metadata={"help": "Transport solver: 'exact' (network simplex) or 'sinkhorn'."}
    )
    barycenter_damping: float = field(default=1.0, metadata={"help": "theta of the position step, in (0, 1]."})
    max_features_per_class: int | None = field(
        default=4096,
        metadata={
            "help": "Cap on the teacher features kept per class (a seeded random subset, the same whatever the "
            "number of processes): memory stays at classes x cap x feature width x 4 bytes. None keeps every one. "
            "What the cap costs in barycenter W2: benchmarks/results/cap_cost.md."
        },
    )
    init: str = field(
        default="noise",
        metadata={
            "help": "Initial pixels: 'noise', 'real' (the real images nearest to the barycenter points) or "
            "'patches' (a mosaic of the teacher's favourite real crops near each point)."
        },
    )
    patch_grid: int = field(default=2, metadata={"help": "init='patches': a grid x grid mosaic per image."})
    patch_candidates: int = field(
        default=8, metadata={"help": "init='patches': real images nearest to each point whose crops compete."}
    )
    batch_size: int = field(
        default=100,
        metadata={"help": "Synthetic images optimised together (whole classes: max(1, batch_size // IPC) classes)."},
    )
    stats_batch_size: int = field(default=500, metadata={"help": "Batch size of the statistics pass."})
    crop_scale_min: float = field(
        default=0.5, metadata={"help": "Smallest area fraction of the random resized crop during synthesis."}
    )
    jitter: float = field(default=0.0, metadata={"help": "Random translation (fraction of the side) during synthesis."})
    roll: float = field(
        default=0.0, metadata={"help": "Random circular roll of 0..roll x side pixels per view (the official jitter)."}
    )
    crop_milestone: float | None = field(
        default=None,
        metadata={
            "help": "Easy-to-hard crops: the smallest crop area falls from 1 to crop_scale_min until this "
            "fraction of the iterations (half cosine), then stays."
        },
    )
    loss_scale: str = field(
        default="mean",
        metadata={
            "help": "'sum' (sums of squares), 'mean' (lambda as a ratio: feature term a mean over images, "
            "statistic term a mean of per-layer norms) or 'official' (the official code's terms)."
        },
    )
    feature_norm: str = field(
        default="squared", metadata={"help": "With loss_scale='mean': 'squared', 'norm' (per image) or 'frobenius'."}
    )
    first_bn_multiplier: float = field(default=1.0, metadata={"help": "Weight of the first norm layer's term."})
    ce_weight: float = field(
        default=0.0, metadata={"help": "Cross-entropy weight added to the Wasserstein term (official r_wb)."}
    )
    keep_best: bool = field(default=False, metadata={"help": "Keep the lowest-loss iterate instead of the last."})
    feature_view: str = field(
        default="augmented",
        metadata={
            "help": "'clean': match the un-augmented images' features to the points (the statistic and CE "
            "terms keep the augmented view); 'augmented': the view's features."
        },
    )
    feature_pool: str = field(
        default="none",
        metadata={
            "help": "Teacher features the barycenters are computed on and synthesis matches: 'none' (the "
            "classifier's input) or 'avg' (the last feature map averaged over positions; timm teachers)."
        },
    )
    statistics_view: str = field(
        default="clean",
        metadata={
            "help": "'clean': features and norm statistics of the real images as they are; 'augmented': of one "
            "random view per image from the synthesis augmentation (crop_scale_min, flip), so the barycenter "
            "points are targets the augmented synthetic views can reach."
        },
    )
    synthesis_precision: str = field(
        default="fp32",
        metadata={
            "help": "'bf16': teacher forward under bf16 autocast during synthesis (moments and losses stay "
            "fp32). For GPUs; off by default."
        },
    )
    channels_last: bool = field(default=False, metadata={"help": "NHWC teacher and views during synthesis (GPUs)."})
    torch_compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the teacher in place before synthesis (its norm-layer names, and so the "
            "statistics' keys, stay the same); synthesis and soft labels run compiled. For GPUs; off by default."
        },
    )
    torch_compile_backend: str = field(
        default="inductor", metadata={"help": "The torch.compile backend with torch_compile ('inductor', 'aot_eager')."}
    )
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "'official': the official code's loss and schedule (overrides loss_scale, ce_weight, "
            "bn_weight, first_bn_multiplier, crop_scale_min, roll, learning_rate, iterations, keep_best)."
        },
    )
    temperature: float = field(default=1.0, metadata={"help": "Temperature of the stored soft labels."})
    soft_label_epochs: int = field(
        default=0, metadata={"help": "Augmented views per image with stored soft labels (0: none)."}
    )
    seed: int = field(default=42, metadata={"help": "Run seed; per-class seeds derive from it and the class id."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (auto-detected)."})
    label_column: str | None = field(default=None, metadata={"help": "ClassLabel column (auto-detected)."})
    class_mapping: str | None = field(
        default=None,
        metadata={
            "help": "How the dataset's classes meet the teacher's logits when their names differ: 'by_name' (the "
            'same names in another order) or a JSON object {"dataset class": "teacher class"}. Default: by '
            "position, with a warning when the names differ and an error when they are the same in another order."
        },
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers of the statistics pass."})
    logging_steps: int = field(default=50, metadata={"help": "Log losses every this many synthesis steps."})
    report_to: str = field(
        default="none",
        metadata={"help": "Tracker(s) for Accelerate: 'tensorboard', 'wandb', 'all' or 'none' (comma-separated)."},
    )
    run_name: str | None = field(default=None, metadata={"help": "Tracker run name."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    save_plots: bool = field(
        default=True, metadata={"help": "Save the synthetic grid and the barycenter PCA pictures."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Push the distilled set to the Hub at the end of distill()."}
    )
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset repo, 'user/name'."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repo private."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})

    def __post_init__(self):
        if self.recipe is not None:
            if self.recipe not in RECIPES:
                raise ValueError(f"recipe={self.recipe!r} is not one of {list(RECIPES)} (or None).")
            for name, value in OFFICIAL_RECIPE.items():
                setattr(self, name, value)

        def one_of(name: str, allowed: tuple[str, ...]):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {list(allowed)}.")

        one_of("feature_loss", FEATURE_LOSSES)
        one_of("bn_loss", BN_LOSSES)
        one_of("barycenter_weights", BARYCENTER_WEIGHTS)
        one_of("barycenter_solver", BARYCENTER_SOLVERS)
        one_of("init", INITS)
        one_of("statistics_view", ("clean", "augmented"))
        one_of("feature_pool", FEATURE_POOLS)
        if self.images_per_class < 1:
            raise ValueError(f"images_per_class={self.images_per_class}: it must be at least 1.")
        for name in ("iterations", "batch_size", "stats_batch_size", "barycenter_iterations", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.learning_rate <= 0 or self.bn_weight < 0 or self.temperature <= 0:
            raise ValueError("learning_rate and temperature must be > 0 and bn_weight >= 0.")
        if not 0 < self.barycenter_damping <= 1:
            raise ValueError(f"barycenter_damping={self.barycenter_damping} must be in (0, 1].")
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"crop_scale_min={self.crop_scale_min} must be in (0, 1].")
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("push_to_hub=True needs hub_dataset_id='user/name'.")
        if self.hub_dataset_id is not None:
            from .hub import check_repo_id

            check_repo_id(self.hub_dataset_id)
        if self.patch_grid < 1 or self.patch_candidates < 1:
            raise ValueError("patch_grid and patch_candidates must be at least 1.")
        if self.max_features_per_class is not None and self.max_features_per_class < self.images_per_class:
            raise ValueError(
                f"max_features_per_class={self.max_features_per_class} is below images_per_class="
                f"{self.images_per_class}: a class needs at least as many kept features as barycenter points "
                "(and real images to start from with init='real'). Raise the cap or lower images_per_class."
            )

        self.synthesis_config()  # checks the synthesis options and their combinations now

    def __repr__(self) -> str:
        """Like the dataclass repr, with the token hidden (as ``transformers.TrainingArguments`` does)."""
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__

    @property
    def classes_per_batch(self) -> int:
        return max(1, self.batch_size // self.images_per_class)

    def synthesis_config(self) -> SynthesisConfig:
        return SynthesisConfig(
            iterations=self.iterations,
            learning_rate=self.learning_rate,
            bn_weight=self.bn_weight,
            feature_loss=self.feature_loss,
            bn_loss=self.bn_loss,
            augment=AugmentConfig(scale=(self.crop_scale_min, 1.0), flip=True, jitter=self.jitter),
            log_every=self.logging_steps,
            loss_scale=self.loss_scale,
            feature_norm=self.feature_norm,
            first_bn_multiplier=self.first_bn_multiplier,
            ce_weight=self.ce_weight,
            roll=self.roll,
            crop_milestone=self.crop_milestone,
            keep_best=self.keep_best,
            precision=self.synthesis_precision,
            feature_view=self.feature_view,
            channels_last=self.channels_last,
        )

    def result_arguments(self) -> dict:
        """The arguments that determine the distilled set (compared when a run resumes)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NON_RESULT_FIELDS}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hub_token"] = "<HUB_TOKEN>" if d["hub_token"] else None
        return d

    @property
    def trackers(self) -> list[str]:
        if self.report_to in ("none", "", None):
            return []
        return [t.strip() for t in self.report_to.split(",")]
