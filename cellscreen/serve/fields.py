"""Whole smear fields sent to the service: which uploads are fields, and one field screened in memory.

An upload is either one cell, cut as the model's training cells were, or a whole field photographed through
the microscope.  ``kind=auto`` (the default) tells them apart by size: an image whose shorter side is at
least ``FIELD_CELLS_ACROSS`` times the side of the model's training images (its dataset profile's
``native_size``; an NIH malaria cell, about 130 px, when the profile does not say) is a field.  The NIH cells
are at most 244 px on their shorter side, and a 640x480 microscope field holds dozens of red cells.
``kind=cell`` and ``kind=field`` say it for every image of a request.  A leukemia model (trained on white
cells) takes only single cells here: its fields are screened by ``cellscreen screen --cells white``
(``field_refusal``).

A field goes through the ``screen`` command's own steps (``cellscreen.screen``): find the red and white
cells, cut each red cell at the training cells' scale, classify the cuts with the served model at its
decision threshold, count them as a thin film is read, and draw the overlay.  Nothing is written to disk; the
overlay comes back as a PNG data URL.

A field costs far more memory than its decoding (the label image, the work copies, the overlay), so it is
screened under the decode budget at ``FIELD_BYTES_PER_PIXEL`` bytes a pixel (``field_cost``).
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from cellscreen.data.images import ImageReadError, decode_image
from cellscreen.data.sources import PROFILES
from cellscreen.screen import count, cut, overlay, white
from cellscreen.screen.detect import find_cells
from cellscreen.screen.pipeline import FieldOptions, classify_red_cells

__all__ = ["KINDS", "FIELD_CELLS_ACROSS", "FIELD_BYTES_PER_PIXEL", "field_refusal", "field_min_side", "image_size",
           "kind_of", "field_cost", "field_problems", "screen_field_bytes", "screen_fields"]

KINDS = ("auto", "cell", "field")
FIELD_CELLS_ACROSS = 2.5  # an image this many training images across (shorter side) is a field
_NIH_CELL_SIDE = 130  # px, the malaria-nih profile's native size: the default when a model's dataset is unknown
# Peak bytes a pixel while a field is screened: decoding (``limits.decoding_cost``), the RGB array, the int32
# label image and its mapping back from the work copy, and the overlay: 28.6 measured on a 5312x2988 field
# (433 MB over the process's peak before it, 2026-12-07), with some room over it.
FIELD_BYTES_PER_PIXEL = 32


def field_refusal(description: dict) -> str | None:
    """Why the service does not screen whole fields with this model (None: it does): it classifies white cells."""
    dataset = description.get("dataset")
    if dataset in white.TRAINING_WHITE_CELLS:
        return (f"this model was trained on {dataset} white cells; whole fields are screened for them by "
                "`cellscreen screen MODEL FIELDS --cells white`: send single cells here")
    return None


def field_min_side(description: dict) -> int | None:
    """The shorter side, in pixels, from which ``kind=auto`` takes an image for a field, for this model (None
    for a model that does not screen fields here)."""
    if field_refusal(description) is not None:
        return None
    profile = PROFILES.get(description.get("dataset") or "")
    side = profile.native_size if profile is not None and profile.native_size else _NIH_CELL_SIDE
    return int(round(FIELD_CELLS_ACROSS * side))


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the image's header, or None when Pillow cannot read the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged or huge header is judged by the decoder, not here
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:  # any header Pillow refuses: the decoder names the problem later
        return None


def kind_of(size: tuple[int, int] | None, asked: str, min_side: int | None) -> str:
    """``"cell"`` or ``"field"``: what was ``asked``, or for ``auto`` what the image's ``size`` says (a cell
    when ``min_side`` is None).  An image whose header cannot be read goes the cell way, whose decoder says
    what is wrong with it."""
    if asked != "auto":
        return asked
    return "field" if size is not None and min_side is not None and min(size) >= min_side else "cell"


def field_cost(size: tuple[int, int] | None, data: bytes) -> int:
    """Bytes screening a field of ``size`` may hold at its peak (the file's own size if unreadable)."""
    return len(data) if size is None else max(len(data), size[0] * size[1] * FIELD_BYTES_PER_PIXEL)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def screen_field_bytes(data: bytes, predictor, *, max_pixels: int, cell_diameter: float | None = None,
                       batch_size: int = 256) -> dict:
    """Screen one encoded field with ``predictor``: its counts, parasitemia with its 95% interval, warnings,
    cells and overlay (a JSON-ready dict).  ``cell_diameter`` (pixels) fixes the red cells' size instead of
    measuring it.  Raises ``ImageReadError`` for a file that is not a readable image."""
    rgb = decode_image(data, max_pixels=max_pixels)[0]
    options = FieldOptions("", tuple(predictor.classes), predictor.positive_class, predictor.decision_threshold,
                           predictor.input_size, predictor.border_crop, predictor.interpolation, batch_size,
                           cell_diameter, None)
    detection = find_cells(rgb, cell_diameter=cell_diameter)
    scale = cut.field_scale(detection.cell_diameter, cell_diameter=cell_diameter)
    red, proba = classify_red_cells(rgb, detection, scale, options, predictor)
    names, positive = count.call_cells(proba, options.classes, options.positive_class, options.threshold)
    counts = count.count_field(detection.cells, [cell.id for cell, hit in zip(red, positive) if hit])
    pos = options.classes.index(options.positive_class) if options.positive_class in options.classes else None
    p_positive = {} if pos is None else {cell.id: float(p) for cell, p in zip(red, proba[:, pos])}
    colours = overlay.colours_for(detection.cells, p_positive)
    picture = overlay.draw_overlay(rgb, detection.labels, colours)
    height, width = rgb.shape[:2]
    del rgb
    detection.labels = None  # the largest array of a big field: let it go before the PNG is encoded
    called = {cell.id: name for cell, name in zip(red, names)}
    found = count.parasitemia(counts.positive, counts.red_counted)
    return {
        "kind": "field", "width": width, "height": height,
        "cell_diameter": round(float(detection.cell_diameter), 2), "scale": round(float(scale), 4),
        "positive_class": options.positive_class, "decision_threshold": float(options.threshold),
        "counts": {"red_counted": int(counts.red_counted), "positive": int(counts.positive),
                   "not_single": int(counts.flagged), "white": int(counts.white), "border": int(counts.border)},
        "parasitemia": None if found is None else {"percent": found.percent, "low": found.low, "high": found.high},
        "warnings": count.sample_warnings(counts),
        "cells": [{"id": int(cell.id), "kind": cell.kind,
                   "centre": [round(float(cell.centre[0]), 1), round(float(cell.centre[1]), 1)],
                   "box": [int(v) for v in cell.box], "area": int(cell.area), "single": bool(cell.single),
                   "touches_border": bool(cell.touches_border),
                   "counted": bool(cell.kind == "red" and cell.single and not cell.touches_border),
                   "class": called.get(cell.id), "p_positive": (None if cell.id not in p_positive
                                                                else round(p_positive[cell.id], 4))}
                  for cell in detection.cells],
        "overlay": _data_url(overlay.overlay_png(np.ascontiguousarray(picture))),
    }


def field_problems(fields: list[tuple[int, str, bytes, tuple[int, int] | None]], *, max_pixels: int,
                   budget_bytes: int, refusal: str | None = None) -> list[dict]:
    """The fields ``(index, name, data, size)`` that cannot be screened, each with its reason and answer
    status, found from their headers before any field is screened (every one, with the model's ``refusal``)."""
    if refusal is not None:
        return [{"index": index, "filename": name, "reason": refusal, "status": 422} for index, name, _, _ in fields]
    bad = []
    for index, name, data, size in fields:
        if size is None or size[0] * size[1] > max_pixels:
            try:
                decode_image(data, max_pixels=max_pixels)
                continue  # a header Pillow reads only whole: the decoder accepts it
            except ImageReadError as exc:
                reason = str(exc)
        elif field_cost(size, data) > budget_bytes:
            reason = (f"field too large to screen here: it needs about {field_cost(size, data) / 2**20:,.0f} MB, over "
                      f"the {budget_bytes / 2**20:,.0f} MB this server decodes at once")
        else:
            continue
        bad.append({"index": index, "filename": name, "reason": reason,
                    "status": 413 if "too large" in reason else 415})
    return bad


async def screen_fields(fields: list[tuple[int, str, bytes, tuple[int, int] | None]], predictor, budget, *,
                        max_pixels: int, cell_diameter: float | None,
                        still_wanted) -> tuple[dict[int, dict], list[dict]]:
    """Screen each field ``(index, name, data, size)`` in a worker thread, one at a time, each holding its
    ``field_cost`` of the shared decode ``budget``; the results by index, and the fields that turned out
    unreadable.  ``still_wanted()`` is awaited before each field (it raises when the client has gone)."""
    results, bad = {}, []
    for index, name, data, size in fields:
        cost = min(field_cost(size, data), budget.total)
        await budget.acquire(cost)
        try:
            await still_wanted()
            try:
                screened = await run_in_threadpool(screen_field_bytes, data, predictor, max_pixels=max_pixels,
                                                   cell_diameter=cell_diameter)
                results[index] = {"filename": name, **screened}
            except ImageReadError as exc:
                bad.append({"index": index, "filename": name, "reason": str(exc),
                            "status": 413 if "too large" in str(exc) else 415})
        finally:
            budget.release(cost)
    return results, bad
