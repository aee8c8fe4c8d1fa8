"""One adapter over timm models, transformers image classifiers and plain ``nn.Module`` classifiers.

:class:`Backbone` takes pixels in ``[0, 1]`` of shape ``(B, C, H, W)`` (``C`` and ``(H, W)`` from
:attr:`Backbone.spec`), normalises them with the model's own mean/std, and returns logits ``(B, num_classes)`` and
penultimate features ``(B, feature_dim)`` from ONE forward pass (a forward pre-hook on the classifier's last linear
layer). :func:`load_backbone` is the one factory; :func:`save_backbone` writes a folder it loads back.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from . import models as _models  # noqa: F401 - registers wmdd_convnet with timm
from .data import ImageSpec

logger = logging.getLogger(__name__)

#: Normalisation layers whose input statistics the method can match, by kind.
NORM_KINDS = ("batch", "layer", "group")
#: What :meth:`Backbone.forward` returns as features (see :meth:`Backbone.set_feature_pool`).
FEATURE_POOLS = ("none", "avg")


def norm_channel_dim(module: nn.Module) -> int:
    """Which dimension of the layer's input holds the normalised channels: 1 for BatchNorm, GroupNorm and
    channels-first LayerNorms (timm ``LayerNorm2d``, transformers ``data_format="channels_first"``), -1 for
    token LayerNorms (ViT ``(B, N, C)``)."""
    if norm_kind(module) != "layer":
        return 1
    if "2d" in type(module).__name__ or getattr(module, "data_format", None) == "channels_first":
        return 1
    return -1


def norm_kind(module: nn.Module) -> str | None:
    """``"batch"`` for any BatchNorm (torch, Sync, timm's BatchNormAct), ``"layer"`` for LayerNorm, ``"group"``
    for GroupNorm, else ``None``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch"
    if isinstance(module, nn.LayerNorm) or type(module).__name__ in ("LayerNorm2d", "LayerNormAct2d", "ViTLayerNorm"):
        return "layer"
    if isinstance(module, nn.GroupNorm):
        return "group"
    return None


class Backbone(nn.Module):
    """A classifier seen uniformly: ``forward(pixels) -> (logits, features)``.

    Args:
        model: the wrapped classifier (timm model, transformers ``*ForImageClassification``, or ``nn.Module``).
        spec: input channels and size in pixels.
        mean, std: per-channel normalisation applied to ``[0, 1]`` pixels, length ``spec.channels``.
        class_names: one name per output logit.
        source: ``"timm"``, ``"transformers"`` or ``"module"``.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ImageSpec,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        class_names: list[str] | None = None,
        source: str = "module",
    ):
        super().__init__()
        self.model, self.spec, self.source = model, spec, source
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.head = _find_head(model)
        self.num_classes = self.head.out_features
        self.feature_dim = self.head.in_features
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        self._captured: torch.Tensor | None = None
        self.head.register_forward_pre_hook(self._capture)
        self.feature_pool = "none"
        #: Where the model came from (``id``, ``architecture``, ``test_acc``, ``folder``), for cards and reports.
        self.metadata: dict = {"id": type(model).__name__, "architecture": type(model).__name__}

    def _capture(self, _module, args):
        self._captured = args[0]

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixels`` float ``(B, C, H, W)`` in [0, 1] -> ``(logits (B, K), features (B, D))``."""
        x = self.normalize(pixels)
        if self.feature_pool == "avg":
            fmap = self.model.forward_features(x)
            logits = self.model.forward_head(fmap)
            self._captured = None  # the head's hook fired too; its flattened input is not the feature here
            return logits, _average_positions(fmap, self.model)
        out = self.model(pixel_values=x) if self.source == "transformers" else self.model(x)
        logits = out.logits if hasattr(out, "logits") else out
        features, self._captured = self._captured, None
        return logits, features.flatten(1)

    def set_feature_pool(self, pool: str) -> Backbone:
        """Chooses the features :meth:`forward` returns (and so the features the barycenters are computed on and
        synthesis matches).

        ``"none"``: the classifier's input as it is: the ConvNet's flattened ``width x 3 x 3`` map (576 values at
        width 64, not invariant to crops and flips), a ResNet's pooled vector, a ViT's pre-logits token.
        ``"avg"``: the last feature map averaged over its positions (over its patch tokens for a ViT), ``(B, C)``:
        a crop or flip of an image moves it less. Needs a timm model (``forward_features``/``forward_head``); the
        logits are unchanged.
        """
        if pool not in FEATURE_POOLS:
            raise ValueError(f"feature_pool={pool!r} is not one of {list(FEATURE_POOLS)}.")
        if pool != "none" and not (self.source == "timm" and hasattr(self.model, "forward_features")):
            raise ValueError(
                f"feature_pool={pool!r} needs a timm model with forward_features/forward_head; this teacher is a "
                f"{self.source} model ({type(self.model).__name__}). Use feature_pool='none', or load the "
                "architecture through timm."
            )
        self.feature_pool = pool
        if pool == "none":
            self.feature_dim = self.head.in_features
            return self
        was_training = self.training
        self.eval()  # a dry run for the feature size must not touch batch-norm running statistics
        with torch.no_grad():
            probe = torch.zeros(1, self.spec.channels, *self.spec.size, device=self.mean.device)
            self.feature_dim = self(probe)[1].shape[1]
        self.train(was_training)
        return self

    def reorder_classes(self, order: list[int]) -> Backbone:
        """Permutes the head so that logit ``k`` is the old logit ``order[k]`` (rows of the last linear layer, and
        the class names with them): the teacher then speaks in the dataset's label order."""
        if sorted(order) != list(range(self.num_classes)):
            raise ValueError(f"order={order} is not a permutation of the teacher's {self.num_classes} classes.")
        index = torch.as_tensor(order, device=self.head.weight.device)
        with torch.no_grad():
            self.head.weight.copy_(self.head.weight[index])
            if self.head.bias is not None:
                self.head.bias.copy_(self.head.bias[index])
        self.class_names = [self.class_names[i] for i in order]
        return self

    def norm_layers(self, kinds: tuple[str, ...] = NORM_KINDS) -> list[tuple[str, nn.Module]]:
        """``[(qualified name, module)]`` of the normalisation layers of the given kinds, in forward order."""
        return [(n, m) for n, m in self.model.named_modules() if norm_kind(m) in kinds]

    def norm_kinds(self) -> set[str]:
        return {norm_kind(m) for _, m in self.norm_layers()}

    @property
    def data_config(self) -> dict:
        return {
            "input_size": (self.spec.channels, *self.spec.size),
            "mean": tuple(self.mean.flatten().tolist()),
            "std": tuple(self.std.flatten().tolist()),
        }

    def freeze(self) -> Backbone:
        """Eval mode, no weight gradients (the teacher's state throughout distillation)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def _average_positions(fmap: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``(B, C, H, W)`` (or ``(B, H, W, C)`` for timm's NHWC models) or tokens ``(B, N, C)`` -> ``(B, C)``, the mean
    over positions; a ViT's prefix (class) tokens are left out."""
    if fmap.ndim == 4:
        return fmap.mean((1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else (2, 3))
    if fmap.ndim == 3:
        return fmap[:, getattr(model, "num_prefix_tokens", 0) :].mean(1)
    return fmap.flatten(1)


def _find_head(model: nn.Module) -> nn.Linear:
    """The classifier's last linear layer: timm's ``get_classifier()``, transformers' ``classifier``, else the last
    ``nn.Linear`` in the module tree."""
    candidates = []
    if hasattr(model, "get_classifier"):
        candidates.append(model.get_classifier())
    if hasattr(model, "classifier"):
        candidates.append(model.classifier)
    candidates.append(model)
    for candidate in candidates:
        linears = (
            [m for m in candidate.modules() if isinstance(m, nn.Linear)] if isinstance(candidate, nn.Module) else []
        )
        if linears:
            return linears[-1]
    raise ValueError(
        f"{type(model).__name__} has no linear classifier head; the backbone adapter needs a model whose last layer "
        "is an nn.Linear producing the class logits."
    )


# --------------------------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------------------------
def _from_timm(
    model: nn.Module,
    class_names: list[str] | None,
    img_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Backbone:
    """A timm model as a Backbone: input size and normalisation from its ``pretrained_cfg``, unless ``img_size``,
    ``mean`` and ``std`` say otherwise (one value per input channel)."""
    import timm

    model = getattr(model, "timm_model", model)
    cfg = timm.data.resolve_model_data_config(model)
    _, h, w = cfg["input_size"]
    if img_size is not None:
        h = w = img_size
    channels = _first_conv_channels(model, cfg["input_size"][0])
    if len(cfg["mean"]) != channels:  # a stem rebuilt for another channel count: average the statistics
        cfg["mean"] = (sum(cfg["mean"]) / len(cfg["mean"]),) * channels
        cfg["std"] = (sum(cfg["std"]) / len(cfg["std"]),) * channels
    for key, given in (("mean", mean), ("std", std)):
        if given is not None:
            if len(given) != channels:
                raise ValueError(
                    f"{key}={tuple(given)} has {len(given)} values: the model reads {channels} channel(s)."
                )
            cfg[key] = tuple(float(v) for v in given)
    names = class_names or model.pretrained_cfg.get("label_names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    return Backbone(model, ImageSpec(channels, (h, w)), tuple(cfg["mean"]), tuple(cfg["std"]), names, source="timm")


def _first_conv_channels(model: nn.Module, default: int) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return default


def _from_transformers(
    model: nn.Module,
    processor=None,
    class_names: list[str] | None = None,
    img_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Backbone:
    config = model.config
    channels = getattr(config, "num_channels", 3)
    size = getattr(config, "image_size", 224)
    if processor is not None:
        psize = getattr(processor, "size", None) or {}
        if "height" in psize:
            size = (psize["height"], psize["width"])
        elif "shortest_edge" in psize:
            size = psize["shortest_edge"]
        mean = mean or tuple(processor.image_mean)
        std = std or tuple(processor.image_std)
    elif mean is None or std is None:
        mean, std = mean or (0.5,) * channels, std or (0.5,) * channels
        logger.warning(
            "%s has no image processor: normalising with mean=%s, std=%s. Pass mean= and std= to load_backbone "
            "if the model was trained with other statistics.",
            type(model).__name__,
            mean,
            std,
        )
    if img_size is not None:
        fixed = getattr(config, "image_size", None)
        if fixed is not None and _has_position_embeddings(model) and fixed != img_size:
            raise ValueError(
                f"img_size={img_size} cannot be honoured: {type(model).__name__} has position embeddings for "
                f"{fixed} px. Build it from a config with image_size={img_size} (pretrained=False), or drop img_size."
            )
        size = img_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(mean) != channels:
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    names = class_names or [config.id2label[i] for i in range(config.num_labels)]
    return Backbone(model, ImageSpec(channels, hw), mean, std, names, source="transformers")


def _has_position_embeddings(model: nn.Module) -> bool:
    return any("position_embedding" in name for name, _ in model.named_parameters())


def load_backbone(
    model: str | os.PathLike | nn.Module,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
    pretrained: bool = True,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **model_kwargs,
) -> Backbone:
    """Builds or loads any supported classifier as a :class:`Backbone`.

    ``model`` may be:
      * a folder written by :func:`save_backbone` (timm layout: ``config.json`` with ``architecture``, or
        transformers layout: ``config.json`` with ``model_type``),
      * a timm name (``"resnet18"``, ``"wmdd_convnet"``, ``"hf-hub:org/name"``, ``"local-dir:/path"``),
      * a transformers Hub id (``AutoModelForImageClassification``), tried when timm does not know the name,
      * a :class:`Backbone` (returned as is) or any ``nn.Module`` classifier (pass ``in_chans``/``img_size``,
        ``mean``/``std`` unless it carries a timm ``pretrained_cfg`` or a transformers ``config``).

    ``num_classes``/``in_chans``/``img_size`` build a fresh head/stem where the library allows it (students,
    teachers to train); ``pretrained=False`` builds a randomly initialised model.
    """
    if isinstance(model, Backbone):
        return model
    if isinstance(model, nn.Module):
        if hasattr(model, "pretrained_cfg") or hasattr(model, "timm_model"):
            return _from_timm(model, class_names, mean=mean, std=std)
        if hasattr(model, "config") and hasattr(model.config, "id2label"):
            return _from_transformers(model, None, class_names, img_size, mean, std)
        if in_chans is None or img_size is None:
            raise ValueError("A plain nn.Module needs in_chans= and img_size= (and mean=/std=, default 0.5).")
        channels = in_chans
        return Backbone(
            model,
            ImageSpec(channels, (img_size, img_size)),
            mean or (0.5,) * channels,
            std or (0.5,) * channels,
            class_names,
        )

    backbone = _load_named(
        str(model), num_classes, class_names, in_chans, img_size, pretrained, model_kwargs, mean=mean, std=std
    )
    folder = Path(str(model))
    backbone.metadata = {"id": str(model), "architecture": _architecture(backbone)}
    if folder.is_dir():
        saved = read_metadata(folder)
        backbone.metadata.update(folder=str(folder), test_acc=saved.get("test_acc"))
    return backbone


def _architecture(backbone: Backbone) -> str:
    cfg = getattr(backbone.model, "pretrained_cfg", None) or {}
    if cfg.get("architecture"):
        return f"timm {cfg['architecture']}"
    config = getattr(backbone.model, "config", None)
    if config is not None and hasattr(config, "model_type"):
        return f"transformers {type(backbone.model).__name__} ({config.model_type})"
    return type(backbone.model).__name__


def _looks_like_a_path(name: str) -> bool:
    """``./x``, ``/x``, ``~/x``, ``a/b/c``, or ``a/b`` where a local folder ``a`` exists: meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or ("/" in name and Path(name).parent.is_dir())


def _load_named(
    name, num_classes, class_names, in_chans, img_size, pretrained, model_kwargs, mean=None, std=None
) -> Backbone:
    import timm

    kwargs = dict(model_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    folder = Path(name)
    if folder.is_dir() and (folder / "config.json").exists():
        config = json.loads((folder / "config.json").read_text())
        if "architecture" in config:  # timm layout
            net = timm.create_model(f"local-dir:{folder}", pretrained=pretrained, **kwargs)
            return _from_timm(net, class_names, img_size, mean, std)
        return _load_transformers(str(folder), num_classes, class_names, pretrained, img_size, mean, std)
    if folder.is_dir():
        raise ValueError(f"{name} is a folder without config.json: not a saved model (see wmdd_hf.save_backbone).")
    if name.startswith(("hf-hub:", "local-dir:")) or timm.is_model(name.split(".")[0]):
        try:  # models with a fixed input size (ViT, the ConvNet) take img_size; others run at any size
            net = timm.create_model(
                name, pretrained=pretrained, **kwargs, **({"img_size": img_size} if img_size else {})
            )
        except TypeError:
            net = timm.create_model(name, pretrained=pretrained, **kwargs)
        return _from_timm(net, class_names, img_size, mean, std)
    if _looks_like_a_path(name):
        raise ValueError(
            f"No folder {name} (looked in {Path(name).resolve().parent}), and {name!r} is not a timm model name: "
            "check the path, or give a Hub id 'org/name'."
        )
    try:
        return _load_transformers(name, num_classes, class_names, pretrained, img_size, mean, std)
    except ValueError as error:
        if "/" in name and not Path(name).exists():
            raise ValueError(f"No folder {name}, and no Hub model of that name ({error})") from error
        raise


def _load_transformers(
    name: str,
    num_classes: int | None,
    class_names: list[str] | None,
    pretrained: bool,
    img_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Backbone:
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    extra = {}
    if num_classes is not None:
        extra = {"num_labels": num_classes, "ignore_mismatched_sizes": True}
        if class_names:
            extra["id2label"] = dict(enumerate(class_names))
            extra["label2id"] = {n: i for i, n in enumerate(class_names)}
    try:
        if pretrained:
            model = AutoModelForImageClassification.from_pretrained(name, **extra)
        else:
            config = AutoConfig.from_pretrained(
                name, **{k: v for k, v in extra.items() if k != "ignore_mismatched_sizes"}
            )
            if img_size is not None and hasattr(config, "image_size"):
                config.image_size = img_size  # a fresh model is built for the size asked
            model = AutoModelForImageClassification.from_config(config)
    except OSError as error:
        raise ValueError(
            f"{name!r} is neither a timm model name, a folder with config.json, nor a reachable transformers model id "
            f"({error.__class__.__name__}). Check the name, or pass a built nn.Module."
        ) from error
    try:
        processor = AutoImageProcessor.from_pretrained(name)
    except Exception:  # noqa: BLE001 - a model without a processor uses its config's defaults
        processor = None
    return _from_transformers(model, processor, class_names, img_size, mean, std)


def save_backbone(backbone: Backbone, folder: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Writes config + safetensors weights + class names so that :func:`load_backbone` (and timm's
    ``local-dir:`` or transformers' ``from_pretrained``) loads it back; ``metadata`` goes to ``wmdd_hf.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if backbone.source == "timm":
        import timm

        data_config = {
            "input_size": backbone.data_config["input_size"],
            "mean": backbone.data_config["mean"],
            "std": backbone.data_config["std"],
        }
        options = {"model_config": {"label_names": backbone.class_names}, "safe_serialization": True}
        takes_data_config = "data_config" in inspect.signature(timm.models.save_for_hf).parameters
        if takes_data_config:
            options["data_config"] = data_config
        timm.models.save_for_hf(backbone.model, str(folder), **options)
        if not takes_data_config:  # an older timm: the input size and normalisation written into its config here
            config = json.loads((folder / "config.json").read_text())
            config.setdefault("pretrained_cfg", {}).update(data_config)
            (folder / "config.json").write_text(json.dumps(config, indent=2))
    elif backbone.source == "transformers":
        backbone.model.config.id2label = dict(enumerate(backbone.class_names))
        backbone.model.config.label2id = {n: i for i, n in enumerate(backbone.class_names)}
        backbone.model.save_pretrained(str(folder))
        from transformers import AutoImageProcessor  # noqa: F401 - processor config for mean/std and size

        _save_processor(backbone, folder)
    else:
        raise ValueError("Only timm and transformers backbones can be saved; wrap plain modules with timm.")
    (folder / "wmdd_hf.json").write_text(
        json.dumps({"class_names": backbone.class_names, **(metadata or {})}, indent=2)
    )
    return folder


def _save_processor(backbone: Backbone, folder: Path) -> None:
    from transformers import ViTImageProcessor

    h, w = backbone.spec.size
    ViTImageProcessor(
        image_mean=list(backbone.data_config["mean"]),
        image_std=list(backbone.data_config["std"]),
        size={"height": h, "width": w},
    ).save_pretrained(str(folder))


def read_metadata(folder: str | os.PathLike) -> dict:
    """The ``wmdd_hf.json`` beside a saved backbone (empty when absent)."""
    path = Path(folder) / "wmdd_hf.json"
    return json.loads(path.read_text()) if path.exists() else {}
