"""The two CNNs the seed studies proposed, written out as they describe them."""

from __future__ import annotations

import torch
from torch import nn

from cellscreen.models._registry import DataConfig, register_model
from cellscreen.models.layers import Dropout

_UNIT = DataConfig(input_size=128, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # Keras-style rescale 1/255

# Both networks apply ReLU after the 2x2 max-pooling rather than before: the two commute (ReLU keeps
# the order of values), so outputs and gradients are those of the published order, while ReLU and its
# backward pass touch a quarter of the values.


class SeedAllNet(nn.Module):
    """The ALL study's VGG-like network: 6 blocks of 3x3 conv + batch norm + ReLU
    (32, 64, 128, 256, 384, 512 filters), each followed by 2x2 max-pooling, then
    dense 4096 and 1000 with dropout, then the classifier."""

    def __init__(self, *, num_classes: int, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        blocks, channels = [], in_chans
        for width in (32, 64, 128, 256, 384, 512):
            blocks += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*blocks)
        # 6 poolings: a 128 px input leaves 2x2; adaptive pooling keeps any size working
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(512 * 2 * 2, 4096), nn.ReLU(inplace=True), Dropout(dropout),
            nn.Linear(4096, 1000), nn.ReLU(inplace=True), Dropout(dropout),
            nn.Linear(1000, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class SeedMalariaCNN(nn.Module):
    """The malaria study's small CNN: conv 16, 32, 64 (3x3, ReLU) each with 2x2
    max-pooling and dropout 0.2, 0.3, 0.3; dense 64 with dropout 0.5; one
    sigmoid output; 128x128 input."""

    def __init__(self, *, num_classes: int = 2, in_chans: int = 3, input_size: int = 128):
        super().__init__()
        layers, channels = [], in_chans
        for width, dropout in ((16, 0.2), (32, 0.3), (64, 0.3)):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True),
                       Dropout(dropout)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = input_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 64), nn.ReLU(inplace=True), Dropout(0.5), nn.Linear(64, 1),
        )

        # Keras initialises conv and dense layers with Glorot-uniform weights and zero biases;
        # with PyTorch's default initialisation this network often stalls at chance for an epoch.
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# LayerCAM, not Grad-CAM: at the two stages explain reads (32 + 16 px of a 64 px input), Grad-CAM's one weight
# per channel pointed at the parasite for 0.247 of 527 test cells on a trained seed_allnet, LayerCAM for 0.991
# (0.990 of 616 validation cells): BENCHMARKS.md, section "2026-12-07, evening" (the zoo's pointing game,
# bench/cam_pointing.py).  The other VGG-style stacks (vgg16, vgg16_bn) were not measured, so they keep Grad-CAM.
@register_model("seed_allnet", data_config=DataConfig(input_size=128), pool="pool", cam_method="layercam",
                description=SeedAllNet.__doc__.split("\n")[0])
def seed_allnet(*, num_classes: int, in_chans: int = 3, input_size: int = 128) -> nn.Module:
    return SeedAllNet(num_classes=num_classes, in_chans=in_chans)


@register_model("seed_malaria_cnn", data_config=_UNIT, single_logit=True,
                description="The malaria study's small CNN: conv 16-32-64, dense 64, one sigmoid output")
def seed_malaria_cnn(*, num_classes: int, in_chans: int = 3, input_size: int = 128) -> nn.Module:
    return SeedMalariaCNN(num_classes=num_classes, in_chans=in_chans, input_size=input_size)
