"""cellscreen's own compact CNN, the default for CPU training.

Single cells are small, centred and nearly rotation-invariant; a plain
VGG-style stack at 48 px reached about 96% on a slide-disjoint malaria fold
within a few CPU minutes (BENCHMARKS.md), and its weights take 1.5 MB, so it
can ship inside the package.
"""

from __future__ import annotations

import torch
from torch import nn

from cellscreen.models._registry import DataConfig, register_model


def _conv_bn_relu(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans),
                         nn.ReLU(inplace=True))


class CompactCNN(nn.Module):
    """Stages of 3x3 conv + batch norm + ReLU (``width`` x 1, 2, 4, 8 channels,
    ``convs_per_stage`` each) with 2x2 max-pooling between them, then global
    average pooling, dropout and a linear classifier."""

    def __init__(self, *, num_classes: int, in_chans: int = 3, width: int = 32, convs_per_stage: int = 1,
                 dropout: float = 0.2):
        super().__init__()
        layers, channels = [], in_chans
        for stage, multiplier in enumerate((1, 2, 4, 8)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs_per_stage):
                layers.append(_conv_bn_relu(channels, width * multiplier))
                channels = width * multiplier
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("compact_cnn", data_config=DataConfig(input_size=48), classifier="head",
                description="cellscreen's compact CNN: conv 32-64-128-256 + BN, max-pool, global pool")
def compact_cnn(*, num_classes: int, in_chans: int = 3, input_size: int = 48) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans)
