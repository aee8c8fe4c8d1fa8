"""``DistillationArguments``: every knob of a WMDD run, as a dataclass that ``HfArgumentParser`` reads from CLI flags
and YAML/JSON files. Names follow ``transformers.TrainingArguments`` where the concept exists there.

Each setting has one owner: its default, its check and its help string live in one place. The synthesis knobs take
their defaults from :class:`wmdd_hf.synthesis.SynthesisConfig` and are checked there; the choices are ``Literal``
types, so the CLI lists them. Named recipes (``recipe=``) are YAML presets under ``wmdd_hf/recipes/``: a preset sets
the options the user left at their defaults and never overwrites one they set.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal, get_args

from .augment import AugmentConfig
from .backbones import FEATURE_POOLS
from .synthesis import BnLoss, FeatureLoss, FeatureNorm, FeatureView, LossScale, Precision, SynthesisConfig

logger = logging.getLogger(__name__)

Init = Literal["noise", "real", "patches", "auto"]
INITS = get_args(Init)
BarycenterWeights = Literal["learned", "uniform"]
BarycenterSolver = Literal["exact", "sinkhorn"]
StatisticsView = Literal["clean", "augmented"]
FeaturePool = Literal["none", "avg"]
PixelBasis = Literal["channels", "data"]
assert get_args(FeaturePool) == FEATURE_POOLS
#: What a run folder written before an argument existed was run with, where that is not the argument's current
#: default (resume compares a missing key with this value, so a changed default never passes for the old behaviour).
BEFORE_THE_ARGUMENT = {"loss_scale": "sum"}

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
    "generator",  # where the autoencoder lives; its weights' fingerprint is what run_config.json compares
}

#: SynthesisConfig fields whose DistillationArguments field has another name.
SYNTHESIS_FIELD_NAMES = {"precision": "synthesis_precision", "log_every": "logging_steps"}


def _synthesis_default(name: str):
    """The default of a synthesis knob: SynthesisConfig's (its one owner)."""
    return next(f.default for f in dataclasses.fields(SynthesisConfig) if f.name == name)


