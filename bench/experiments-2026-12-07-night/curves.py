import sys, csv, numpy as np, subprocess, os
from pathlib import Path
from cellscreen.serve.runtime import load_predictor
kept = np.load("runs/spec/report-cells-2.npz")
R = "/work/shared/data/malaria-nih/relabelled-fuhad2020.csv"
for model in sys.argv[1:]:
    pred = load_predictor(model)
    pos = list(pred.classes).index(pred.positive_class)
    smear = {s: pred.predict_batched(kept[f"{s}_pixels"], 256)[:, pos] for s in ("chula", "txl")}
    nih = {}
    for subset in ("val", "test"):
        out = f"/tmp/plt/eval-{Path(model).name}-{subset}"
        if not Path(out, "predictions.csv").exists():
            subprocess.run([".venv/bin/cellscreen", "evaluate", model, "-d", "malaria-nih", "--split", "runs/spec/split.csv",
                            "--subset", subset, "--relabel", R, "--out", out, "-q"], check=True, capture_output=True)
        rows = list(csv.DictReader(open(f"{out}/predictions.csv")))
        nih[subset] = (np.array([r["label"] == "Parasitized" for r in rows]), np.array([float(r["p_Parasitized"]) for r in rows]))
    print(model)
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        line = f"  t={t:.1f}"
        for subset in ("val", "test"):
            y, p = nih[subset]; c = p >= t
            line += f"  {subset} acc {(c == y).mean():.4f} sens {c[y].mean():.4f} spec {(~c[~y]).mean():.4f}"
        for s, p in smear.items():
            line += f"  {s} {100 * (p >= t).mean():.2f}%"
        print(line, flush=True)
