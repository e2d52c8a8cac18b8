"""Why found cells go unmatched on Chula held-out fields: centre between half and one radius from a label,
near the border, or far from every label; and the peak heights of each."""
import sys, numpy as np
from pathlib import Path
from cellscreen.data.sources import get_profile
from cellscreen.data.images import load_rgb
from cellscreen.screen.annotations import read_point_labels
from cellscreen.screen.learned import LearnedFinder
from cellscreen.screen.score import score_image, match_cells
root = Path("/work/shared/data/smears/chula-rbc12")
complete = set(get_profile("chula-rbc12").fields.complete)
diam = 41.39
stats = {"fp_near": 0, "fp_border": 0, "fp_far": 0, "fn_near": 0, "fn_far": 0, "hits": 0, "found": 0, "lab": 0, "hits1r": 0}
far_scores = []
for run in sys.argv[1:]:
    finder = LearnedFinder(run)
    for s in finder.description["fields"]["held_out"]:
        if s not in complete: continue
        rgb = load_rgb(root / "Dataset" / f"{s}.jpg")
        labs = read_point_labels(root / "Label" / f"{s}.txt")
        lab = np.array([c.centre for c in labs]).reshape(-1, 2)
        det = finder.find_cells(rgb)
        cells = [c for c in det.cells if c.kind == "red"]
        cen = np.array([c.centre for c in cells]).reshape(-1, 2)
        pairs = match_cells(cen, lab, max_distance=diam / 4)
        pairs1 = match_cells(cen, lab, max_distance=diam / 2)
        mf, ml = {f for f, _ in pairs}, {l for _, l in pairs}
        stats["hits"] += len(pairs); stats["hits1r"] += len(pairs1)
        D = np.linalg.norm(cen[:, None] - lab[None], axis=2) if len(cen) and len(lab) else np.zeros((len(cen), len(lab)))
        for i, c in enumerate(cells):
            if i in mf: continue
            if c.touches_border: stats["fp_border"] += 1; continue   # spared unless matched
            stats["found"] += 0
            if len(lab) and D[i].min() < diam / 2: stats["fp_near"] += 1
            else: stats["fp_far"] += 1
        for j in range(len(lab)):
            if j in ml: continue
            if len(cen) and D[:, j].min() < diam / 2: stats["fn_near"] += 1
            else: stats["fn_far"] += 1
        stats["lab"] += len(lab)
print(stats)
