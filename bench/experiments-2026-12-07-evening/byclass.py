"""Share of labelled points beyond half a radius from the learned centre they pair with, by Chula class."""
import sys, numpy as np
from collections import Counter
from pathlib import Path
from cellscreen.data.sources import get_profile
from cellscreen.data.images import load_rgb
from cellscreen.screen.annotations import read_point_labels
from cellscreen.screen.learned import LearnedFinder
from scipy.optimize import linear_sum_assignment
run, which = sys.argv[1], sys.argv[2]
root = Path("/work/shared/data/smears/chula-rbc12")
finder = LearnedFinder(run); d = finder.description
complete = set(get_profile("chula-rbc12").fields.complete)
stems = [s for s in d["fields"]["held_out"] if s in complete] if which == "held" else d["fields"]["tuning"]
diam = 41.39
tot, far, miss = Counter(), Counter(), Counter()
for s in stems:
    rgb = load_rgb(root / "Dataset" / f"{s}.jpg")
    labs = read_point_labels(root / "Label" / f"{s}.txt")
    lab = np.array([c.centre for c in labs]).reshape(-1, 2)
    peaks, _ = finder.peaks(rgb, diam)
    cen = peaks.centre[peaks.kind == 0]
    D = np.linalg.norm(cen[:, None] - lab[None], axis=2)
    r, c = linear_sum_assignment(np.where(D < diam / 2, D, 1e6))
    paired = {j: D[i, j] for i, j in zip(r, c) if D[i, j] < diam / 2}
    for j, cell in enumerate(labs):
        tot[cell.label] += 1
        if j not in paired: miss[cell.label] += 1
        elif paired[j] > diam / 4: far[cell.label] += 1
for k in sorted(tot, key=lambda k: -tot[k]):
    print(f"class {k:>3}: {tot[k]:5d} labelled, {far[k]/tot[k]:.3f} paired beyond half radius, {miss[k]/tot[k]:.3f} unpaired within one radius")
