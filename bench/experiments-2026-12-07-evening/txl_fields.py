"""Per-field recall of red cells on TXL-PBC held-out fields, with the field's size and the scale the finder used."""
import sys, numpy as np
from pathlib import Path
from collections import defaultdict
from cellscreen.data.images import load_rgb
from cellscreen.screen.annotations import read_yolo_boxes
from cellscreen.screen.learned import LearnedFinder
from cellscreen.screen.detect import find_cells
from cellscreen.screen.score import score_image, box_match_distance

run, n = sys.argv[1], int(sys.argv[2])
root = Path("/work/shared/data/smears/txl-pbc/TXL_PBC")
finder = LearnedFinder(run)
held = finder.description["fields"]["held_out"][::max(1, 301 // n)][:n]
by = defaultdict(list)
for s in held:
    img = next((root / "images/train").glob(f"{s}.*"))
    rgb = load_rgb(img)
    lab = read_yolo_boxes(root / "labels/train" / f"{s}.txt", width=rgb.shape[1], height=rgb.shape[0])
    classical = find_cells(rgb)
    diam = finder.diameter(classical, None)
    reds = [c for c in lab if c.kind == "red"]
    box = np.median([np.sqrt((c.box[2]-c.box[0])*(c.box[3]-c.box[1])) for c in reds]) if reds else float("nan")
    det = finder.find_cells(rgb)
    sc = score_image(det.cells, lab, kind="red", max_distance=box_match_distance(lab, kind="red"))
    sc0 = score_image(det.cells, lab, kind="red", max_distance=box_match_distance(lab, kind="red"), min_iou=0)
    key = f"{rgb.shape[1]}x{rgb.shape[0]}"
    by[key].append((sc.found, sc.labelled, sc.hits, sc0.hits, diam / box))
    print(s, key, f"found {sc.found} lab {sc.labelled} hits {sc.hits} hits-noiou {sc0.hits} diam/box {diam/box:.2f}", flush=True)
for key, v in by.items():
    v = np.array(v)
    f, l, h, h0 = v[:, :4].sum(0)
    print(key, len(v), f"P {h/f:.3f} R {h/l:.3f} F1 {2*h/(f+l):.3f} (no IoU {2*h0/(f+l):.3f}) diam/box median {np.median(v[:,4]):.2f} q10 {np.quantile(v[:,4],.1):.2f} q90 {np.quantile(v[:,4],.9):.2f}")
