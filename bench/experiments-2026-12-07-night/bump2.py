"""TXL/Chula report part: flagged share with BUMP_RADIUS off/on (same model)."""
import sys, csv
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, "bench")
from screen_specificity import chula_fields, txl_fields
import cellscreen.screen.detect as d
from cellscreen.screen import cut, count
from cellscreen.screen.pipeline import FieldOptions, classify_red_cells
from cellscreen.serve.runtime import load_predictor
pred = load_predictor(sys.argv[4] if len(sys.argv) > 4 else "malaria")
opt = FieldOptions("", tuple(pred.classes), pred.positive_class, 0.5, pred.input_size, pred.border_crop, pred.interpolation, 256, None, None)
root = Path("../shared/data")
sets = sys.argv[1].split(",")
part = sys.argv[2]
radii = [tuple(float(v) for v in x.split(":")) for x in sys.argv[3].split(",")]
for s in sets:
    paths = txl_fields(root, part) if s == "txl" else chula_fields(root, part)
    tot = {r: [0, 0, 0] for r in radii}
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for r in radii:
            d.BUMP_RADIUS, d.PLATELET_STAIN = r
            det = d.find_cells(rgb)
            red, proba = classify_red_cells(rgb, det, cut.field_scale(det.cell_diameter), opt, pred)
            c = [(cell, p) for cell, p in zip(red, proba[:, 1]) if cell.single and not cell.touches_border]
            tot[r][0] += len(c); tot[r][1] += sum(p >= 0.5 for _, p in c)
            tot[r][2] += sum(not cell.single for cell in red)
    for r in radii:
        n, f, ns = tot[r]
        print(f"{s} {part} bump {r}: counted {n} flagged {f} = {100*f/n:.2f}%  not single {ns}", flush=True)
