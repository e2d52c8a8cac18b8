"""cellscreen's own compact CNNs; ``compact_cnn6sc`` is the default for CPU training.

Single cells are small, centred and nearly rotation-invariant, so a plain
VGG-style stack with batch norm and global average pooling does well on them
within a few CPU minutes.  The 4-stage ``compact_cnn`` at 48 px was the first
default (0.9565 accuracy, 0.9890 ROC AUC on slide-disjoint 5-fold malaria
cross-validation); the 6-stage ``compact_cnn6`` at 64 px (its last map is 2x2)
reached 0.9590 and 0.9906 on the same folds, and 0.9602 and 0.9901 with
stain jitter (BENCHMARKS.md).  ``compact_cnn6p``, the same network with each
pooling moved to right after its conv, trains about a quarter faster on a CPU
and reached 0.9613 and 0.9913.  ``compact_cnn6s`` replaces its first
full-resolution conv and pooling by a space-to-depth step and the conv at
half resolution: the same FLOPs, used better, so its 8-bit graph took
0.44-0.55 ms per cell against 0.68-0.73 on one thread; over two training
seeds it reached 0.9612 and 0.9909, against 0.9606 and 0.9909 for
``compact_cnn6p``.  ``compact_cnn6sc``, the default, is ``compact_cnn6s``
whose first step gives every cell the same mean colour (``CellColourNorm``),
so that a slide stained more or less strongly than the training slides looks
like them: in fp32 over two seeds of the same folds it reached 0.9631 and
0.9920 against 0.9599 and 0.9904 for ``compact_cnn6s``, better on all ten
fold-runs.  ``compact_cnn6scw`` is ``compact_cnn6sc`` with wider convs
(48-96-192-288-384-512): at 96 px it trains at half the rate and was no more
accurate on the slide fold it was tried on, so more width is not what these
cells need.  Their weights take 1.5 to 14 MB, so any of them can ship inside
the package.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cellscreen.errors import UserError
from cellscreen.models._registry import DataConfig, register_model
from cellscreen.models.layers import CellColourNorm


def _conv_bn_relu(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans),
                         nn.ReLU(inplace=True))


def _pools_before_norm(stage: nn.Module) -> bool:
    return (isinstance(stage, nn.Sequential) and len(stage) == 4 and isinstance(stage[1], nn.MaxPool2d)
            and isinstance(stage[2], nn.BatchNorm2d))


class CompactCNN(nn.Module):
    """One 3x3 conv + batch norm + ReLU per stage, ``widths`` channels, with 2x2
    max-pooling between stages, then global average pooling, dropout and a
    linear classifier.  Pooling rounds up, so a small input never pools to
    nothing.

    ``space_to_depth`` (a block side ``k`` > 1) replaces the first stage's
    full-resolution conv and pooling by a rearrangement of each ``k`` x ``k``
    block of pixels into channels (``PixelUnshuffle``) followed by the conv at
    1/``k`` of the resolution; the input side must then be a multiple of ``k``.
    The registered networks use ``k`` = 2.

    ``pool_before_norm`` moves each pooling from after a stage's ReLU to just
    after its conv.  Max-pooling commutes with ReLU, and with batch norm's
    per-channel scale where that scale is positive, so the network computes
    nearly the same function; but batch norm and ReLU, whose training passes
    are bound by memory speed on a CPU, then see a quarter of the values.
    """

    def __init__(self, *, num_classes: int, in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256),
                 dropout: float = 0.2, pool_before_norm: bool = False, space_to_depth: int = 1,
                 colour_norm: bool = False):
        super().__init__()
        # each cell's colours divided by their mean over the cell (CellColourNorm), before the first stage;
        # it undoes the input's normalisation, the one create_model gives the model (ImageNet's)
        stats = DataConfig(input_size=1).for_channels(in_chans)
        self.colour = CellColourNorm(stats.mean, stats.std) if colour_norm else nn.Identity()
        layers, channels = [], in_chans
        for stage, width in enumerate(widths):
            last = stage == len(widths) - 1
            if stage == 0 and space_to_depth > 1:
                # each k x k block of pixels becomes one position with k*k times the channels: the first conv
                # then sees every pixel at 1/k of the resolution, instead of being computed at full resolution
                # and max-pooled (for k = 2, a quarter of its work, and the most costly layer otherwise)
                k = space_to_depth
                layers.append(nn.Sequential(nn.PixelUnshuffle(k), *_conv_bn_relu(channels * k * k, width)))
            elif pool_before_norm:
                # conv, then the pooling, then batch norm and ReLU on a quarter of the values
                conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
                pool = [] if last else [nn.MaxPool2d(2, ceil_mode=True)]
                layers.append(nn.Sequential(conv, *pool, nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            else:
                if stage:
                    layers.append(nn.MaxPool2d(2, ceil_mode=True))
                layers.append(_conv_bn_relu(channels, width))
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.colour(x)))

    def for_inference(self) -> nn.Module:
        """An eval-mode copy that gives the same outputs in the form inference runtimes fuse best.

        In a ``pool_before_norm`` stage whose batch norm scales every channel by a non-negative factor,
        batch norm is a non-decreasing map per channel, so it commutes with max-pooling, and so does
        ReLU: the copy runs conv, batch norm, ReLU, then the pooling, which onnxruntime runs as one
        fused conv followed by a pooling.  A stage with a negative scale stays as it is.  Without
        ``pool_before_norm`` this is the model itself.
        """
        if not any(_pools_before_norm(stage) for stage in self.features):
            return self
        model = copy.deepcopy(self).eval()
        for stage in model.features:
            norm = stage[2] if _pools_before_norm(stage) else None
            # the scale is weight / sqrt(var + eps): its sign is the weight's (without a weight, positive);
            # a NaN weight compares false and leaves the stage as it is
            if norm is not None and (norm.weight is None or bool((norm.weight >= 0).all())):
                stage[1], stage[2], stage[3] = stage[2], stage[3], stage[1]  # conv, norm, ReLU, pool
        return model


@register_model("compact_cnn", data_config=DataConfig(input_size=48), classifier="head",
                description="cellscreen's compact CNN: conv 32-64-128-256 + BN, max-pool, global pool")
def compact_cnn(*, num_classes: int, in_chans: int = 3, input_size: int = 48) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans)


@register_model("compact_cnn6", data_config=DataConfig(input_size=64), classifier="head",
                description="cellscreen's 6-stage CNN: conv 32-64-128-192-256-256 + BN, max-pool, global pool")
def compact_cnn6(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans, widths=(32, 64, 128, 192, 256, 256))


@register_model("compact_cnn6p", data_config=DataConfig(input_size=64), classifier="head",
                description="compact_cnn6 pooling before its batch norms, a faster CPU step")
def compact_cnn6p(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return CompactCNN(num_classes=num_classes, in_chans=in_chans, widths=(32, 64, 128, 192, 256, 256),
                      pool_before_norm=True)


def _space_to_depth_cnn6(name: str, num_classes: int, in_chans: int, input_size: int, colour_norm: bool = False,
                         widths: tuple[int, ...] = (32, 64, 128, 192, 256, 256), block: int = 2) -> CompactCNN:
    if input_size % block:
        raise UserError(f"{name} folds {block}x{block} pixel blocks into channels, so its input size must be a "
                        f"multiple of {block} (got {input_size})")
    return CompactCNN(num_classes=num_classes, in_chans=in_chans, widths=widths,
                      pool_before_norm=True, space_to_depth=block, colour_norm=colour_norm)


@register_model("compact_cnn6s", data_config=DataConfig(input_size=64), classifier="head",
                description="compact_cnn6p with a space-to-depth first stage, faster to run")
def compact_cnn6s(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return _space_to_depth_cnn6("compact_cnn6s", num_classes, in_chans, input_size)


@register_model("compact_cnn6sc", data_config=DataConfig(input_size=64), classifier="head",
                description="cellscreen's default CNN: compact_cnn6s with every cell's mean colour made the same first")
def compact_cnn6sc(*, num_classes: int, in_chans: int = 3, input_size: int = 64) -> nn.Module:
    return _space_to_depth_cnn6("compact_cnn6sc", num_classes, in_chans, input_size, colour_norm=True)


@register_model("compact_cnn6scw", data_config=DataConfig(input_size=96), classifier="head",
                description="compact_cnn6sc, wider: conv 48-96-192-288-384-512")
def compact_cnn6scw(*, num_classes: int, in_chans: int = 3, input_size: int = 96) -> nn.Module:
    return _space_to_depth_cnn6("compact_cnn6scw", num_classes, in_chans, input_size, colour_norm=True,
                                widths=(48, 96, 192, 288, 384, 512))
