"""Dump what screening finds and calls on a fixed set of fields, for before/after comparison."""
import sys, json, time, pickle
from pathlib import Path
import numpy as np
from cellscreen.serve.runtime import load_predictor
from cellscreen.screen import pipeline, cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
out = sys.argv[1]
p = load_predictor("malaria", engine="onnx")
root = Path("/work/shared/data/smears")
chula = sorted(root.glob("chula-rbc12/Dataset/*.jpg"), key=lambda q: int(q.stem))[60:120]
txl = sorted(root.glob("txl-pbc/TXL_PBC/images/train/*.jpg"))
txl = [q for q in txl if q not in set(txl[::10])][:40]
opts = pipeline.FieldOptions("/tmp/speed/refout", tuple(p.classes), p.positive_class, 0.5, p.input_size, p.border_crop, p.interpolation, 256, None, None)
res = {}
cpu = 0.0
for f in chula + txl:
    rgb = load_rgb(f)
    det = find_cells(rgb)
    scale = cut.field_scale(det.cell_diameter)
    t = time.process_time()
    red, proba = pipeline.classify_red_cells(rgb, det, scale, opts, p)
    cpu += time.process_time() - t
    res[str(f)] = dict(cells=[(c.id, c.kind, c.box, c.area, c.single, c.touches_border, c.centre) for c in det.cells],
                       diameter=det.cell_diameter, proba=proba, labels_sum=int(det.labels.astype(np.int64).sum()))
pickle.dump(res, open(out, "wb"))
print("classify_red_cells cpu s", cpu)
