import importlib.util, sys, time, numpy as np
sys.path.insert(0, "/work/main/bench")
from pathlib import Path
from screen_detection import big_field_image
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
A = load("/tmp/speed-base/cellscreen/screen/detect.py", "detect_base")
B = load("/work/main/cellscreen/screen/detect.py", "detect_new")
rgb = big_field_image(Path("/work/shared/data"))
ta, tb = [], []
for _ in range(3):
    t = time.process_time(); a = A.find_cells(rgb); ta.append(time.process_time() - t)
    t = time.process_time(); b = B.find_cells(rgb); tb.append(time.process_time() - t)
same = [(c.id, c.kind, c.box, c.area, c.single) for c in a.cells] == [(c.id, c.kind, c.box, c.area, c.single) for c in b.cells] and np.array_equal(a.labels, b.labels)
print(f"big field find_cells CPU ms: base {1000*min(ta):.0f} (runs {[round(1000*x) for x in ta]}), new {1000*min(tb):.0f} (runs {[round(1000*x) for x in tb]}); identical {same}")
