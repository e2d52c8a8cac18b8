"""CPU and wall time per field of LearnedFinder.find_cells (one onnxruntime thread), median over fields."""
import sys, time, numpy as np
from pathlib import Path
from PIL import Image
from cellscreen.data.images import load_rgb
from cellscreen.screen.learned import LearnedFinder
run, folder, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
size = tuple(map(int, sys.argv[4].split("x"))) if len(sys.argv) > 4 else None
finder = LearnedFinder(run)
held = set(finder.description["fields"]["held_out"])
files = [p for p in sorted(folder.iterdir()) if p.stem in held and (size is None or Image.open(p).size == size)][:n]
cpu, wall = [], []
finder.find_cells(load_rgb(files[0]))
for p in files:
    rgb = load_rgb(p)
    t0, c0 = time.perf_counter(), time.process_time()
    finder.find_cells(rgb)
    wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
print(f"{run}: {len(files)} fields {size}, median CPU {1000*np.median(cpu):.0f} ms, wall {1000*np.median(wall):.0f} ms")
