"""Pooled out-of-fold predictions of two crossval runs, judged against the relabel file: accuracy, sensitivity,
specificity of each and an exact McNemar test on the cells one gets right and the other wrong."""
import csv, sys
from pathlib import Path
from scipy.stats import binomtest
R = "/work/shared/data/malaria-nih/relabelled-fuhad2020.csv"
rel = {r["path"]: r["relabelled"] for r in csv.DictReader(open(R))}
def load(run):
    out = {}
    for f in sorted(Path(run).glob("fold*/test/predictions.csv")):
        for r in csv.DictReader(open(f)):
            truth = rel.get(r["path"], r.get("given_label") or r["label"])
            out[r["path"]] = (truth == "Parasitized", float(r["p_Parasitized"]) >= 0.5)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
common = sorted(set(a) & set(b))
for name, d in ((sys.argv[1], a), (sys.argv[2], b)):
    y = [d[p][0] for p in common]; c = [d[p][1] for p in common]
    acc = sum(yy == cc for yy, cc in zip(y, c)) / len(y)
    sens = sum(cc for yy, cc in zip(y, c) if yy) / sum(y); spec = sum(not cc for yy, cc in zip(y, c) if not yy) / (len(y) - sum(y))
    print(f"{name}: {len(common)} cells, accuracy {acc:.4f}, sensitivity {sens:.4f}, specificity {spec:.4f}")
only_a = sum(a[p][0] == a[p][1] and b[p][0] != b[p][1] for p in common)
only_b = sum(b[p][0] == b[p][1] and a[p][0] != a[p][1] for p in common)
print(f"right only in the first: {only_a}, only in the second: {only_b}, exact McNemar p = {binomtest(only_a, only_a + only_b).pvalue:.3g}")
