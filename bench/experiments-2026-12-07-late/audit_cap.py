"""Where the relabelled cells sit in out-of-fold probabilities: why the audit's recall is capped.

    python bench/experiments-2026-12-07-late/audit_cap.py runs/label-audit/oof.csv ../shared/data/malaria-nih/relabelled-fuhad2020.csv

For each given label, the cells binned by the out-of-fold probability of their own (given) label, with how
many of them the relabelling changed; then the best precision and recall any flag-by-threshold rule on that
probability can reach. The relabel file is the yardstick only.
"""

import sys

import numpy as np
import pandas as pd

oof = pd.read_csv(sys.argv[1])
relabelled = set(pd.read_csv(sys.argv[2]).path)
oof["relabelled"] = oof.path.isin(relabelled)
classes = [c[2:] for c in oof.columns if c.startswith("p_")]
oof["p_given"] = [row[f"p_{row.label}"] for _, row in oof.iterrows()]
edges = [0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001]
print("| given label | p(given) | cells | relabelled |\n|---|---|---|---|")
for label in classes:
    part = oof[oof.label == label]
    for low, high in zip(edges, edges[1:]):
        cut = part[(part.p_given >= low) & (part.p_given < high)]
        print(f"| {label} | {low:g}-{min(high, 1):g} | {len(cut)} | {int(cut.relabelled.sum())} |")
order = oof.sort_values("p_given")
hits = np.cumsum(order.relabelled.to_numpy())
n = np.arange(1, len(order) + 1)
precision, recall = hits / n, hits / int(oof.relabelled.sum())
print("\nflag the N cells whose given label gets the least probability:")
for target in (0.85, 0.80):
    ok = precision >= target
    best = int(np.max(np.where(ok, n, 0)))
    print(f"  precision >= {target}: at most N = {best}, recall {recall[best - 1]:.3f}" if best else
          f"  precision >= {target}: never")
for flagged in (300, 400, 450, 500, 550, 700):
    print(f"  N = {flagged}: precision {precision[flagged - 1]:.3f}, recall {recall[flagged - 1]:.3f}")
confident = oof.relabelled & (oof.p_given >= 0.9)
print(f"\nrelabelled cells whose given label gets p >= 0.9: {int(confident.sum())} of {int(oof.relabelled.sum())}"
      f" (recall cap without them {1 - confident.sum() / oof.relabelled.sum():.3f})")
