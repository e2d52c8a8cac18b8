"""Experiment: other ways to fill the Taleqani window where it runs past a small field."""
import sys
import numpy as np
from PIL import Image
from cellscreen.screen import white

mode = sys.argv[4]

def framed(rgb, cell, white_cut, scale):
    side = white_cut.frame
    reach = side / scale
    height, width = rgb.shape[:2]
    if mode == "shrink":  # the window no larger than the field: cells shown larger than in training
        reach = min(reach, height, width)
    cx, cy = cell.centre
    span = max(1, int(round(reach)))
    x0 = int(round(cx - reach / 2)); y0 = int(round(cy - reach / 2))
    if mode == "shrink":
        x0 = min(max(0, x0), width - span); y0 = min(max(0, y0), height - span)
    top, left, bottom, right = max(0, y0), max(0, x0), min(height, y0 + span), min(width, x0 + span)
    if mode == "background":
        from cellscreen.screen.synthetic import smear_background
        window = smear_background(rgb, (span, span), seed=0)
        window[top - y0:bottom - y0, left - x0:right - x0] = rgb[top:bottom, left:right]
    else:
        window = np.ascontiguousarray(rgb[top:bottom, left:right])
    resample = Image.Resampling.BOX if span > side else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(window).resize((side, side), resample))

white._context_frame = framed
from cellscreen.screen.pipeline import screen
print(mode, screen(sys.argv[1], [sys.argv[2]], sys.argv[3], cells="white", workers=0, progress=False, overwrite=True))
