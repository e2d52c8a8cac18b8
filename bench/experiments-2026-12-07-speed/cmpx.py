import sys, time, numpy as np
sys.path.insert(0, "/tmp/speed")
from pathlib import Path
from exact import cut_cells_fast
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
chula = sorted(Path("/work/shared/data/smears/chula-rbc12/Dataset").glob("*.jpg"), key=lambda q: int(q.stem))[60:80]
tb = tn = 0; diff = 0; n = 0; shapes = 0
for f in chula:
    rgb = load_rgb(f); det = find_cells(rgb); s = cut.field_scale(det.cell_diameter); red = det.red
    t = time.process_time(); a = cut.cut_cells(rgb, det.labels, red, s); tb += time.process_time() - t
    t = time.process_time(); b = cut_cells_fast(rgb, det.labels, red, s); tn += time.process_time() - t
    for x, y in zip(a, b):
        n += 1
        if x.shape != y.shape: shapes += 1; continue
        diff = max(diff, int(np.abs(x.astype(int) - y).max()))
print("cells", n, "shape mismatches", shapes, "max pixel diff", diff, "ms/field base %.1f new %.1f" % (1000*tb/len(chula), 1000*tn/len(chula)))
