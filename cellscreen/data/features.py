"""Hand-crafted cell features for the classical baseline: colour and texture.

Per image (uint8 RGB, any square size):

- colour: 16-bin histograms of each RGB channel and of hue and saturation
  (stained parasites and blast nuclei are purple; their share of pixels shows
  here), 80 values;
- shape and texture: HOG of the grey image (scikit-image, 9 orientations,
  cells of 1/4 of the side, blocks of 2x2 cells), 324 values;
- texture: uniform LBP histograms (8 neighbours at radius 1 and 2) of the
  grey image, 20 values.

All histograms are normalised to sum to one, so image size does not matter.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import hog, local_binary_pattern

from cellscreen.data.parallel import parallel_map

__all__ = ["handcrafted_features", "handcrafted_batch", "N_FEATURES"]

_BINS = 16
N_FEATURES = 5 * _BINS + 324 + 2 * 10


def _histogram(values: np.ndarray, bins: int, upper: float) -> np.ndarray:
    counts, _ = np.histogram(values, bins=bins, range=(0, upper))
    return counts / max(counts.sum(), 1)


def handcrafted_features(image: np.ndarray) -> np.ndarray:
    """The feature vector (float32, ``N_FEATURES`` values) of one ``(H, W, 3)`` uint8 image."""
    colour = [_histogram(image[..., c], _BINS, 256) for c in range(3)]
    hsv = rgb2hsv(image)
    colour += [_histogram(hsv[..., 0], _BINS, 1.0), _histogram(hsv[..., 1], _BINS, 1.0)]
    grey = rgb2gray(image)
    side = grey.shape[0] // 4
    shape = hog(grey, orientations=9, pixels_per_cell=(side, side), cells_per_block=(2, 2), feature_vector=True)
    grey8 = (grey * 255).astype(np.uint8)
    texture = [_histogram(local_binary_pattern(grey8, 8, radius, method="uniform"), 10, 10) for radius in (1, 2)]
    return np.concatenate([*colour, shape, *texture]).astype(np.float32)


def handcrafted_batch(images: np.ndarray, *, workers: int | None = None, progress: bool = False) -> np.ndarray:
    """Features of ``(N, H, W, 3)`` uint8 images, ``(N, N_FEATURES)``."""
    if len(images) == 0:
        return np.zeros((0, N_FEATURES), np.float32)
    return np.stack(list(parallel_map(handcrafted_features, list(images), workers=workers, desc="features",
                                      progress=progress)))
