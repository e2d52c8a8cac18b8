import sys, json
sys.path.insert(0, "bench")
import numpy as np
from pathlib import Path
from label_audit import relabelled_cells, precision_recall, FILTERS
from cellscreen.labels.oof import read_oof, OutOfFold
from cellscreen.labels.audit import find_suspects
truth = relabelled_cells(Path("/work/shared/data/malaria-nih/relabelled-fuhad2020.csv"))
a = read_oof("runs/label-audit-r2/oof-round1.csv"); b = read_oof("runs/label-audit-r2/oof.csv")
assert a.paths == b.paths
for name, w in (("r1", 1.0), ("r2", 0.0), ("mean", 0.5)):
    oof = OutOfFold(a.paths, a.slides, a.labels, a.folds, a.classes, w * a.proba + (1 - w) * b.proba)
    res = {f: precision_recall({s.path for s in find_suspects(oof, filter_by=f)[0]}, truth) for f in FILTERS}
    given = oof.label_indices(); scores = oof.proba[np.arange(len(oof)), given]; order = np.argsort(scores, kind="stable")
    top = {n: precision_recall({oof.paths[i] for i in order[:n]}, truth) for n in (400, 450, 500, 550)}
    print(name, json.dumps(res)); print("  top", json.dumps(top))
