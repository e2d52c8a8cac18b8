"""Red cells of real smears without malaria, cut as ``cellscreen screen`` cuts them: extra Uninfected cells.

    OMP_NUM_THREADS=1 CELLSCREEN_DATA=../shared/data python bench/smear_negatives.py --out runs/smear-negatives \
        --platelets 1000

Only the tuning fields are used (Chula RBC-12's first 60 by number, every 10th TXL-PBC field by name: the
division of ``bench/screen_detection.py``), so that the other fields stay for measuring how many red cells
a model flags there (``bench/screen_specificity.py``). On each field the cells are found with
``detect.find_cells`` and the red cells ``screen`` counts (single, not cut by the border) are cut with
``cut.cut_cells`` at ``cut.field_scale`` of the diameter measured there: the NIH cells' scale, black outside
the outline. They are written as ``OUT/Uninfected/<set>_<field>_<cell>.png``, a class folder that training
takes as extra cells (``--set extra_train=OUT``).

A platelet lying on a red cell is what a malaria model most often mistakes for a parasite on these fields:
both are a small purple body on a pink cell. Real ones are few, so ``--platelets N`` also writes N cells
with a platelet laid on them (``OUT/Uninfected/<set>_platelet_<k>.png``, half from each set). The
platelets are taken from the same tuning fields: TXL-PBC's labelled platelet boxes, and on Chula (which
labels none) the small purple blobs the finder leaves out, both only where they lie free on the
background. Each is laid as light passes through two layers, by multiplying the cell's pixels with the
platelet's transmittance (its pixels over the field's background colour), at the cells' scale, turned and
flipped at random, at a random place inside the cell.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import measure

sys.path.insert(0, str(Path(__file__).parent))
from screen_specificity import chula_fields, txl_fields  # noqa: E402  (the same division of the fields)

from cellscreen.screen import cut  # noqa: E402
from cellscreen.screen.annotations import read_yolo_boxes  # noqa: E402
from cellscreen.screen.detect import Detection, find_cells  # noqa: E402

CLASS = "Uninfected"
PURPLE = 25.0  # blue minus green above the red cells' own (0-255): a platelet's chromatin
PLATELET_AREA = (0.01, 0.25)  # a free platelet's area, as shares of a red cell's
FREE = 0.2  # a platelet is free when at most this share of it lies on or next to a cell


def counted_cells(rgb: np.ndarray, detection: Detection, per_field: int | None) -> list[np.ndarray]:
    """The counted red cells of one field, cut at the training cells' scale."""
    counted = [c for c in detection.cells if c.kind == "red" and c.single and not c.touches_border]
    if per_field and len(counted) > per_field:
        counted = [counted[i] for i in np.linspace(0, len(counted) - 1, per_field).round().astype(int)]
    return cut.cut_cells(rgb, detection.labels, counted, cut.field_scale(detection.cell_diameter))


def _purple(rgb: np.ndarray, detection: Detection) -> np.ndarray:
    """Pixels far bluer than green, above the field's red cells."""
    pixels = rgb.astype(np.float32)
    blue = ndi.gaussian_filter(pixels[..., 2] - pixels[..., 1], 1.0)
    red_ids = [c.id for c in detection.cells if c.kind == "red"]
    in_red = np.isin(detection.labels, red_ids)
    return blue - max(float(np.median(blue[in_red])) if in_red.any() else 0.0, 0.0) > PURPLE


