"""ResNet-18 for small images, registered with timm as ``resnet18_small``.

timm's ResNet-18 (BasicBlock, 2-2-2-2) with the stem of the small-image literature: one 3x3 stride-1 convolution and
no max-pool, so a 32 px input reaches the first stage at 32 x 32 positions (8 x 8 with the ImageNet stem).
``timm.create_model("resnet18_small", num_classes=10, in_chans=3, img_size=32)`` builds it (after ``import
wmdd_hf``); like every ResNet it runs at any input size, and ``img_size`` only records the size it is meant for.
"""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

__all__ = ["SmallImageResNet", "resnet18_small"]


class SmallImageResNet(ResNet):
    """:class:`timm.models.resnet.ResNet` whose stem is ``conv3x3(stride 1) -> norm -> act`` without a max-pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conv1 = nn.Conv2d(self.conv1.in_channels, self.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
        for info in self.feature_info:  # every stage is 4x less reduced than with the ImageNet stem
            info["reduction"] = max(1, info["reduction"] // 4)


default_cfgs = generate_default_cfgs(
    {
        "resnet18_small.untrained": {
            "num_classes": 10,
            "input_size": (3, 32, 32),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "first_conv": "conv1",
            "classifier": "fc",
        }
    }
)


@register_model
def resnet18_small(pretrained: bool = False, **kwargs) -> SmallImageResNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (for 28-64 px images); ``img_size`` (default 32) sets the
    input size its config records."""
    img_size = kwargs.pop("img_size", 32)
    img_size = img_size if isinstance(img_size, int) else int(img_size[-1])
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay.setdefault("input_size", (kwargs.get("in_chans", 3), img_size, img_size))
    return build_model_with_cfg(
        SmallImageResNet,
        "resnet18_small",
        pretrained,
        pretrained_cfg_overlay=overlay,
        block=BasicBlock,
        layers=(2, 2, 2, 2),
        **kwargs,
    )
