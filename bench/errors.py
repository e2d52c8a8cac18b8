"""A run's most confident mistakes on its test cells: counts per group and a picture of them.

    python bench/errors.py runs/cv/default/fold3 --out docs/img/fold3

Loads the run's own split and test subset, predicts, prints how the false
negatives and false positives spread over slides/patients, and writes
``OUT-missed.png`` (positive cells scored most confidently negative) and
``OUT-false-alarms.png`` (the reverse), 24 cells each, with their file names
in ``OUT-cells.txt``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image


def montage(paths: list[Path], out: Path, tile: int = 96, columns: int = 8) -> None:
    rows = max(1, (len(paths) + columns - 1) // columns)
    sheet = Image.new("RGB", (tile * columns, tile * rows))
    for k, path in enumerate(paths):
        sheet.paste(Image.open(path).convert("RGB").resize((tile, tile)), ((k % columns) * tile, (k // columns) * tile))
    sheet.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--out", required=True, help="prefix for the pictures and the list")
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()

    from cellscreen.config import load_config
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.data import prepare_data
    from cellscreen.engine.inference import predict_proba

    checkpoint = load_checkpoint(args.run)
    config = load_config(str(Path(args.run) / "config.yaml"))
    data = prepare_data(config, data=None, input_size=checkpoint.data_config.input_size,
                        interpolation=checkpoint.data_config.interpolation, progress=False)
    test = data.subsets["test"]
    score = predict_proba(checkpoint.model, test.images.permute(0, 2, 3, 1).numpy())[:, 1]
    truth = test.targets.numpy()
    missed = np.where((truth == 1) & (score < 0.5))[0]
    alarms = np.where((truth == 0) & (score >= 0.5))[0]
    print(f"{len(truth)} test cells: {len(missed)} missed positives, {len(alarms)} false alarms")
    for name, idx in (("missed", missed), ("false alarms", alarms)):
        print(f"{name} by group:", ", ".join(f"{g} {n}" for g, n in Counter(test.groups[i] for i in idx).most_common(8)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, idx, order in (("missed", missed, score[missed]), ("false-alarms", alarms, -score[alarms])):
        chosen = idx[np.argsort(order)][: args.count]
        montage([data.index.root / test.paths[i] for i in chosen], out.with_name(f"{out.name}-{name}.png"))
        lines += [f"{name}\t{test.paths[i]}\t{score[i]:.4f}" for i in chosen]
    out.with_name(f"{out.name}-cells.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
