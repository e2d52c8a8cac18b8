import numpy as np
from PIL import Image

MARGIN = 3

def model_cells(rgb, labels, cells, scale, size, crop_pixels=0, oversample=2):
    """(N, size, size, 3): each cell as cut_cell at ``scale`` then model_batch, sampled in one resize."""
    height, width = labels.shape
    out = np.zeros((len(cells), size, size, 3), np.uint8)
    side = size * oversample
    for k, cell in enumerate(cells):
        x0, y0, x1, y1 = cell.box
        # the region and its upscaled grid, as cut_cell makes them
        top, left = max(0, y0 - 2), max(0, x0 - 2)
        bottom, right = min(height, y1 + 2), min(width, x1 + 2)
        wide, high = max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))
        rx, ry = (right - left) / wide, (bottom - top) / high  # source px per upscaled px
        own = labels[y0:y1, x0:x1] == cell.id
        cols, rows = np.flatnonzero(own.any(axis=0)) + x0, np.flatnonzero(own.any(axis=1)) + y0
        if len(cols) == 0:
            continue
        # upscaled pixel i (centre left + (i + 0.5) r - 0.5) is inside when within half a pixel of the cell's pixels
        c0 = int(np.ceil((cols[0] - left) / rx - 0.5)); c1 = int(np.floor((cols[-1] + 1 - left) / rx - 0.5))
        r0 = int(np.ceil((rows[0] - top) / ry - 0.5)); r1 = int(np.floor((rows[-1] + 1 - top) / ry - 0.5))
        c1, r1 = max(c1, c0), max(r1, r0)
        wc, hc = c1 - c0 + 1, r1 - r0 + 1
        if crop_pixels > 0 and hc > 2 * crop_pixels and wc > 2 * crop_pixels:
            c0, r0, wc, hc = c0 + crop_pixels, r0 + crop_pixels, wc - 2 * crop_pixels, hc - 2 * crop_pixels
        square = max(wc, hc)
        sq_c0, sq_r0 = c0 - (square - wc) // 2, r0 - (square - hc) // 2
        # the square in field coordinates (pixel edges)
        bx0, by0 = left + sq_c0 * rx, top + sq_r0 * ry
        bx1, by1 = bx0 + square * rx, by0 + square * ry
        # the masked source: the cell's own pixels, black elsewhere, covering the square and a margin
        sx0, sy0 = int(np.floor(bx0)) - MARGIN, int(np.floor(by0)) - MARGIN
        sx1, sy1 = int(np.ceil(bx1)) + MARGIN, int(np.ceil(by1)) + MARGIN
        patch = np.zeros((sy1 - sy0, sx1 - sx0, 3), np.uint8)
        ya, yb, xa, xb = max(sy0, 0), min(sy1, height), max(sx0, 0), min(sx1, width)
        inside = labels[ya:yb, xa:xb] == cell.id
        patch[ya - sy0:yb - sy0, xa - sx0:xb - sx0][inside] = rgb[ya:yb, xa:xb][inside]
        picture = Image.fromarray(patch).resize((side, side), Image.Resampling.BICUBIC,
                                                box=(bx0 - sx0, by0 - sy0, bx1 - sx0, by1 - sy0))
        pixels = np.asarray(picture)
        if oversample > 1:
            pixels = pixels.reshape(size, oversample, size, oversample, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        out[k] = pixels
    return out
