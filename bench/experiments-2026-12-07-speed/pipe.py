import time, sys, numpy as np
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from cellscreen.serve.runtime import load_predictor
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
p = load_predictor("malaria", engine="onnx")
chula = sorted(Path("/work/shared/data/smears/chula-rbc12/Dataset").glob("*.jpg"), key=lambda q: int(q.stem))[60:80]
data = []
for f in chula:
    rgb = load_rgb(f); det = find_cells(rgb); data.append((rgb, det, cut.field_scale(det.cell_diameter)))
def seq(rgb, det, s):
    red = det.red
    return p.predict_batched(cut.model_batch(cut.cut_cells(rgb, det.labels, red, s), 64), 256)
pool = ThreadPoolExecutor(1)
def piped(rgb, det, s, part):
    red = det.red; out = []
    for a in range(0, len(red), part):
        b = cut.model_batch(cut.cut_cells(rgb, det.labels, red[a:a + part], s), 64)
        out.append(pool.submit(p.predict_batched, b, 256))
    return np.concatenate([f.result() for f in out])
res = {k: [[], []] for k in ("seq", "p16", "p32", "p48")}
for rep in range(2):
    for rgb, det, s in data:
        for k in res:
            t, c = time.perf_counter(), time.process_time()
            r = seq(rgb, det, s) if k == "seq" else piped(rgb, det, s, int(k[1:]))
            res[k][0].append(time.perf_counter() - t); res[k][1].append(time.process_time() - c)
            if k == "seq": ref = r
            else: assert np.abs(r - ref).max() < 1e-5, np.abs(r - ref).max()
for k, (w, c) in res.items():
    print(k, "wall ms median %.1f  cpu ms median %.1f" % (1000 * np.median(w), 1000 * np.median(c)))
