"""LeNet-5 (LeCun et al., 1998), written out: the classic 32x32 network the studies used as a baseline."""

from __future__ import annotations

import torch
from torch import nn

from cellscreen.models._registry import DataConfig, register_model


class LeNet5(nn.Module):
    """conv 6@5x5, average-pool, conv 16@5x5, average-pool (tanh throughout), dense 120 and 84, classifier.

    At 32x32 the second pooling leaves 16 maps of 5x5, as in the paper; an
    adaptive pooling keeps other input sizes working with the same weights.
    """

    def __init__(self, *, num_classes: int, in_chans: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model("lenet5", data_config=DataConfig(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
                pool="pool", description="LeNet-5: the classic 32x32 network (conv 6-16, dense 120-84)")
def lenet5(*, num_classes: int, in_chans: int = 3, input_size: int = 32) -> nn.Module:
    return LeNet5(num_classes=num_classes, in_chans=in_chans)