@cache
def recipe_names() -> tuple[str, ...]:
    """The named recipes: the YAML files of ``wmdd_hf/recipes/``."""
    folder = resources.files("wmdd_hf") / "recipes"
    return tuple(sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")))


def _check_choices(options, choices: dict[str, tuple]) -> None:
    """Each ``options.<name>`` is one of ``choices[name]``, else a ValueError that lists them."""
    for name, allowed in choices.items():
        if getattr(options, name) not in allowed:
            raise ValueError(f"{name}={getattr(options, name)!r} is not one of {list(allowed)}.")


def _json_object(name: str, text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'{name}={text!r} is not JSON ({e}); write an object, e.g. \'{{"loss_scale": "sum"}}\'.'
        ) from e
    if not isinstance(value, dict):
        raise ValueError(f"{name}={text!r} must be a JSON object of option names and values.")
    return value


def load_recipe(name: str) -> dict:
    """The options of recipe ``name`` (``wmdd_hf/recipes/<name>.yaml``)."""
    import yaml

    if name not in recipe_names():
        raise ValueError(f"recipe={name!r} is not one of {list(recipe_names())} (or None).")
    return yaml.safe_load((resources.files("wmdd_hf") / "recipes" / f"{name}.yaml").read_text()) or {}


@dataclass
class ResearchOptions:
    """The method's research knobs: the 2x2 ablation's losses, the official code's loss and schedule, the sweep's
    switches. Their defaults are the choices made on the validation split (``docs/tuning.md``); a user changes them
    through ``DistillationArguments.research_options`` (a dict, or JSON on the command line) or a ``recipe``.

    Parameters:
        Teacher features and barycenters: ``statistics_view``, ``barycenter_weights``, ``barycenter_iterations``,
            ``barycenter_damping``.
        Synthesis: ``feature_loss``, ``bn_loss``, ``crop_scale_min``, ``loss_scale``, ``feature_norm``,
            ``first_bn_multiplier``, ``ce_weight``, ``jitter``, ``roll``, ``crop_milestone``, ``keep_best``,
            ``feature_view``, ``tv_weight``, ``l2_weight``, ``input_weight``, ``pixel_basis``, ``patch_grid``,
            ``patch_candidates``.
    """

    # --- Teacher features and barycenters ---------------------------------------------------------------------
    statistics_view: StatisticsView = field(
        default="clean",
        metadata={
            "help": "'clean': features and norm statistics of the real images as they are; 'augmented': of one "
            "random view per image from the synthesis augmentation (crop_scale_min, flip), so the barycenter "
            "points are targets the augmented synthetic views can reach."
        },
    )
    barycenter_weights: BarycenterWeights = field(
        default="learned", metadata={"help": "'learned' (the paper) or 'uniform' barycenter weights."}
    )
    barycenter_iterations: int = field(default=30, metadata={"help": "Alternating rounds of the barycenter solver."})
    barycenter_damping: float = field(default=1.0, metadata={"help": "theta of the position step, in (0, 1]."})
    # --- Synthesis ---------------------------------------------------------------------------------------------
    feature_loss: FeatureLoss = field(
        default=_synthesis_default("feature_loss"),
        metadata={"help": "Feature term: 'wasserstein' (match barycenter points) or 'cross_entropy'."},
    )
    bn_loss: BnLoss = field(
        default=_synthesis_default("bn_loss"),
        metadata={"help": "Norm-statistics term: 'per_class' (PCBN), 'global' (SRe2L) or 'none'."},
    )
    crop_scale_min: float = field(
        default=0.5, metadata={"help": "Smallest area fraction of the random resized crop during synthesis."}
    )
    loss_scale: LossScale = field(
        default=_synthesis_default("loss_scale"),
        metadata={
            "help": "'sum' (sums of squares), 'mean' (lambda as a ratio: feature term a mean over images, "
            "statistic term a mean of per-layer norms) or 'official' (the official code's terms)."
        },
    )
    feature_norm: FeatureNorm = field(
        default=_synthesis_default("feature_norm"),
        metadata={"help": "With loss_scale='mean': 'squared', 'norm' (per image) or 'frobenius'."},
    )
    first_bn_multiplier: float = field(
        default=_synthesis_default("first_bn_multiplier"), metadata={"help": "Weight of the first norm layer's term."}
    )
    ce_weight: float = field(
        default=_synthesis_default("ce_weight"),
        metadata={"help": "Cross-entropy weight added to the Wasserstein term (official r_wb)."},
    )
    jitter: float = field(default=0.0, metadata={"help": "Random translation (fraction of the side) during synthesis."})
    roll: float = field(
        default=_synthesis_default("roll"),
        metadata={"help": "Random circular roll of 0..roll x side pixels per view (the official jitter)."},
    )
    crop_milestone: float | None = field(
        default=_synthesis_default("crop_milestone"),
        metadata={
            "help": "Easy-to-hard crops: the smallest crop area falls from 1 to crop_scale_min until this "
            "fraction of the iterations (half cosine), then stays."
        },
    )
    keep_best: bool = field(
        default=_synthesis_default("keep_best"), metadata={"help": "Keep the lowest-loss iterate instead of the last."}
    )
    feature_view: FeatureView = field(
        default=_synthesis_default("feature_view"),
        metadata={
            "help": "'clean': match the un-augmented images' features to the points (the statistic and CE "
            "terms keep the augmented view); 'augmented': the view's features."
        },
    )
    tv_weight: float = field(
        default=_synthesis_default("tv_weight"),
        metadata={"help": "Total-variation prior (DeepInversion): weight of the mean neighbouring-pixel difference."},
    )
    l2_weight: float = field(
        default=_synthesis_default("l2_weight"),
        metadata={"help": "l2 prior (DeepInversion): weight of the mean squared pixel."},
    )
    input_weight: float = field(
        default=_synthesis_default("input_weight"),
        metadata={
            "help": "Input statistics: weight of the term matching each class's channel means and channel "
            "covariance of the teacher's input (pixels in [0, 1]) to the real class's, so grey data stays grey."
        },
    )
    pixel_basis: PixelBasis = field(
        default="channels",
        metadata={
            "help": "'channels': Adam steps on each pixel channel; 'data': on the coordinates of the real data's "
            "colour basis (principal axes of the channel covariance, scaled by their standard deviations), so a "
            "step is the learning rate in units of the data's spread and colours the data never varies in stay "
            "put (wmdd_hf.generators.DataBasisSpace)."
        },
    )
    patch_grid: int = field(default=2, metadata={"help": "init='patches': a grid x grid mosaic per image."})
    patch_candidates: int = field(
        default=8, metadata={"help": "init='patches': real images nearest to each point whose crops compete."}
    )

    def __post_init__(self):
        _check_choices(
            self,
            {
                "statistics_view": get_args(StatisticsView),
                "barycenter_weights": get_args(BarycenterWeights),
                "pixel_basis": get_args(PixelBasis),
            },
        )
        if self.barycenter_iterations < 1:
            raise ValueError(f"barycenter_iterations={self.barycenter_iterations} must be at least 1.")
        if not 0 < self.barycenter_damping <= 1:
            raise ValueError(f"barycenter_damping={self.barycenter_damping} must be in (0, 1].")
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"crop_scale_min={self.crop_scale_min} must be in (0, 1].")
        if self.patch_grid < 1 or self.patch_candidates < 1:
            raise ValueError("patch_grid and patch_candidates must be at least 1.")

    @classmethod
    def from_dict(cls, options: dict) -> ResearchOptions:
        """``options`` checked by name: an unknown one is an error that lists the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            import difflib

            hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
            raise ValueError(f"research_options names unknown options {said}; the known ones: {known}.")
        return cls(**options)


#: The research options' names (``ResearchOptions``' fields): flat keys in run configs, cards and benchmarks.
RESEARCH_FIELDS = tuple(f.name for f in dataclasses.fields(ResearchOptions))


@dataclass
class DistillationArguments:
    """Arguments of :class:`wmdd_hf.Distiller` (and of ``examples/distill.py``), in groups; each field's help string
    (``--help``) says what it does, ``docs/tuning.md`` which values were chosen and where that was measured.

    Parameters:
        Run: ``output_dir``, ``overwrite_output_dir``, ``seed``, ``recipe``.
        Data: ``image_column``, ``label_column``, ``class_mapping``, ``num_workers``, ``stats_batch_size``.
        Teacher features: ``feature_pool``, ``max_features_per_class``.
        Barycenters: ``images_per_class``, ``barycenter_solver``.
        Synthesis: ``iterations``, ``learning_rate``, ``bn_weight``, ``init``, ``generator``, ``batch_size``.
        Research: ``research_options`` (a :class:`ResearchOptions`: the ablation's losses, the official schedule, the
            sweep's switches), set by name, e.g. ``{"loss_scale": "sum", "barycenter_weights": "uniform"}``.
        Speed (for GPUs): ``synthesis_precision``, ``channels_last``, ``torch_compile``, ``torch_compile_backend``.
        Labels: ``temperature``, ``soft_label_epochs``.
        Logging: ``logging_steps``, ``report_to``, ``run_name``, ``disable_tqdm``, ``save_plots``.
        Hub: ``push_to_hub``, ``hub_dataset_id``, ``hub_private_repo``, ``hub_token``.
    """

    # --- Run -----------------------------------------------------------------------------------------------------
    output_dir: str = field(
        default="outputs/wmdd-fashion-mnist-ipc10",
        metadata={"help": "Where checkpoints, pictures and the distilled set are written."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh even if output_dir holds another run."}
    )
    seed: int = field(default=42, metadata={"help": "Run seed; per-class seeds derive from it and the class id."})
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A named preset of options (wmdd_hf/recipes/<name>.yaml: 'official', the official code's loss "
            "and schedule; 'real_start', the real start chosen on validation; 'sre2l', SRe2L's two losses). It sets "
            "the options left at their defaults and never overwrites one you set."
        },
    )
    # --- Data ----------------------------------------------------------------------------------------------------
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
    stats_batch_size: int = field(default=500, metadata={"help": "Batch size of the statistics pass."})
    # --- Teacher features ----------------------------------------------------------------------------------------
    feature_pool: FeaturePool = field(
        default="none",
        metadata={
            "help": "Teacher features the barycenters are computed on and synthesis matches: 'none' (the "
            "classifier's input) or 'avg' (the last feature map averaged over positions; timm teachers)."
        },
    )
    max_features_per_class: int | None = field(
        default=4096,
        metadata={
            "help": "Cap on the teacher features kept per class (a seeded random subset, the same whatever the "
            "number of processes): memory stays at classes x cap x feature width x 4 bytes. None keeps every one. "
            "What the cap costs in barycenter W2: benchmarks/results/cap_cost.md."
        },
    )
    # --- Barycenters ---------------------------------------------------------------------------------------------
    images_per_class: int = field(
        default=10, metadata={"help": "IPC: synthetic images (= barycenter points) per class."}
    )
    barycenter_solver: BarycenterSolver = field(
        default="exact", metadata={"help": "Transport solver: 'exact' (network simplex) or 'sinkhorn'."}
    )
    # --- Synthesis -----------------------------------------------------------------------------------------------
    iterations: int = field(
        default=_synthesis_default("iterations"), metadata={"help": "Synthesis steps per class batch."}
    )
    learning_rate: float = field(
        default=_synthesis_default("learning_rate"),
        metadata={
            "help": "Adam learning rate (cosine decay): on pixels in [0, 1]; in units of the data's spread with "
            "research option pixel_basis='data'; on the latents with generator."
        },
    )
    bn_weight: float = field(
        default=_synthesis_default("bn_weight"),
        metadata={
            "help": "lambda: weight of the per-class norm-statistics term (BatchNorm, LayerNorm and GroupNorm "
            "inputs; a ratio with loss_scale='mean'). How it was chosen: docs/tuning.md."
        },
    )
    init: Init = field(
        default="noise",
        metadata={
            "help": "Initial pixels: 'noise', 'real' (the real images nearest to the barycenter points), "
            "'patches' (a mosaic of the teacher's favourite real crops near each point) or 'auto' ('real' for a "
            "map-style dataset, 'noise' for a stream, which cannot be read by row)."
        },
    )
    generator: str | None = field(
        default=None,
        metadata={
            "help": "A diffusers AutoencoderKL (folder or Hub id) whose latents synthesis optimises instead of the "
            "pixels (images = its decoding; the start is the encoding of the init images). None: pixels."
        },
    )
    batch_size: int = field(
        default=100,
        metadata={"help": "Synthetic images optimised together (whole classes: max(1, batch_size // IPC) classes)."},
    )
    # --- Research ----------------------------------------------------------------------------------------------
    research_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "The method's research knobs by name, as a JSON object (ResearchOptions' fields: the ablation's "
            "feature_loss and bn_loss, the official schedule's loss_scale, roll, ce_weight, crop_scale_min, ..., the "
            'sweep\'s switches; docs/tuning.md), e.g. \'{"loss_scale": "sum"}\'. Unset ones keep their defaults.'
        },
    )
    # --- Speed (for GPUs) ----------------------------------------------------------------------------------------
    synthesis_precision: Precision = field(
        default=_synthesis_default("precision"),
        metadata={
            "help": "'bf16': teacher forward under bf16 autocast during synthesis (moments and losses stay "
            "fp32). For GPUs; off by default."
        },
    )
    channels_last: bool = field(
        default=_synthesis_default("channels_last"),
        metadata={"help": "NHWC teacher and views during synthesis (GPUs)."},
    )
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
    # --- Labels --------------------------------------------------------------------------------------------------
    temperature: float = field(default=1.0, metadata={"help": "Temperature of the stored soft labels."})
    soft_label_epochs: int = field(
        default=0, metadata={"help": "Augmented views per image with stored soft labels (0: none)."}
    )
    # --- Logging -------------------------------------------------------------------------------------------------
    logging_steps: int = field(
        default=_synthesis_default("log_every"), metadata={"help": "Log losses every this many synthesis steps."}
    )
    report_to: str = field(
        default="none",
        metadata={"help": "Tracker(s) for Accelerate: 'tensorboard', 'wandb', 'all' or 'none' (comma-separated)."},
    )
    run_name: str | None = field(default=None, metadata={"help": "Tracker run name."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    save_plots: bool = field(
        default=True,
        metadata={
            "help": "Whether to save the synthetic grid and the barycenter PCA pictures (--no_save_plots skips them)."
        },
    )
    # --- Hub -----------------------------------------------------------------------------------------------------
    push_to_hub: bool = field(
        default=False, metadata={"help": "Push the distilled set to the Hub at the end of distill()."}
    )
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset repo, 'user/name'."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repo private."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})

    def __post_init__(self):
        if isinstance(self.research_options, str):  # JSON from the command line
            self.research_options = _json_object("research_options", self.research_options)
        self.research_options = dict(self.research_options or {})
        if self.recipe is not None:
            self._apply_recipe(load_recipe(self.recipe))
        ResearchOptions.from_dict(self.research_options)  # checked here, before any work (`research` derives it)
        _check_choices(
            self, {"init": INITS, "feature_pool": FEATURE_POOLS, "barycenter_solver": get_args(BarycenterSolver)}
        )
        for name in ("images_per_class", "batch_size", "stats_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0.")
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("push_to_hub=True needs hub_dataset_id='user/name'.")
        if self.hub_dataset_id is not None:
            from .hub import check_repo_id

            check_repo_id(self.hub_dataset_id)
        if self.max_features_per_class is not None and self.max_features_per_class < self.images_per_class:
            raise ValueError(
                f"max_features_per_class={self.max_features_per_class} is below images_per_class="
                f"{self.images_per_class}: a class needs at least as many kept features as barycenter points "
                "(and real images to start from with init='real'). Raise the cap or lower images_per_class."
            )
        if self.generator is not None and self.research.pixel_basis != "channels":
            raise ValueError(
                f"pixel_basis={self.research.pixel_basis!r} re-parameterises the pixels, but with generator= the "
                "autoencoder's latents are optimised instead: drop one of the two."
            )
        self.synthesis_config()  # the synthesis options and their combinations are checked there, once

    def _apply_recipe(self, preset: dict) -> None:
        """Sets each option of ``preset`` that is still at its default (a value equal to the default counts as not
        set) and each research option that ``research_options`` does not name; an option the user set keeps their
        value."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        research_defaults = {f.name: f.default for f in dataclasses.fields(ResearchOptions)}
        preset = dict(preset)
        research = preset.pop("research_options", None) or {}
        unknown = sorted(set(preset) - set(defaults) - {"recipe"}) + sorted(set(research) - set(research_defaults))
        if unknown:
            raise ValueError(f"recipe={self.recipe!r} names options DistillationArguments does not have: {unknown}.")
        kept = []
        for name, value in preset.items():
            if getattr(self, name) == defaults[name]:
                setattr(self, name, value)
            elif getattr(self, name) != value:
                kept.append(f"{name}={getattr(self, name)!r}")
        for name, value in research.items():  # a research option named in research_options counts as set
            if name not in self.research_options:
                self.research_options[name] = value
            elif self.research_options[name] != value:
                kept.append(f"{name}={self.research_options[name]!r}")
        if kept:
            logger.info("recipe=%r: keeping the options you set: %s", self.recipe, ", ".join(kept))

    def __repr__(self) -> str:
        """Like the dataclass repr, with the token hidden (as ``transformers.TrainingArguments`` does)."""
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__

    @property
    def research(self) -> ResearchOptions:
        """``research_options`` with every unset option at its default (derived, so it never goes stale)."""
        return ResearchOptions.from_dict(self.research_options)

    @property
    def classes_per_batch(self) -> int:
        return max(1, self.batch_size // self.images_per_class)

    def synthesis_config(self) -> SynthesisConfig:
        """The pixel optimisation's settings: each SynthesisConfig field from the argument or research option of the
        same name (``SYNTHESIS_FIELD_NAMES`` for the two that differ), the augmentation from ``crop_scale_min`` and
        ``jitter``."""
        r = self.research
        values = {}
        for f in dataclasses.fields(SynthesisConfig):
            name = SYNTHESIS_FIELD_NAMES.get(f.name, f.name)
            if f.name != "augment":
                values[f.name] = getattr(r if name in RESEARCH_FIELDS else self, name)
        augment = AugmentConfig(scale=(r.crop_scale_min, 1.0), flip=True, jitter=r.jitter)
        return SynthesisConfig(augment=augment, **values)

    def to_dict(self) -> dict:
        """Every argument, flat: the research options as keys of their own (the form of ``run_config.json``,
        ``wmdd_hf.json`` and the card), the token hidden."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "research_options"}
        d.update(dataclasses.asdict(self.research))
        d["hub_token"] = "<HUB_TOKEN>" if d["hub_token"] else None
        return d

    def result_arguments(self) -> dict:
        """The arguments that determine the distilled set, flat (compared when a run resumes)."""
        return {k: v for k, v in self.to_dict().items() if k not in NON_RESULT_FIELDS}

    @property
    def trackers(self) -> list[str]:
        if self.report_to in ("none", "", None):
            return []
        return [t.strip() for t in self.report_to.split(",")]


def nest_research_options(options: dict, where: str) -> dict:
    """``options`` with the research options given at the top level (the form before ``research_options`` existed)
    moved into ``research_options``, with a ``FutureWarning``: the flat form is accepted until the next minor
    release (CONTRIBUTING.md, deprecation). A research option named in both places keeps the nested value."""
    flat = {k: options[k] for k in options if k in RESEARCH_FIELDS}
    if not flat:
        return options
    import warnings

    warnings.warn(
        f"{where}: {sorted(flat)} are research options now; pass them as research_options={{...}} (the top-level "
        "form goes in the next minor release).",
        FutureWarning,
        stacklevel=3,
    )
    nested = options.get("research_options") or {}
    if isinstance(nested, str):
        nested = _json_object("research_options", nested)
    rest = {k: v for k, v in options.items() if k not in flat}
    return {**rest, "research_options": {**flat, **nested}}


_dataclass_init = DistillationArguments.__init__


@functools.wraps(_dataclass_init)
def _init_accepting_flat_research_options(self, *args, **kwargs):
    _dataclass_init(self, *args, **nest_research_options(kwargs, "DistillationArguments"))


DistillationArguments.__init__ = _init_accepting_flat_research_options
