"""The cross-validation's most confident mistakes: how many, and what they look like.

    python bench/confident_errors.py --predictions 'runs/cv/c6sj/fold*/test/predictions.csv' \\
        --root ../shared/data/malaria-nih/cell_images --montage docs/img/cv

Reads the held-out predictions of every fold (``cellscreen evaluate``'s ``predictions.csv``: path,
label, predicted, one probability per class), counts the mistakes whose wrong class got at least
``--threshold``, and writes, per true class, a montage of the ``--show`` most confident ones
(``MONTAGE-<label>.png``, read left to right, top to bottom).  Looking at them tells whether a model is
wrong or the label is: a cell filed as parasitized that shows no parasite at all cannot be learnt from.
Prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
from pathlib import Path

from PIL import Image

TILE = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="a glob of predictions.csv files")
    parser.add_argument("--root", required=True, help="the folder the paths in them are relative to")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--show", type=int, default=48)
    parser.add_argument("--montage", help="write MONTAGE-<label>.png for each label")
    parser.add_argument("--top-slides", type=int, default=10, help="list this many slides with the most mistakes")
    parser.add_argument("--slides", nargs="+", help="only the cells of these slides (the group column)")
    args = parser.parse_args()
    files = sorted(glob.glob(args.predictions))
    if not files:
        raise SystemExit(f"no files match {args.predictions}")
    rows = [row for name in files for row in csv.DictReader(open(name, newline=""))]
    if args.slides:
        if rows and "group" not in rows[0]:
            raise SystemExit("--slides needs a group column; these predictions have none")
        rows = [row for row in rows if row["group"] in args.slides]
    if not rows:
        raise SystemExit(f"no predicted cells in {', '.join(files)}" + (" for those slides" if args.slides else ""))
    labels = sorted({row["label"] for row in rows})
    result = {"files": files, "cells": len(rows), "threshold": args.threshold, "by_label": {}}
    wrong_total = confident_total = 0
    for label in labels:
        mistakes = [row for row in rows if row["label"] == label and row["predicted"] != label]
        for row in mistakes:
            row["_p"] = float(row[f"p_{row['predicted']}"])
        mistakes.sort(key=lambda row: -row["_p"])
        confident = [row for row in mistakes if row["_p"] >= args.threshold]
        wrong_total += len(mistakes)
        confident_total += len(confident)
        result["by_label"][label] = {"cells": sum(row["label"] == label for row in rows), "mistakes": len(mistakes),
                                     "confident_mistakes": len(confident),
                                     "most_confident": [row["path"] for row in mistakes[:args.show]]}
        if args.montage:
            shown = mistakes[:args.show]
            columns = 8
            sheet = Image.new("RGB", (columns * TILE, -(-len(shown) // columns) * TILE))
            for k, row in enumerate(shown):
                with Image.open(Path(args.root) / row["path"]) as image:
                    image = image.convert("RGB")
                    image.thumbnail((TILE - 4, TILE - 4))
                    sheet.paste(image, ((k % columns) * TILE + (TILE - image.width) // 2,
                                        (k // columns) * TILE + (TILE - image.height) // 2))
            out = Path(f"{args.montage}-{label}.png")
            out.parent.mkdir(parents=True, exist_ok=True)
            sheet.save(out, optimize=True)
            result["by_label"][label]["montage"] = str(out)
    result.update(mistakes=wrong_total, accuracy=round(1 - wrong_total / len(rows), 4),
                  confident_mistakes=confident_total, confident_share=round(confident_total / len(rows), 4))
    if "group" in rows[0]:
        result["slides_with_most_mistakes"] = _slides_with_most_mistakes(rows, args.threshold, args.top_slides)
    print(json.dumps(result, indent=2))


def _slides_with_most_mistakes(rows: list[dict], threshold: float, top: int) -> list[dict]:
    """Per slide and label, the mistakes and confident mistakes, the slides holding most of them first.

    Label errors tend to come a slide at a time (a slide whose cells were all filed as parasitized),
    while a model's own mistakes spread over the slides."""
    counts: dict[tuple[str, str], dict] = {}
    for row in rows:
        entry = counts.setdefault((row["group"], row["label"]), {"slide": row["group"], "label": row["label"],
                                                                  "cells": 0, "mistakes": 0, "confident": 0})
        entry["cells"] += 1
        if row["predicted"] != row["label"]:
            entry["mistakes"] += 1
            entry["confident"] += float(row[f"p_{row['predicted']}"]) >= threshold
    return sorted(counts.values(), key=lambda e: -e["mistakes"])[:top]


if __name__ == "__main__":
    main()
