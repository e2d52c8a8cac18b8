"""Per fold of a k-fold manifest: the smear negatives with platelets (Uninfected) plus N parasitized NIH
training cells of that fold (never its test slides) with the same kind of platelet laid on them
(Parasitized), so that a platelet alone does not decide the class.

    python pairs.py FOLDS.csv SMEAR_FOLDER OUT --cells 1000 [--relabel FILE]
"""
import argparse, csv, os, sys
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, "bench")
import smear_negatives as sn
from screen_specificity import chula_fields, txl_fields
from cellscreen.screen.detect import find_cells
from cellscreen.data.images import load_rgb

parser = argparse.ArgumentParser()
parser.add_argument("folds"); parser.add_argument("smear"); parser.add_argument("out")
parser.add_argument("--cells", type=int, default=1000); parser.add_argument("--relabel")
parser.add_argument("--only-fold", type=int, default=None, help="no k-fold: a holdout split.csv's train subset")
args = parser.parse_args()
root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
platelets = []
for name, fields in (("chula", chula_fields), ("txl", txl_fields)):
    for path in fields(root, "tuning"):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        det = find_cells(rgb)
        boxes = sn.txl_platelet_boxes(path, rgb.shape[1], rgb.shape[0]) if name == "txl" else None
        platelets += sn.free_platelets(rgb, det, path.stem, boxes)
print(len(platelets), "platelets", flush=True)
rel = {r["path"]: r["relabelled"] for r in csv.DictReader(open(args.relabel))} if args.relabel else {}
rows = list(csv.DictReader(open(args.folds)))
images = root / "malaria-nih" / "cell_images"
key = "fold" if "fold" in rows[0] else "subset"
groups = sorted({r[key] for r in rows}) if key == "fold" else ["train"]
for g in groups:
    if key == "fold":
        pool = [r["path"] for r in rows if r[key] != g and rel.get(r["path"], r["label"]) == "Parasitized"]
        out = Path(args.out) / f"fold{g}"
    else:
        pool = [r["path"] for r in rows if r[key] == "train" and rel.get(r["path"], r["label"]) == "Parasitized"]
        out = Path(args.out) / "holdout"
    rng = np.random.default_rng(0)
    (out / "Parasitized").mkdir(parents=True)
    (out / "Uninfected").mkdir(parents=True)
    for f in Path(args.smear, "Uninfected").glob("*.png"):
        os.link(f, out / "Uninfected" / f.name)
    laid = 0
    for i in rng.permutation(len(pool)):
        if laid >= args.cells: break
        cell = load_rgb(images / pool[i])
        result = sn.lay_platelet(cell, platelets[rng.integers(len(platelets))].transmittance, rng)
        if result is not None:
            Image.fromarray(result).save(out / "Parasitized" / f"nih_platelet_{laid:04d}.png"); laid += 1
    print(g, laid, "parasitized cells with a platelet", flush=True)
