import numpy as np
from PIL import Image
_MARGIN = 2
def cut_cells_shared(rgb, labels, cells, scale=1.0):
    field = Image.fromarray(np.ascontiguousarray(rgb))
    height, width = labels.shape
    crops = []
    for cell in cells:
        x0, y0, x1, y1 = cell.box
        top, left = max(0, y0 - _MARGIN), max(0, x0 - _MARGIN)
        bottom, right = min(height, y1 + _MARGIN), min(width, x1 + _MARGIN)
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        region = np.asarray(field.resize(size, Image.Resampling.BICUBIC, box=(left, top, right, bottom)))
        mask = labels[top:bottom, left:right] == cell.id
        if size != (mask.shape[1], mask.shape[0]):
            mask = np.asarray(Image.fromarray(mask.view(np.uint8) * np.uint8(255)).resize(size, Image.Resampling.BILINEAR)) >= 128
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            crops.append(region.copy()); continue
        tight = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        crop = region[tight].copy()
        crop[~mask[tight]] = 0
        crops.append(crop)
    return crops