def free_platelets(rgb: np.ndarray, detection: Detection, boxes: list | None = None) -> list[np.ndarray]:
    """The platelets lying free on the background of one field, each as its transmittance, (H, W, 3) float, 1
    where it lets all light through, at the NIH cells' scale.

    ``boxes``: labelled platelet boxes (x0, y0, x1, y1); without them, small purple blobs count as platelets.
    """
    purple = _purple(rgb, detection)
    near_cell = ndi.binary_dilation(detection.labels > 0, iterations=2)
    clear = (detection.labels == 0) & ~purple & ~near_cell
    if not clear.any():  # no background to measure the light against (a field covered by cells)
        return []
    background = np.maximum(np.median(rgb[clear], axis=0).astype(np.float32), 1.0)
    cell_area = np.pi * detection.cell_diameter**2 / 4
    blobs = measure.label(purple)
    height, width = purple.shape
    regions = []
    if boxes is None:
        regions = [r.label for r in measure.regionprops(blobs)
                   if PLATELET_AREA[0] * cell_area <= r.area <= PLATELET_AREA[1] * cell_area]
    else:
        for x0, y0, x1, y1 in boxes:
            inside = blobs[max(0, int(y0)):int(np.ceil(y1)), max(0, int(x0)):int(np.ceil(x1))]
            found = np.bincount(inside.ravel(), minlength=1)
            found[0] = 0
            if found.any():
                regions.append(int(found.argmax()))
    platelets = []
    scale = cut.field_scale(detection.cell_diameter)
    for label in regions:
        mask = blobs == label
        if near_cell[mask].mean() > FREE:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = rows[0] - 3, rows[-1] + 4, cols[0] - 3, cols[-1] + 4
        if y0 < 0 or x0 < 0 or y1 > height or x1 > width:
            continue
        alpha = ndi.gaussian_filter(ndi.binary_dilation(mask, iterations=1)[y0:y1, x0:x1].astype(np.float32), 1.0)
        transmittance = np.clip(rgb[y0:y1, x0:x1].astype(np.float32) / background, 0, 1)
        patch = 1 - alpha[..., None] * (1 - transmittance)
        size = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
        patch = np.stack([np.asarray(Image.fromarray(patch[..., c]).resize(size, Image.Resampling.BILINEAR))
                          for c in range(3)], axis=-1)
        platelets.append(np.clip(patch, 0, 1))
    return platelets


def lay_platelet(cell: np.ndarray, platelet: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``cell`` (black outside its outline) with ``platelet``'s transmittance laid at a random place wholly
    inside it, turned and flipped at random; None when the cell is too small to hold it."""
    patch = np.rot90(platelet, k=int(rng.integers(4)))
    if rng.integers(2):
        patch = patch[:, ::-1]
    ph, pw = patch.shape[:2]
    inside = cell.max(axis=2) > 0
    room = ndi.binary_erosion(inside, np.ones((ph, pw), bool), border_value=0)
    spots = np.argwhere(room)
    if len(spots) == 0:
        return None
    cy, cx = spots[rng.integers(len(spots))]
    y0, x0 = cy - ph // 2, cx - pw // 2
    laid = cell.astype(np.float32)
    laid[y0:y0 + ph, x0:x0 + pw] *= patch
    return np.where(inside[..., None], laid, 0).round().clip(0, 255).astype(np.uint8)


def txl_platelet_boxes(path: Path, width: int, height: int) -> list[tuple[float, float, float, float]]:
    labels = path.parent.parent.parent / "labels" / "train" / f"{path.stem}.txt"
    try:
        cells = read_yolo_boxes(labels, width=width, height=height)
    except (OSError, ValueError):  # a label file with a header line (one of TXL-PBC's) or none: no boxes
        return []
    return [c.box for c in cells if c.kind == "platelet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write OUT/Uninfected/*.png into (must not exist)")
    parser.add_argument("--sets", default="chula,txl", help="comma-separated: chula, txl")
    parser.add_argument("--per-field", type=int, default=None, help="at most this many cells per field")
    parser.add_argument("--platelets", type=int, default=0, help="also write this many cells with a platelet "
                        "laid on them, split evenly over the sets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
    folder = Path(args.out) / CLASS
    if folder.exists():
        raise SystemExit(f"{folder} exists already: give a new --out (nothing is overwritten)")
    sets = {"chula": chula_fields, "txl": txl_fields}
    names = args.sets.split(",")
    for name in names:
        if name not in sets:
            raise SystemExit(f"unknown set {name!r}; choose from: {', '.join(sets)}")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    for number, name in enumerate(names):
        cells, platelets = [], []
        for path in sets[name](root, "tuning"):
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
            detection = find_cells(rgb)
            for k, crop in enumerate(counted_cells(rgb, detection, args.per_field)):
                Image.fromarray(crop).save(folder / f"{name}_{path.stem}_{k:03d}.png")
                cells.append(crop)
            if args.platelets:
                boxes = txl_platelet_boxes(path, rgb.shape[1], rgb.shape[0]) if name == "txl" else None
                platelets += free_platelets(rgb, detection, boxes)
        wanted = args.platelets // len(names) + (number < args.platelets % len(names))
        laid = attempts = 0
        while platelets and laid < wanted and attempts < 20 * wanted:  # a cell too small for its platelet: another
            attempts += 1
            result = lay_platelet(cells[rng.integers(len(cells))],
                                  platelets[rng.integers(len(platelets))], rng)
            if result is not None:
                Image.fromarray(result).save(folder / f"{name}_platelet_{laid:04d}.png")
                laid += 1
        print(f"{name}: {len(cells)} cells cut, {len(platelets)} free platelets, {laid} cells with a platelet laid on",
              flush=True)


if __name__ == "__main__":
    main()
