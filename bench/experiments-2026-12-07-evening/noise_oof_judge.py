import sys, json
sys.path.insert(0, "bench")
import numpy as np
from crossval import load_judge, label_set_scores
from cellscreen.labels.oof import read_oof
R = "/work/shared/data/malaria-nih/relabelled-fuhad2020.csv"
judge = load_judge([R], dataset="malaria-nih", data="/work/shared/data")
for f in sys.argv[1:]:
    oof = read_oof(f)
    def pack(rows):
        return {"paths": [oof.paths[i] for i in rows], "given": [oof.labels[i] for i in rows],
                "tested": [oof.labels[i] for i in rows], "proba": oof.proba[rows], "classes": oof.classes,
                "positive": "Parasitized", "threshold": 0.5}
    folds = np.array(oof.folds)
    per = [label_set_scores(pack(np.flatnonzero(folds == k)), judge) for k in sorted(set(oof.folds))]
    print(f, json.dumps(label_set_scores(pack(np.arange(len(oof))), judge)))
    for k, p in enumerate(per):
        print("  fold", k, {x: p[x] for x in ("given_accuracy", "given_roc_auc", "judged_accuracy", "judged_roc_auc")})
