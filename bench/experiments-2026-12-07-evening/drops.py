import numpy as np
from PIL import Image
import cellscreen.screen.detect as d
def show(tag, rgb, ids=None):
    det = d.find_cells(rgb)
    s = min(2.0, d.WORK_DIAMETER / det.cell_diameter)
    work = d._resized(rgb, s)
    labels, white, diff = d._segment(work, det.cell_diameter * s)
    red = np.ones(labels.max() + 1, bool); red[0] = False; red[list(white)] = False
    grey = d._grey_pixels(diff, labels, red)
    drop = -diff
    inred = red[labels] & (drop[..., 1] > d.GREY_DARK)
    print(tag, "cells median drop", np.median(drop[inred], axis=0).round(1), "grey px drop median", np.median(drop[grey & (labels > 0)], axis=0).round(1) if (grey & (labels>0)).any() else None)
    g = drop[grey & (labels > 0)]
    if len(g):
        print("   grey px: dB/dG pct", np.percentile(g[:, 2] / g[:, 1], [10, 50, 90]).round(2), "dR/dG", np.percentile(g[:, 0] / g[:, 1], [10, 50, 90]).round(2))
    c = drop[inred]
    print("   cell px: dB/dG pct", np.percentile(c[:, 2] / c[:, 1], [10, 50, 90]).round(2), "dR/dG", np.percentile(c[:, 0] / c[:, 1], [10, 50, 90]).round(2))
for n in (17, 22):
    show(f"chula{n}", np.asarray(Image.open(f"../shared/data/smears/chula-rbc12/Dataset/{n}.jpg").convert("RGB")))
for n in "AB":
    show(f"synth{n}", np.load(f"runs/spec/synth_{n}.npy"))
