"""Red cells of real smears without malaria, cut as ``cellscreen screen`` cuts them: extra Uninfected cells.

    OMP_NUM_THREADS=1 CELLSCREEN_DATA=../shared/data python bench/smear_negatives.py --out runs/smear-negatives

Only the tuning fields are cut (Chula RBC-12's first 60 by number, every 10th TXL-PBC field by name: the
division of ``bench/screen_detection.py``), so that the other fields stay for measuring how many red cells
a model flags there (``bench/screen_specificity.py``). On each field the cells are found with
``detect.find_cells`` and the red cells ``screen`` counts (single, not cut by the border) are cut with
``cut.cut_cells`` at ``cut.field_scale`` of the diameter measured there: the NIH cells' scale, black outside
the outline. They are written as ``OUT/Uninfected/<set>_<field>_<cell>.png``, a class folder that training
takes as extra cells (``--set extra_train=OUT``). ``--per-field`` keeps at most that many cells of each
field (spread over the field), so that no crowded field outweighs the others.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from screen_specificity import chula_fields, txl_fields  # noqa: E402  (the same division of the fields)

from cellscreen.screen import cut  # noqa: E402
from cellscreen.screen.detect import find_cells  # noqa: E402

CLASS = "Uninfected"


def cut_field(path: Path, per_field: int | None) -> list[np.ndarray]:
    """The counted red cells of one field, cut at the training cells' scale."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    detection = find_cells(rgb)
    counted = [c for c in detection.cells if c.kind == "red" and c.single and not c.touches_border]
    if per_field and len(counted) > per_field:
        counted = [counted[i] for i in np.linspace(0, len(counted) - 1, per_field).round().astype(int)]
    return cut.cut_cells(rgb, detection.labels, counted, cut.field_scale(detection.cell_diameter))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write OUT/Uninfected/*.png into (must not exist)")
    parser.add_argument("--sets", default="chula,txl", help="comma-separated: chula, txl")
    parser.add_argument("--per-field", type=int, default=None, help="at most this many cells per field")
    args = parser.parse_args()
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
    folder = Path(args.out) / CLASS
    if folder.exists():
        raise SystemExit(f"{folder} exists already: give a new --out (nothing is overwritten)")
    folder.mkdir(parents=True)
    sets = {"chula": chula_fields, "txl": txl_fields}
    written = {}
    for name in args.sets.split(","):
        if name not in sets:
            raise SystemExit(f"unknown set {name!r}; choose from: {', '.join(sets)}")
        written[name] = 0
        for path in sets[name](root, "tuning"):
            for k, crop in enumerate(cut_field(path, args.per_field)):
                Image.fromarray(crop).save(folder / f"{name}_{path.stem}_{k:03d}.png")
                written[name] += 1
    print(f"{sum(written.values())} cells written into {folder}: "
          + ", ".join(f"{name} {n}" for name, n in written.items()))


if __name__ == "__main__":
    main()
