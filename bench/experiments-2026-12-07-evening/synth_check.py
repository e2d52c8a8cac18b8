import sys
import numpy as np
from pathlib import Path
sys.path.insert(0, ".")
from tests.screen.test_pipeline import confident_cells
from cellscreen.data.images import load_rgb
from cellscreen.screen.synthetic import smear_background, make_field
from cellscreen.serve.runtime import load_predictor
import cellscreen.screen.detect as d
real = Path("../shared/data")
predictor = load_predictor("malaria")
cells = real / "malaria-nih" / "cell_images"
smear = load_rgb(next((real / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("345b81c1-e33*")))
plan = {"A": ("C39", 18, 6, 0.5, (600, 800)), "B": ("C137", 20, 10, 0.35, (480, 640))}
for k, (name, (slide, n_neg, n_pos, scale, size)) in enumerate(plan.items()):
    paths = confident_cells(predictor, cells / "Uninfected", slide, n_neg) + confident_cells(predictor, cells / "Parasitized", slide, n_pos)
    field = make_field([load_rgb(p) for p in paths], ["Uninfected"] * n_neg + ["Parasitized"] * n_pos,
                       [False] * n_neg + [True] * n_pos, smear_background(smear, size, seed=k), scale=scale, seed=k)
    np.save(f"runs/spec/synth_{name}.npy", field.image)
    det = d.find_cells(field.image)
    for c in det.cells:
        near = min(field.cells, key=lambda p: np.hypot(p.centre[0]-c.centre[0], p.centre[1]-c.centre[1]))
        print(name, c.id, c.kind, c.single, f"grey {c.grey_share:.3f} mark {c.mark_share:.3f}", getattr(near, "label", None) or near)
