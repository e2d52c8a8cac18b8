import time, numpy as np, importlib.util, sys
from PIL import Image
from pathlib import Path
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
old, new = load('/tmp/detect_old.py', 'old'), load('/tmp/detect_new.py', 'new')
paths = sorted(Path('/work/shared/data/smears/chula-rbc12/Dataset').glob('*.jpg'), key=lambda p:int(p.stem))[60:90]
imgs=[np.asarray(Image.open(p).convert('RGB')) for p in paths]
res = {'old': [], 'new': []}
for r in range(4):
    for name, m in (('old', old), ('new', new)):
        t=time.perf_counter()
        for im in imgs: m.find_cells(im)
        res[name].append((time.perf_counter()-t)/len(imgs)*1000)
print({k: ['%.1f' % v for v in vs] for k, vs in res.items()})
