"""Compare find_cells of the working tree with the base run's (ref-base.pkl): cells and labels identical?"""
import pickle, time, sys, numpy as np
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
ref = pickle.load(open("/tmp/speed/ref-base.pkl", "rb"))
same = diff = 0; cpu = 0.0; msgs = []
for f, r in ref.items():
    rgb = load_rgb(f)
    t = time.process_time(); det = find_cells(rgb); cpu += time.process_time() - t
    cells = [(c.id, c.kind, c.box, c.area, c.single, c.touches_border, c.centre) for c in det.cells]
    ok = cells == r["cells"] and int(det.labels.astype(np.int64).sum()) == r["labels_sum"] and det.cell_diameter == r["diameter"]
    same += ok; diff += not ok
    if not ok: msgs.append(f"{f}: {len(cells)} vs {len(r['cells'])} cells, diameter {det.cell_diameter} vs {r['diameter']}")
print(f"fields identical {same}, differing {diff}; find_cells CPU ms/field {1000*cpu/len(ref):.1f}")
print("\n".join(msgs[:10]))
