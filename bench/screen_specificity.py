"""How many red cells a malaria model flags on real smear fields that hold no malaria (Chula RBC-12, TXL-PBC).

    OMP_NUM_THREADS=1 CELLSCREEN_DATA=../shared/data python bench/screen_specificity.py --model malaria

Every red cell on these fields is uninfected, so each one the model calls Parasitized is a false positive:
the share flagged is 1 - specificity on another lab's smears. Each field is screened as ``cellscreen
screen`` does it (``detect.find_cells``, ``cut.field_scale``, ``pipeline.classify_red_cells``,
``count.call_cells`` at the model's threshold, ``count.count_field``): only counted cells (single red
cells not cut by the border) enter the share, with a Wilson 95% interval over cells.

The fields are divided once, as ``bench/screen_detection.py`` divides them: Chula's first 60 fields by
number and every 10th TXL-PBC field by name are for tuning (the cell finder's, and the cells cut as extra
training negatives by ``bench/smear_negatives.py``, kept by git at commit f87be0ccb7); the figures to report are on the others (``--part
report``). On Chula both every field of the part and its fully labelled fields (``FULLY_LABELLED``) are
given. ``--cells CSV`` writes one row per counted cell (field, cell, probability, shape features) and
``--crops DIR`` the cut of every flagged cell, to look at.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from screen_detection import FULLY_LABELLED, TXL_TUNING_EVERY  # noqa: E402  (the same division of the fields)

from cellscreen.screen import count, cut  # noqa: E402
from cellscreen.screen.detect import find_cells  # noqa: E402
from cellscreen.screen.pipeline import FieldOptions, classify_red_cells  # noqa: E402
from cellscreen.serve.runtime import load_predictor  # noqa: E402

CHULA_TUNING = 60  # Chula fields (first by number) used for tuning, as in bench/screen_detection.py


def chula_fields(root: Path, part: str) -> list[Path]:
    folder = root / "smears" / "chula-rbc12" / "Dataset"
    paths = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))
    return paths[:CHULA_TUNING] if part == "tuning" else paths[CHULA_TUNING:]


def txl_fields(root: Path, part: str) -> list[Path]:
    paths = sorted((root / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("*.jpg"))
    tuning = set(paths[::TXL_TUNING_EVERY])
    return [p for p in paths if (p in tuning) == (part == "tuning")]


def screen_fields(paths: list[Path], predictors: list, *, cells_out=None, crops: Path | None = None,
                  set_name: str = "", kept: list | None = None) -> list[dict[str, count.Counts]]:
    """Counts per field (stem -> Counts) for each of ``predictors``, each field screened as ``cellscreen
    screen`` does (the cells found once, then classified by each model)."""
    options = [FieldOptions("", tuple(p.classes), p.positive_class, count.decision_threshold(p.description),
                            p.input_size, p.border_crop, p.interpolation, 256, None, None) for p in predictors]
    results = [{} for _ in predictors]
    for path in paths:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        detection = find_cells(rgb)
        scale = cut.field_scale(detection.cell_diameter)
        for k, (predictor, option) in enumerate(zip(predictors, options)):
            red, proba = classify_red_cells(rgb, detection, scale, option, predictor)
            _, positive = count.call_cells(proba, option.classes, option.positive_class, option.threshold)
            results[k][path.stem] = count.count_field(detection.cells,
                                                      [c.id for c, hit in zip(red, positive) if hit])
            if k == 0:
                first = red, proba[:, list(option.classes).index(option.positive_class)], positive
        red, first_p, positive = first
        if kept is not None:  # the counted cells as the first model takes them, to score other models later
            counted = [c for c in red if c.single and not c.touches_border]
            option = options[0]
            batch = cut.model_batch(cut.cut_cells(rgb, detection.labels, counted, scale), option.input_size,
                                    option.interpolation, option.border_crop)
            kept.append((path.stem, batch, results[0][path.stem]))
        for cell, p, hit in zip(red, first_p, positive):
            if not cell.single or cell.touches_border:
                continue
            if cells_out is not None:
                cells_out.writerow([set_name, path.stem, cell.id, f"{p:.4f}", int(hit), cell.area,
                                    f"{cell.ellipse_fill:.3f}", f"{cell.centre[0]:.1f}", f"{cell.centre[1]:.1f}"])
            if crops is not None and hit:
                crop = cut.cut_cell(rgb, detection.labels, cell.id, cell.box, scale)
                Image.fromarray(crop).save(crops / f"{set_name}_{path.stem}_{cell.id}_p{p:.2f}.png")
    return results


def share(counts: list[count.Counts]) -> dict:
    total = sum(counts, count.Counts(images=0))
    flagged = count.parasitemia(total.positive, total.red_counted)
    return {"fields": total.images, "red_counted": total.red_counted, "flagged": total.positive,
            "not_single": total.flagged,
            "percent": round(flagged.percent, 3) if flagged else None,
            "ci95": [round(flagged.low, 3), round(flagged.high, 3)] if flagged else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model to screen with (bundled name, run folder, "
                        ".onnx); repeat to compare several on the same cells (default: malaria)")
    parser.add_argument("--engine", default="auto", help="inference engine (auto, onnx, int8, torch)")
    parser.add_argument("--part", choices=("report", "tuning"), default="report", help="fields to screen")
    parser.add_argument("--sets", default="chula,txl", help="comma-separated: chula, txl")
    parser.add_argument("--cells", help="write one CSV row per counted red cell here (first model's calls)")
    parser.add_argument("--crops", help="write the cut of every cell the first model flags into this folder")
    parser.add_argument("--save-cells", help="keep the counted cells, as the first model takes them, in this .npz")
    parser.add_argument("--from-cells", help="score the models on the cells of a --save-cells file (no finding)")
    args = parser.parse_args()
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
    models = args.model or ["malaria"]
    predictors = [load_predictor(model, engine=args.engine) for model in models]
    crops = Path(args.crops) if args.crops else None
    if crops:
        crops.mkdir(parents=True, exist_ok=True)
    handle = open(args.cells, "w", newline="") if args.cells else None
    writer = csv.writer(handle) if handle else None
    if writer:
        writer.writerow(["set", "field", "cell_id", "p_positive", "flagged", "area", "ellipse_fill", "x", "y"])
    results = [{"model": model, "engine": p.engine, "part": args.part} for model, p in zip(models, predictors)]
    if args.from_cells:
        return print_results(from_cells(args.from_cells, predictors, results))
    sets = args.sets.split(",")
    kept = {name: [] for name in sets} if args.save_cells else {}
    if "chula" in sets:
        per_model = screen_fields(chula_fields(root, args.part), predictors, cells_out=writer, crops=crops,
                                  set_name="chula", kept=kept.get("chula"))
        for result, per_field in zip(results, per_model):
            result["chula_all"] = share(list(per_field.values()))
            result["chula_fully_labelled"] = share([c for f, c in per_field.items() if int(f) in FULLY_LABELLED])
    if "txl" in sets:
        per_model = screen_fields(txl_fields(root, args.part), predictors, cells_out=writer, crops=crops,
                                  set_name="txl", kept=kept.get("txl"))
        for result, per_field in zip(results, per_model):
            result["txl"] = share(list(per_field.values()))
    if handle:
        handle.close()
    if args.save_cells:
        save_cells(args.save_cells, kept)
    print_results(results)


def save_cells(path: str, kept: dict[str, list]) -> None:
    """Per set: the counted cells' pixels, the field of each, and each field's counts."""
    arrays = {}
    for name, fields in kept.items():
        arrays[f"{name}_pixels"] = np.concatenate([batch for _, batch, _ in fields])
        arrays[f"{name}_field"] = np.concatenate([[stem] * len(batch) for stem, batch, _ in fields])
        arrays[f"{name}_not_single"] = np.array([c.flagged for _, _, c in fields])
        arrays[f"{name}_fields"] = np.array([stem for stem, _, _ in fields])
    np.savez_compressed(path, **arrays)


def from_cells(path: str, predictors: list, results: list[dict]) -> list[dict]:
    """The flagged shares of each model on the cells kept by ``--save-cells``."""
    kept = np.load(path)
    for name in sorted({key.split("_")[0] for key in kept.files}):
        pixels, field = kept[f"{name}_pixels"], kept[f"{name}_field"]
        for predictor, result in zip(predictors, results):
            proba = predictor.predict_batched(pixels, 256)
            _, positive = count.call_cells(proba, predictor.classes, predictor.positive_class,
                                           count.decision_threshold(predictor.description))
            parts = {name: np.ones(len(field), bool)} if name != "chula" else {
                "chula_all": np.ones(len(field), bool),
                "chula_fully_labelled": np.isin(field.astype(int), sorted(FULLY_LABELLED))}
            every_field = kept[f"{name}_fields"]
            for part, chosen in parts.items():
                hits, counted = int(positive[chosen].sum()), int(chosen.sum())
                flagged = count.parasitemia(hits, counted)
                fields = set(every_field.tolist()) if part != "chula_fully_labelled" else {
                    stem for stem in every_field.tolist() if int(stem) in FULLY_LABELLED}
                result[part] = {"fields": len(fields), "red_counted": counted, "flagged": hits,
                                "not_single": int(sum(n for stem, n in zip(kept[f"{name}_fields"],
                                                                            kept[f"{name}_not_single"])
                                                      if stem in fields)),
                                "percent": round(flagged.percent, 3), "ci95": [round(flagged.low, 3),
                                                                             round(flagged.high, 3)]}
    return results


def print_results(results: list[dict]) -> None:
    for result in results:
        for name in ("chula_all", "chula_fully_labelled", "txl"):
            if name in result:
                s = result[name]
                print(f"{result['model']}: {name} ({result['part']}, {s['fields']} fields): {s['flagged']} of "
                      f"{s['red_counted']} counted red cells flagged, {s['percent']}% (95% CI {s['ci95']}); "
                      f"{s['not_single']} objects not single")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
