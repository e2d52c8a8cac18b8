"""The learned cell finder's network and its loss (PyTorch; only training and export import this module).

A small fully-convolutional network in the spirit of CenterNet (Zhou et al.
2019, "Objects as points"): for each kind of cell (red, white) it predicts a
heat map that peaks at every cell's centre, the centre's offset from each
output pixel near it (CenterNet's offset regression, so that a centre is
placed to a fraction of an output pixel), and a cell's width and height (as
logarithms of their share of a red cell's diameter). It sees a field
resized so that a red cell is ``WORK_DIAMETER`` pixels across and answers at
half that resolution (``STRIDE``): a red cell is then 8 output pixels
across, enough to tell touching cells apart, and a 640x480 field costs
about 0.3 GMAC.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CentreNet", "centre_loss", "draw_targets", "WORK_DIAMETER", "STRIDE", "MULTIPLE"]

WORK_DIAMETER = 16.0  # a red cell's diameter in the network's input, px
STRIDE = 2  # input pixels per output pixel
MULTIPLE = 4  # the input's sides must be multiples of this (two stride-2 steps)
PEAK_SIGMA = 1 / 6  # the Gaussian drawn at each centre, as a share of that cell's diameter (output px)
PRIOR = 0.1  # the heat maps' starting value, so the first steps are not swamped by the background
OFFSET_REACH = 1  # the offset is taught on the output pixels within this many pixels (each way) of a centre
OFFSET_WEIGHT = 1.0  # the offset's L1 loss beside the heat map's (CenterNet's weight)


def _conv(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CentreNet(nn.Module):
    """Heat maps (N, kinds, H/2, W/2) in 0..1, log sizes (N, 2, H/2, W/2) and, with ``offset``, each output
    pixel's offset to the nearest centre (N, 2, H/2, W/2; x, y in output pixels) from a standardised field.

    Two stride-2 steps, then dilated convolutions at a quarter of the
    resolution (``dilations``: 2 and 4 see about four red cells across, a
    white cell and its neighbours; each further 8 adds four cells), then back
    to half resolution with the finer features.
    """

    def __init__(self, *, kinds: int, width: int = 12, offset: bool = True, dilations: tuple[int, ...] = (2, 4)):
        super().__init__()
        w = width
        self.fine = nn.Sequential(_conv(3, w, stride=2), _conv(w, w))
        self.quarter = nn.Sequential(_conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w), _conv(2 * w, 3 * w),
                                     *(_conv(3 * w, 3 * w, dilation=d) for d in dilations), _conv(3 * w, 3 * w))
        self.fuse = nn.Sequential(nn.Conv2d(4 * w, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  _conv(w, w))
        self.heat = nn.Conv2d(w, kinds, 1)
        self.size = nn.Conv2d(w, 2, 1)
        self.offset = nn.Conv2d(w, 2, 1) if offset else None
        nn.init.constant_(self.heat.bias, float(np.log(PRIOR / (1 - PRIOR))))

    def forward(self, fields: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fine = self.fine(fields)
        quarter = F.interpolate(self.quarter(fine), scale_factor=2.0, mode="nearest")
        features = self.fuse(torch.cat([fine, quarter], dim=1))
        if self.offset is None:
            return torch.sigmoid(self.heat(features)), self.size(features)
        return torch.sigmoid(self.heat(features)), self.size(features), self.offset(features)


def draw_targets(shape: tuple[int, int], centres: np.ndarray, kinds: np.ndarray, sizes: np.ndarray | None,
                 n_kinds: int, work_diameter: float = WORK_DIAMETER) -> dict[str, np.ndarray]:
    """The targets of one crop, in output pixels: ``heat`` (kinds, h, w), ``size`` (2, h, w) and ``has_size``
    (h, w), where it holds; ``offset`` (2, h, w) and ``has_offset`` (h, w).

    ``centres`` (N, 2) are (x, y) in output pixels, ``kinds`` (N,) the channel of each; ``sizes`` (N, 2) the
    cells' width and height as shares of a red cell's diameter, or None (point labels). Each centre gets a
    Gaussian (its width a share of the cell's diameter, ``work_diameter`` / ``STRIDE`` output pixels for a red
    cell) whose peak, 1, sits on the nearest output pixel; the output pixels within ``OFFSET_REACH`` of it
    learn the way from themselves to the centre (the nearest centre where two cells' neighbourhoods meet).
    """
    h, w = shape
    heat = np.zeros((n_kinds, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    has_size = np.zeros((h, w), bool)
    offset = np.zeros((2, h, w), np.float32)
    nearest = np.full((h, w), np.inf, np.float32)
    diameter = work_diameter / STRIDE
    ys, xs = np.mgrid[0:h, 0:w]
    for k, ((x, y), kind) in enumerate(zip(centres, kinds)):
        cx, cy = int(round(x)), int(round(y))
        if not (0 <= cx < w and 0 <= cy < h):
            continue
        across = diameter * (float(np.sqrt(sizes[k][0] * sizes[k][1])) if sizes is not None else 1.0)
        sigma = max(0.8, PEAK_SIGMA * across)
        reach = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(0, cy - reach), min(h, cy + reach + 1), max(0, cx - reach), min(w, cx + reach + 1)
        blob = np.exp(-((xs[y0:y1, x0:x1] - cx) ** 2 + (ys[y0:y1, x0:x1] - cy) ** 2) / (2 * sigma**2))
        np.maximum(heat[kind, y0:y1, x0:x1], blob, out=heat[kind, y0:y1, x0:x1])
        if sizes is not None:
            size[:, cy, cx] = np.log(np.clip(sizes[k], 0.05, None))
            has_size[cy, cx] = True
        r = OFFSET_REACH
        y0, y1, x0, x1 = max(0, cy - r), min(h, cy + r + 1), max(0, cx - r), min(w, cx + r + 1)
        dx, dy = x - xs[y0:y1, x0:x1], y - ys[y0:y1, x0:x1]
        closer = np.hypot(dx, dy) < nearest[y0:y1, x0:x1]
        offset[0, y0:y1, x0:x1][closer], offset[1, y0:y1, x0:x1][closer] = dx[closer], dy[closer]
        nearest[y0:y1, x0:x1][closer] = np.hypot(dx, dy)[closer]
    return {"heat": heat, "size": size, "has_size": has_size, "offset": offset, "has_offset": np.isfinite(nearest)}


def centre_loss(outputs: tuple[torch.Tensor, ...], targets: dict[str, torch.Tensor],
                trusted: torch.Tensor, kind_weights: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heat maps, where ``trusted`` (N, 1, h, w) is 1, plus L1
    losses on the log sizes at the labelled centres and on the offsets near them; normalised by the number of
    centres. ``outputs`` is what ``CentreNet`` returns, ``targets`` ``draw_targets``' maps stacked;
    ``kind_weights`` (kinds,) weighs each heat map's focal loss (a rare kind, as white cells, may count more)."""
    heat, size = outputs[:2]
    target = targets["heat"]
    p = heat.clamp(1e-4, 1 - 1e-4)
    peak = (target >= 0.999).float() * trusted
    rest = (1 - peak) * trusted
    if kind_weights is not None:
        weight = kind_weights.view(1, -1, 1, 1)
        peak, rest = peak * weight, rest * weight
    positive = -(torch.log(p) * (1 - p) ** 2 * peak).sum()
    negative = -(torch.log(1 - p) * p**2 * (1 - target) ** 4 * rest).sum()
    centres = ((target >= 0.999).float() * trusted).sum().clamp(min=1.0)
    box = targets["has_size"].unsqueeze(1).float()
    size_term = (torch.abs(size - targets["size"]) * box).sum() / box.sum().clamp(min=1.0)
    loss = (positive + negative) / centres + 0.5 * size_term
    if len(outputs) > 2:
        near = targets["has_offset"].unsqueeze(1).float()
        loss = loss + OFFSET_WEIGHT * (torch.abs(outputs[2] - targets["offset"]) * near).sum() / (
            2 * near.sum().clamp(min=1.0))
    return loss
