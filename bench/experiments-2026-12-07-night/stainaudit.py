import sys, csv, numpy as np
sys.path.insert(0, "bench")
from cam_pointing import stained_body
from cellscreen.data.images import load_rgb
from scipy import ndimage
root = "/work/shared/data/malaria-nih/cell_images/"
oof = list(csv.DictReader(open("runs/label-audit/oof.csv")))
rel = {r["path"]: r["relabelled"] for r in csv.DictReader(open("/work/shared/data/malaria-nih/relabelled-fuhad2020.csv"))}
out = open("/tmp/stain-uninf.csv", "w"); w = csv.writer(out); w.writerow(["path", "p_par", "flipped", "body", "maxstain"])
for r in oof:
    if r["label"] != "Uninfected": continue
    rgb = load_rgb(root + r["path"])
    body = stained_body(rgb)
    c = rgb.astype(np.int32); cell = ndimage.binary_fill_holes(c.max(-1) > 25); inner = ndimage.binary_erosion(cell, iterations=4)
    g, b = c[..., 1], c[..., 2]
    score = 0.0
    if inner.sum() >= 100:
        drop = (np.median(g[inner]) - g) * (b > g + 20) * inner
        score = float(np.sort(drop.ravel())[-40])  # the 40th darkest purple pixel's green drop
    w.writerow([r["path"], r["p_Parasitized"], int(r["path"] in rel and rel[r["path"]] != r["label"]), int(body is not None), f"{score:.1f}"])
out.close()
