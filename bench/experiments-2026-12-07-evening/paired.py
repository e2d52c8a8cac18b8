import sys, pandas as pd
from scipy.stats import binomtest
a = pd.read_csv(sys.argv[1]).set_index("path"); b = pd.read_csv(sys.argv[2]).set_index("path")
b = b.loc[a.index]
ra = a.label == a.predicted; rb = b.label == b.predicted
only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
print(f"accuracy {ra.mean():.4f} vs {rb.mean():.4f}; right only in first {only_a}, only in second {only_b}; "
      f"McNemar exact p = {binomtest(only_a, only_a + only_b).pvalue:.3f}")
for label in ("Parasitized", "Uninfected"):
    m = a.label == label
    print(f"  {label}: {ra[m].mean():.4f} vs {rb[m].mean():.4f}")
