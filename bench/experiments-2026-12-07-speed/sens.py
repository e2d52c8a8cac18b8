import numpy as np
from pathlib import Path
from cellscreen.serve.runtime import load_predictor
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
p = load_predictor("malaria", engine="onnx"); pos = 1
rng = np.random.default_rng(0)
chula = sorted(Path("/work/shared/data/smears/chula-rbc12/Dataset").glob("*.jpg"), key=lambda q: int(q.stem))[60:70]
ds = {k: [] for k in ("noise1", "shift_bicubic_vs_reduce")}
for f in chula:
    rgb = load_rgb(f); det = find_cells(rgb); s = cut.field_scale(det.cell_diameter)
    crops = cut.cut_cells(rgb, det.labels, det.red, s)
    a = cut.model_batch(crops, 64)
    pa = p.predict(a)[:, pos]
    noisy = np.clip(a.astype(int) + rng.integers(-1, 2, a.shape), 0, 255).astype(np.uint8)
    noisy[a == 0] = 0
    ds["noise1"].append(np.abs(p.predict(noisy)[:, pos] - pa))
    b = cut.model_batch(crops, 64, "bicubic")
    ds["shift_bicubic_vs_reduce"].append(np.abs(p.predict(b)[:, pos] - pa))
for k, v in ds.items():
    v = np.concatenate(v); print(k, "n", len(v), "max %.4f p99 %.4f median %.5f >0.01 %d" % (v.max(), np.percentile(v, 99), np.median(v), (v > 0.01).sum()))
