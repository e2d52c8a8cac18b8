"""cellscreen's own compact CNNs; ``compact_cnn6`` is the default for CPU training.

Single cells are small, centred and nearly rotation-invariant, so a plain
VGG-style stack with batch norm and global average pooling does well on them
within a few CPU minutes.  The 4-stage ``compact_cnn`` at 48 px was the first
default (0.9565 accuracy, 0.9890 ROC AUC on slide-disjoint 5-fold malaria
cross-validation); the 6-stage ``compact_cnn6`` at 64 px (its last map is 2x2)
reached 0.9590 and 0.9906 on the same folds, and 0.9602 and 0.9901 with
stain jitter (BENCHMARKS.md).  Their weights take 1.5 and 5.4 MB, so either
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
    """One 3x3 conv + batch norm + ReLU per stage, ``widths`` channels, with 2x2
    max-pooling between stages, then global average pooling, dropout and a
    linear classifier.  Pooling rounds up, so a small input never pools to
    nothing."""

    def __init__(self, *, num_classes: int, in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256),
                 dropout: float = 0.2):
        super().__init__()
        layers, channels = [], in_chans
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers.append(_conv_bn_relu(channels, width))
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("compact_cnn", data_config=DataConfig(input_size=48), classifier="head",
                description="cellscreen's compact CNN: conv 32-64-128-256 + BN, max-pool, global pool")
def compact_cnn(*, num_classes: int, in_chans: int = 3, input_size: int = 48) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans)


@register_model("compact_cnn6", data_config=DataConfig(input_size=64), classifier="head",
                description="cellscreen's default CNN: conv 32-64-128-192-256-256 + BN, max-pool, global pool")
def compact_cnn6(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans, widths=(32, 64, 128, 192, 256, 256))
