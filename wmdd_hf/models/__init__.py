"""Models the project registers with timm (importing this package registers them)."""

from .convnet import ConvNet, wmdd_convnet
from .small_resnet import SmallImageResNet, resnet18_small

__all__ = ["ConvNet", "SmallImageResNet", "resnet18_small", "wmdd_convnet"]
