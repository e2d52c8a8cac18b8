import time, numpy as np
from pathlib import Path
from cellscreen.serve.runtime import load_predictor
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
fp, q = load_predictor("malaria", engine="onnx", threads=1), load_predictor("malaria", engine="int8", threads=1)
chula = sorted(Path("/work/shared/data/smears/chula-rbc12/Dataset").glob("*.jpg"), key=lambda p: int(p.stem))[60:90]
tf, tq, d, flips, n, pos_f, pos_q = [], [], [], 0, 0, 0, 0
thr = fp.decision_threshold
for f in chula:
    rgb = load_rgb(f); det = find_cells(rgb)
    x = cut.model_batch(cut.cut_cells(rgb, det.labels, det.red, cut.field_scale(det.cell_diameter)), 64)
    for _ in range(2):
        c = time.process_time(); a = fp.predict(x)[:, 1]; tf.append(time.process_time() - c)
        c = time.process_time(); b = q.predict(x)[:, 1]; tq.append(time.process_time() - c)
    d.append(np.abs(a - b)); flips += int(((a >= thr) != (b >= thr)).sum()); n += len(x); pos_f += int((a >= thr).sum()); pos_q += int((b >= thr).sum())
d = np.concatenate(d)
print(f"threshold {thr:.3f}; cells {n}; CPU ms per field fp32 {1000*np.median(tf):.1f} int8 {1000*np.median(tq):.1f}; |dp| median {np.median(d):.4f} p99 {np.percentile(d,99):.3f} max {d.max():.3f}; calls differing {flips}; positive fp32 {pos_f} int8 {pos_q}")
