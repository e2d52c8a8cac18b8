"""The overlay picture of a screened field: every cell outlined in a colour that says what was decided.

Counted red cells go from green (surely negative) to red (surely positive)
with the positive class's probability; objects that are not single red cells
are outlined in yellow, cells cut by the border in grey (neither is counted),
and white cells in blue.  When the white cells are the ones classified
(``judged="white"``) they go from green to red by their blast probability and
the red cells, not judged, are outlined in blue-grey.  A photograph larger than ``MAX_SIDE`` is shrunk
first, so a 16-megapixel field's overlay stays a few megabytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

__all__ = ["MAX_SIDE", "LEGEND", "WHITE_LEGEND", "legend", "cell_colour", "colours_for", "draw_overlay", "overlay_png",
           "thumbnail_jpeg"]

MAX_SIDE = 2048  # longest side of an overlay, px
NEGATIVE, POSITIVE = (30, 200, 60), (235, 20, 20)
FLAGGED, BORDER, WHITE = (250, 210, 0), (150, 150, 150), (40, 110, 255)
UNJUDGED = (120, 140, 190)  # red cells when the white cells are the ones classified
LEGEND = {  # colour name -> meaning, for the report
    "green to red": "counted red cell, by the positive class's probability",
    "yellow": "flagged: not a single red cell (not counted)",
    "grey": "cut by the image border (not counted)",
    "blue": "white cell",
}
WHITE_LEGEND = {  # the same with the white cells classified (``--cells white``)
    "green to red": "counted white cell, by its blast probability",
    "grey": "white cell cut by the image border (not counted)",
    "blue-grey": "red cell (not classified)",
}


def legend(judged: str = "red") -> dict[str, str]:
    """Colour name -> meaning for overlays where the ``judged`` cells were classified."""
    return WHITE_LEGEND if judged == "white" else LEGEND


def cell_colour(cell, positive_probability: float | None, judged: str = "red") -> tuple[int, int, int]:
    """The outline colour of one cell (``kind``, ``single``, ``touches_border`` as ``FoundCell``) when the
    ``judged`` kind of cell was classified."""
    if judged == "white":
        if cell.kind != "white":
            return UNJUDGED
        if cell.touches_border:
            return BORDER
    elif cell.kind == "white":
        return WHITE
    elif cell.touches_border:
        return BORDER
    elif not cell.single:
        return FLAGGED
    p = 0.0 if positive_probability is None else float(np.clip(positive_probability, 0.0, 1.0))
    return tuple(int(v) for v in np.rint(np.add(NEGATIVE, p * np.subtract(POSITIVE, NEGATIVE))))


def draw_overlay(rgb: np.ndarray, labels: np.ndarray, colours: Mapping[int, tuple[int, int, int]],
                 max_side: int = MAX_SIDE) -> np.ndarray:
    """``rgb`` (shrunk to ``max_side`` if larger) with each labelled cell outlined in ``colours[id]``;
    labels without a colour are not drawn."""
    height, width = labels.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.Resampling.NEAREST))
    lut = np.zeros((int(labels.max(initial=0)) + 1, 3), np.uint8)
    drawn = np.zeros(len(lut), bool)
    for cell_id, colour in colours.items():
        if 0 < cell_id < len(lut):
            lut[cell_id], drawn[cell_id] = colour, True
    edge = find_boundaries(labels, mode="inner") & drawn[labels]
    thickness = max(1, round(max(labels.shape) / 800))  # outlines stay visible on large fields
    if thickness > 1:
        # thicken inwards only, within each cell, so neighbouring outlines keep their own colours
        grown = ndi.grey_dilation(np.where(edge, labels, 0), size=(thickness, thickness))
        edge = (grown == labels) & (labels > 0) & drawn[labels]
    out = np.array(rgb, dtype=np.uint8, copy=True)
    out[edge] = lut[labels[edge]]
    return out


def overlay_png(picture: np.ndarray) -> bytes:
    """PNG bytes of an overlay (fast compression: a field's overlay is written once and read rarely)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def thumbnail_jpeg(path, width: int = 480) -> bytes:
    """A small JPEG copy of an overlay file, for the report (a tenth of a PNG's bytes at this size)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((width, width * 4), Image.Resampling.BOX)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def colours_for(cells: Iterable, positive_probability: Mapping[int, float],
                judged: str = "red") -> dict[int, tuple[int, int, int]]:
    """``cell_colour`` of every cell, by id."""
    return {cell.id: cell_colour(cell, positive_probability.get(cell.id), judged) for cell in cells}
