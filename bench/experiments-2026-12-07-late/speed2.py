"""CPU and wall ms per field of LearnedFinder.find_cells (one onnxruntime thread), several runs interleaved
field by field on the same held-out fields; also the network alone (heat_of at the measured scale)."""
import sys, time, numpy as np
from pathlib import Path
from PIL import Image
from cellscreen.data.images import load_rgb
from cellscreen.screen.learned import LearnedFinder
from cellscreen.screen.detect import find_cells
folder, n, size = Path(sys.argv[1]), int(sys.argv[2]), tuple(map(int, sys.argv[3].split("x")))
finders = {run: LearnedFinder(run) for run in sys.argv[4:]}
held = set(next(iter(finders.values())).description["fields"]["held_out"])
files = [p for p in sorted(folder.iterdir()) if p.stem in held and Image.open(p).size == size][:n]
cpu = {run: [] for run in finders}; net = {run: [] for run in finders}
for f in finders.values():
    f.find_cells(load_rgb(files[0]))
for p in files:
    rgb = load_rgb(p)
    d = find_cells(rgb).cell_diameter
    for run, f in finders.items():
        c0 = time.process_time(); f.find_cells(rgb); cpu[run].append(time.process_time() - c0)
        c0 = time.process_time(); f.heat_of(rgb, d * f.description["scale"].get("ratio", 1)); net[run].append(time.process_time() - c0)
for run in finders:
    print(f"{run}: {len(files)} fields {size}, find_cells median CPU {1000*np.median(cpu[run]):.0f} ms, "
          f"network once {1000*np.median(net[run]):.0f} ms")
