"""Analysis: per counted red cell features on tuning fields, joined with the model's probability."""
import csv, sys
from pathlib import Path
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import measure
sys.path.insert(0, "bench")
from screen_specificity import chula_fields, txl_fields
from cellscreen.screen.detect import find_cells, _stain

root = Path("../shared/data")
part = sys.argv[1]
p_of = {}
for row in csv.DictReader(open(f"runs/spec/base-{part}-cells.csv")):
    p_of[(row["set"], row["field"], int(row["cell_id"]))] = float(row["p_positive"])
out = csv.writer(open(f"runs/spec/features-{part}.csv", "w", newline=""))
out.writerow(["set", "field", "cell_id", "p", "area_rel", "fill", "neutral", "overlay", "axis_ratio", "solidity",
              "dark_rel", "redness"])
for set_name, fields in (("chula", chula_fields(root, part)), ("txl", txl_fields(root, part))):
    for path in fields:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        det = find_cells(rgb)
        diff = _stain(rgb, det.cell_diameter)  # pixel minus local background, float
        drop = -diff
        f = rgb.astype(np.float32)
        neutral = (drop[..., 1] > 25) & (drop[..., 0] >= 0.7 * drop[..., 1])
        overlay = ((f[..., 1] - np.maximum(f[..., 0], f[..., 2])) > 30) | ((f[..., 0] > 190) & (f[..., 1] > 170) & (f[..., 2] < 110))
        counted = [c for c in det.cells if c.kind == "red" and c.single and not c.touches_border]
        med_area = np.median([c.area for c in counted]) if counted else 1
        props = {p.label: p for p in measure.regionprops(det.labels)}
        darks = {c.id: float(drop[..., 1][det.labels == c.id].mean()) for c in counted}
        med_dark = np.median(list(darks.values())) if darks else 1
        for c in counted:
            m = det.labels == c.id
            p = props[c.id]
            dr = drop[m]
            redness = float(np.median(dr[:, 1] - dr[:, 0]))
            out.writerow([set_name, path.stem, c.id, p_of.get((set_name, path.stem, c.id), ""), f"{c.area/med_area:.3f}",
                          f"{c.ellipse_fill:.3f}", f"{neutral[m].mean():.3f}", f"{overlay[m].mean():.4f}",
                          f"{p.minor_axis_length/max(p.major_axis_length,1):.3f}", f"{p.solidity:.3f}",
                          f"{darks[c.id]/med_dark:.3f}", f"{redness:.1f}"])
