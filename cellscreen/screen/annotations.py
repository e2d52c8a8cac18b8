"""Read cell annotations of smear fields: Chula-style points and YOLO boxes.

Both become a list of ``LabelledCell`` in the image's pixels, so that scoring
does not care where the labels came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LabelledCell", "read_point_labels", "read_yolo_boxes", "YOLO_KINDS"]

# TXL-PBC's data.yaml: names ['WBC', 'RBC', 'Platelets'].
YOLO_KINDS = ("white", "red", "platelet")


@dataclass(frozen=True)
class LabelledCell:
    """One annotated cell: its kind, centre (x, y) and, for boxes, (x0, y0, x1, y1)."""

    kind: str  # "red", "white" or "platelet"
    centre: tuple[float, float]
    box: tuple[float, float, float, float] | None = None
    label: str = ""  # the annotation's own class (a Chula morphology number, a YOLO class id)


def read_point_labels(path: str | Path, *, kind: str = "red") -> list[LabelledCell]:
    """Chula RBC-12 ``Label/N.txt``: one ``x y class`` line per cell, all of one kind."""
    cells = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected 'x y [class]', got {line!r}")
        cells.append(LabelledCell(kind=kind, centre=(float(fields[0]), float(fields[1])),
                                  label=fields[2] if len(fields) > 2 else ""))
    return cells


def read_yolo_boxes(path: str | Path, *, width: int, height: int,
                    kinds: tuple[str, ...] = YOLO_KINDS) -> list[LabelledCell]:
    """A YOLO label file (``class cx cy w h``, fractions of the image) in pixels.

    ``kinds`` names each class id; the default is TXL-PBC's (0 white, 1 red,
    2 platelet).
    """
    cells = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected 'class cx cy w h', got {line!r}")
        class_id = int(float(fields[0]))
        if not 0 <= class_id < len(kinds):
            raise ValueError(f"{path}:{number}: class {class_id} is not one of 0..{len(kinds) - 1} ({kinds})")
        cx, cy, w, h = (float(v) for v in fields[1:])
        cx, cy, w, h = cx * width, cy * height, w * width, h * height
        cells.append(LabelledCell(kind=kinds[class_id], centre=(cx, cy),
                                  box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), label=fields[0]))
    return cells
