import sys, time, pickle, numpy as np
sys.path.insert(0, "/tmp/speed")
from pathlib import Path
from direct import model_cells
from cellscreen.serve.runtime import load_predictor
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
p = load_predictor("malaria", engine="onnx")
root = Path("/work/shared/data/smears")
chula = sorted(root.glob("chula-rbc12/Dataset/*.jpg"), key=lambda q: int(q.stem))[60:90]
pos = p.classes.index("Parasitized")
for ov in [int(a) for a in sys.argv[1:]]:
    dmax, dall, flips, n, pix, tb, tn = 0, [], 0, 0, [], 0, 0
    for f in chula:
        rgb = load_rgb(f); det = find_cells(rgb); s = cut.field_scale(det.cell_diameter)
        red = det.red
        t = time.process_time(); a = cut.model_batch(cut.cut_cells(rgb, det.labels, red, s), 64); tb += time.process_time() - t
        t = time.process_time(); b = model_cells(rgb, det.labels, red, s, 64, oversample=ov); tn += time.process_time() - t
        pa, pb = p.predict(a)[:, pos], p.predict(b)[:, pos]
        d = np.abs(pa - pb); dall.append(d); flips += int(((pa >= 0.5) != (pb >= 0.5)).sum()); n += len(red)
        pix.append(np.abs(a.astype(int) - b.astype(int)).reshape(len(red), -1))
    d = np.concatenate(dall); px = np.concatenate(pix)
    print(f"oversample {ov}: cells {n} |dp| max {d.max():.4f} p99 {np.percentile(d,99):.4f} median {np.median(d):.5f} >0.01: {(d>0.01).sum()} flips {flips}; pixel |d| mean {px.mean():.2f} p99 {np.percentile(px,99):.0f}; ms/field base {1000*tb/len(chula):.1f} new {1000*tn/len(chula):.1f}")
