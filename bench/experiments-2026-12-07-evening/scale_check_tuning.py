"""On a run's TXL tuning fields: how often the scale check leaves a right measure alone and mends a wrong one."""
import sys, time, numpy as np
from pathlib import Path
from cellscreen.data.images import load_rgb
from cellscreen.screen.annotations import read_yolo_boxes
from cellscreen.screen.detect import find_cells
from cellscreen.screen.learned import LearnedFinder
run, part = sys.argv[1], sys.argv[2]
finder = LearnedFinder(run)
root = Path("/work/shared/data/smears/txl-pbc/TXL_PBC")
rows, times = [], []
for s in finder.description["fields"][part]:
    img = next((root / "images/train").glob(s + ".*"))
    rgb = load_rgb(img)
    lab = read_yolo_boxes(root / "labels/train" / f"{s}.txt", width=rgb.shape[1], height=rgb.shape[0])
    sides = [np.sqrt((c.box[2]-c.box[0])*(c.box[3]-c.box[1])) for c in lab if c.kind == "red"]
    if not sides: continue
    d = finder.diameter(find_cells(rgb), None)
    t = time.process_time(); chosen, _ = finder.checked_diameter(rgb, d); times.append(time.process_time() - t)
    rows.append((np.median(sides) / d, chosen / d))
rows = np.array(rows)
right = (rows[:, 0] > 0.7) & (rows[:, 0] < 1.4)
print(f"{len(rows)} fields; measure right (0.7-1.4 of the boxes): {right.sum()}, of which moved: {(rows[right, 1] != 1).sum()}")
for truth, m in rows[~right]: print(f"  measure off: boxes/measure {truth:.2f}, chosen multiple {m:.2f}")
for truth, m in rows[right & (rows[:, 1] != 1)]: print(f"  moved wrongly? boxes/measure {truth:.2f}, chosen multiple {m:.2f}")
print(f"check CPU time per field: median {1000*np.median(times):.0f} ms")
