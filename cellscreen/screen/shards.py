"""Join the run folders of ``screen --shard 0/N`` ... ``--shard N-1/N`` into one run folder.

Each shard's folder is a whole run of its own (cells, images, samples, overlays, report).  The merged
folder holds every shard's cell and image rows (shard by shard, each in its walk order), the samples
summed again over all of them, every overlay, one report and one record, as if one machine had screened
everything.  The overlays keep their names: each is numbered by its input's place among all the
inputs, so those of two shards never clash.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from cellscreen.errors import UserError
from cellscreen.screen.pipeline import finish_run
from cellscreen.screen.run_folder import CELLS, IMAGE_COLUMNS, IMAGES, RECORD, SETTINGS, check_out, journal_path

__all__ = ["merge_screens"]

# what every shard must share to be parts of one run (not the model's path, which may differ between machines)
SAME = ("model_name", "classes", "positive_class", "threshold", "interpolation", "inputs", "cell_diameter",
        "microns_per_pixel", "group_regex", "training_cell_diameter", "cells", "blast_classes", "white_cut")
TOTALS = ("images", "skipped", "samples", "red_counted", "positive", "flagged", "white")


def _records(parts: list[Path]) -> list[dict]:
    """Each part's record, once every part is a finished shard of the same run and each shard is there once."""
    records = []
    for part in parts:
        if not (part / RECORD).is_file() or not (part / IMAGES).is_file():
            interrupted = (part / SETTINGS).exists()
            raise UserError(f"{part} is not a finished screening run"
                            + (" (it was interrupted: rerun its command with --resume)" if interrupted else ""))
        records.append(json.loads((part / RECORD).read_text()))
    first = records[0]
    if first.get("shard") is None:
        raise UserError(f"{parts[0]} was not screened with --shard; there is nothing to merge")
    count = first["shard"][1]
    for part, record in zip(parts, records):
        for key in SAME:
            if record.get(key) != first.get(key):
                raise UserError(f"{part} differs from {parts[0]} in {key}; shards must come from one command")
        if record.get("shard") is None or record["shard"][1] != count:
            raise UserError(f"{part} is not one of {count} shards")
    seen = sorted(record["shard"][0] for record in records)
    if seen != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        repeated = sorted({s for s in seen if seen.count(s) > 1})
        raise UserError(f"need each of the {count} shards once: missing {missing or 'none'}, "
                        f"repeated {repeated or 'none'}")
    return records


def _copy_overlay(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (overlays are never changed after they are written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _join(parts: list[Path], out: Path) -> None:
    """Write the cell and image rows of ``parts`` (in this order) into the journals of ``out``; copy their
    overlays."""
    cell_header, seen = None, set()
    with journal_path(out, CELLS).open("w", newline="") as cells, \
            journal_path(out, IMAGES).open("w", newline="") as images:
        cell_writer, image_writer = csv.writer(cells), csv.writer(images)
        image_writer.writerow(IMAGE_COLUMNS)
        for part in parts:
            with (part / CELLS).open(newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                if cell_header is None:
                    cell_header = header
                    cell_writer.writerow(header)
                elif header != cell_header:
                    raise UserError(f"{part / CELLS} has other columns than the first shard's")
                cell_writer.writerows(reader)
            with (part / IMAGES).open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if row["image"] in seen:
                        raise UserError(f"{row['image']} appears twice (again in {part}); were the shards "
                                        "given the same inputs?")
                    seen.add(row["image"])
                    if row["overlay"]:
                        _copy_overlay(part / row["overlay"], out / row["overlay"])
                    image_writer.writerow([row[c] for c in IMAGE_COLUMNS])


def merge_screens(parts: list[str | Path], out: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Join the shard run folders ``parts`` into the run folder ``out``; return its totals (as ``screen`` does).

    Refuses unfinished parts, parts of different runs, a missing or repeated shard, and an image that
    appears in two parts.
    """
    parts, out = [Path(p) for p in parts], Path(out)
    records = _records(parts)
    if any(out.resolve() == part.resolve() for part in parts):
        raise UserError(f"--out {out} is one of the shards; merge into a new folder")
    check_out(out, resume=False, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(parts)), key=lambda k: records[k]["shard"][0])
    try:
        _join([parts[k] for k in order], out)
    except UserError:
        for name in (CELLS, IMAGES):  # a refused merge leaves no journal that would pass for an interrupted run
            journal_path(out, name).unlink(missing_ok=True)
        raise
    settings = {key: value for key, value in records[order[0]].items() if key not in TOTALS}
    settings.update(shard=None, merged_from=[str(parts[k]) for k in order])
    return finish_run(out, settings, resumed=0)
