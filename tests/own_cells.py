"""A lab's own folder made from real NIH cells: two class folders (``infected``, ``normal``) whose file names
start with the patient id (``P<slide>_``), a few slides with cells of both classes."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path

SOURCE_CLASSES = {"Parasitized": "infected", "Uninfected": "normal"}
PATIENT_REGEX = r"^(P\d+)_"


def make_own_folder(cell_images: Path, out: Path, *, slides: int = 12, per_class: int = 13) -> dict[str, dict]:
    """Copy ``per_class`` cells of each class from the first ``slides`` slides (by number) that have that many
    of both into ``out/infected`` and ``out/normal`` as ``P<slide>_<original name>``; return
    ``{patient: {class: count}}``."""
    by_slide: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for source in SOURCE_CLASSES:
        for path in sorted((cell_images / source).glob("*.png")):
            by_slide[re.match(r"C(\d+)", path.name).group(1)][source].append(path)
    chosen = [s for s in sorted(by_slide, key=int)
              if all(len(by_slide[s][c]) >= per_class for c in SOURCE_CLASSES)][:slides]
    counts: dict[str, dict] = {}
    for slide in chosen:
        for source, label in SOURCE_CLASSES.items():
            (out / label).mkdir(parents=True, exist_ok=True)
            for path in by_slide[slide][source][:per_class]:
                shutil.copyfile(path, out / label / f"P{slide}_{path.name}")
            counts.setdefault(f"P{slide}", {})[label] = per_class
    return counts


if __name__ == "__main__":  # python -m tests.own_cells SOURCE OUT
    import sys

    print(make_own_folder(Path(sys.argv[1]), Path(sys.argv[2])))
