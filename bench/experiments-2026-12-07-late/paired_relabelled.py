"""Paired comparison of saved test predictions against the relabelled labels (exact McNemar test).

    python bench/experiments-2026-12-07-late/paired_relabelled.py RELABEL_FILE A/predictions.csv B/predictions.csv ...

Each file is an ``evaluate`` predictions file of the same cells; the truth is the folder's label with the
relabel file's decisions applied. Every pair is compared on the cells one model gets right and the other wrong.
"""

import itertools
import sys

import pandas as pd
from scipy.stats import binomtest

relabelled = pd.read_csv(sys.argv[1]).set_index("path").relabelled
runs = {path: pd.read_csv(path).set_index("path") for path in sys.argv[2:]}
first = next(iter(runs.values()))
folder_label = first["given_label"] if "given_label" in first else first["label"]
truth = folder_label.copy()
changed = truth.index.intersection(relabelled.index)
truth.loc[changed] = relabelled.loc[changed]
right = {path: runs[path].loc[truth.index, "predicted"] == truth for path in runs}
for path, ok in right.items():
    sens = ok[truth == "Parasitized"].mean()
    spec = ok[truth == "Uninfected"].mean()
    print(f"{path}: accuracy {ok.mean():.4f}, sensitivity {sens:.4f}, specificity {spec:.4f} "
          f"({len(ok)} cells, {len(changed)} relabelled)")
for a, b in itertools.combinations(right, 2):
    only_a, only_b = int((right[a] & ~right[b]).sum()), int((~right[a] & right[b]).sum())
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    print(f"{a} vs {b}: right only in the first {only_a}, only in the second {only_b}; McNemar exact p = {p:.3f}")
