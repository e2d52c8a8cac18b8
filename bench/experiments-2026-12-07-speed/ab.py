"""Interleaved A/B of find_cells: base tree vs working tree, CPU ms per field (min of repeats, summed)."""
import importlib.util, sys, time, numpy as np
from pathlib import Path
from cellscreen.data.images import load_rgb
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
A = load("/tmp/speed-base/cellscreen/screen/detect.py", "detect_base")
B = load("/work/main/cellscreen/screen/detect.py", "detect_new")
root = Path("/work/shared/data/smears")
chula = sorted(root.glob("chula-rbc12/Dataset/*.jpg"), key=lambda q: int(q.stem))[60:60 + int(sys.argv[1])]
txl = sorted(root.glob("txl-pbc/TXL_PBC/images/train/*.jpg")); txl = [q for q in txl if q not in set(txl[::10])][:int(sys.argv[1])]
for name, paths in (("chula", chula), ("txl", txl)):
    ta, tb = [], []
    for f in paths:
        rgb = load_rgb(f); a = []; b = []
        for _ in range(3):
            t = time.process_time(); A.find_cells(rgb); a.append(time.process_time() - t)
            t = time.process_time(); B.find_cells(rgb); b.append(time.process_time() - t)
        ta.append(min(a)); tb.append(min(b))
    print(f"{name}: base {1000*np.median(ta):.1f} ms, new {1000*np.median(tb):.1f} ms CPU per field (median of per-field min of 3), ratio {np.sum(tb)/np.sum(ta):.3f}")
