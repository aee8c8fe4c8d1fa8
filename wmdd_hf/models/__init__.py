"""Models the project registers with timm (importing this package registers them)."""

from .convnet import ConvNet, wmdd_convnet

__all__ = ["ConvNet", "wmdd_convnet"]
