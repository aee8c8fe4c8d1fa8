"""The classic dataset-distillation ConvNet, registered with timm as ``wmdd_convnet``.

``depth`` blocks of conv3x3 -> norm -> ReLU -> 2x2 average pool, then a linear classifier on the flattened map.
``timm.create_model("wmdd_convnet", num_classes=10, in_chans=1, img_size=28, width=64, norm="batch")`` builds it
(after ``import wmdd_hf``); its ``pretrained_cfg`` carries Fashion-MNIST's input size, mean and std.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["ConvNet"]

_NORMS = ("batch", "instance", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)  # instance norm with affine, as in the literature
    if kind == "group":
        return nn.GroupNorm(4, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r} is not one of {_NORMS}")


class ConvNet(nn.Module):
    """ConvNet(width, depth, norm) with timm's model interface.

    Input ``(B, in_chans, img_size, img_size)``; ``forward_head(..., pre_logits=True)`` gives the flattened last
    feature map of ``num_features = width * (img_size // 2**depth) ** 2`` values.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int | tuple[int, int] = 28,
        width: int = 64,
        depth: int = 3,
        norm: str = "batch",
        drop_rate: float = 0.0,
        **_: object,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_chans, img_size if isinstance(img_size, int) else int(img_size[-1])
        for _i in range(depth):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
            channels, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = width * size * size
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(x, 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs(
    {
        "wmdd_convnet.fashion_mnist": {
            "num_classes": 10,
            "input_size": (1, 28, 28),
            "mean": (0.2860,),
            "std": (0.3530,),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "first_conv": "features.0",
            "classifier": "fc",
            "fixed_input_size": True,
        }
    }
)


@register_model
def wmdd_convnet(pretrained: bool = False, **kwargs) -> ConvNet:
    """The dataset-distillation ConvNet (``width`` 128, ``depth`` 3, ``norm`` 'batch' by default here: 64)."""
    img_size = kwargs.get("img_size", 28)
    img_size = img_size if isinstance(img_size, int) else int(img_size[-1])
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay.setdefault("input_size", (kwargs.get("in_chans", 1), img_size, img_size))
    kwargs.setdefault("width", 64)
    return build_model_with_cfg(
        ConvNet,
        "wmdd_convnet",
        pretrained,
        pretrained_cfg_overlay=overlay,
        feature_cfg={"flatten_sequential": True},
        **kwargs,
    )
