import sys
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, "bench")
from screen_specificity import chula_fields, txl_fields
import cellscreen.screen.detect as d
from cellscreen.screen import cut, count
from cellscreen.screen.pipeline import FieldOptions, classify_red_cells
from cellscreen.serve.runtime import load_predictor
pred = load_predictor("malaria")
opt = FieldOptions("", tuple(pred.classes), pred.positive_class, 0.5, pred.input_size, pred.border_crop, pred.interpolation, 256, None, None)
root = Path("../shared/data")
fields = [(p, np.asarray(Image.open(p).convert("RGB"))) for p in chula_fields(root, "tuning") + txl_fields(root, "tuning")[::2]]
d.GREY_SHARE = 1.0
for margin in (0.2, 0.25, 0.35):
    d.GREY_MARGIN = margin
    rows = []
    for path, rgb in fields:
        det = d.find_cells(rgb)
        red, proba = classify_red_cells(rgb, det, cut.field_scale(det.cell_diameter), opt, pred)
        for c, p in zip(red, proba[:, 1]):
            if c.single and not c.touches_border:
                rows.append(("txl" if "chula" not in str(path) else "chula", c.grey_share, p >= 0.5))
    rows = np.array(rows, dtype=object)
    for s in ("chula", "txl"):
        r = rows[rows[:, 0] == s]
        g = r[:, 1].astype(float); f = r[:, 2].astype(bool)
        for share in (0.02, 0.03, 0.05, 0.1):
            keep = g <= share
            print(f"margin {margin} share {share} {s}: counted {keep.sum()}/{len(g)} flagged {(f & keep).sum()} = {100*(f&keep).sum()/keep.sum():.2f}%", flush=True)
