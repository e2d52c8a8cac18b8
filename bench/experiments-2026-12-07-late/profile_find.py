"""Where LearnedFinder.find_cells spends its CPU on held-out 640x480 TXL-PBC fields (one onnxruntime thread)."""
import sys, time, numpy as np
from pathlib import Path
from PIL import Image
from cellscreen.data.images import load_rgb
from cellscreen.screen.learned import LearnedFinder, _outlined
from cellscreen.screen.detect import find_cells
run, folder, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
f = LearnedFinder(run)
held = set(f.description["fields"]["held_out"])
files = [p for p in sorted(folder.iterdir()) if p.stem in held and Image.open(p).size == (640, 480)][:n]
parts = {k: [] for k in ("classical", "scale check (6 passes)", "peaks", "outlines", "whole")}
for p in files:
    rgb = load_rgb(p)
    t = time.process_time(); classical = find_cells(rgb); parts["classical"].append(time.process_time() - t)
    d = f.diameter(classical, None)
    t = time.process_time(); d, maps = f.checked_diameter(rgb, d); parts["scale check (6 passes)"].append(time.process_time() - t)
    t = time.process_time(); peaks, _ = f.peaks(rgb, d, maps=maps); parts["peaks"].append(time.process_time() - t)
    t = time.process_time(); _outlined(rgb.shape[:2], classical.labels > 0, peaks, [f.kinds[k] for k in peaks.kind], d, boxes=True); parts["outlines"].append(time.process_time() - t)
    t = time.process_time(); f.find_cells(rgb); parts["whole"].append(time.process_time() - t)
print(run, len(files), "fields:", ", ".join(f"{k} {1000*np.median(v):.0f} ms" for k, v in parts.items()))
