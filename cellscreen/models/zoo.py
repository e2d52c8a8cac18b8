"""Architectures from timm and torchvision, wrapped (never copied).

None of them can download ImageNet weights here; pass ``pretrained=FILE`` to
``create_model`` to start from a local copy.
"""

from __future__ import annotations

import timm
import torchvision
from torch import nn

from cellscreen.models._registry import DataConfig, register_model


def _timm(name: str, *, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model("resnet10t", data_config=DataConfig(input_size=64),
                description="timm ResNet-10-T: a 10-layer ResNet with a tiered stem (4.9 M params)")
def resnet10t(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return _timm("resnet10t", num_classes=num_classes, in_chans=in_chans)


@register_model("mobilenetv3_small", data_config=DataConfig(input_size=96),
                description="timm MobileNetV3-Small 1.0: a compact mobile network (1.5 M params)")
def mobilenetv3_small(*, num_classes: int, in_chans: int = 3, input_size: int = 96) -> nn.Module:
    return _timm("mobilenetv3_small_100", num_classes=num_classes, in_chans=in_chans)


@register_model("resnet18", data_config=DataConfig(input_size=96),
                description="torchvision ResNet-18 (11 M params)")
def resnet18(*, num_classes: int, in_chans: int = 3, input_size: int = 96) -> nn.Module:
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
