"""The learned cell finder: a small network a lab trains on its own annotated fields, run by onnxruntime.

``cellscreen cells train`` (``learned_train.train_detector``) writes a run
folder: ``weights.safetensors``, ``detector.onnx`` and ``model.json``, which
says how the network sees a field (the cell scale, the kinds of cell, the
peak thresholds chosen on the tuning fields) and which fields it was trained
and tuned on, so that scoring can leave them out.

``LearnedFinder.find_cells`` returns the same ``Detection`` as
``detect.find_cells``: the field is resized so that a red cell is
``WORK_DIAMETER`` pixels across (or the run's own ``work_diameter``), the network's heat maps give one peak per
cell (``skimage.feature.peak_local_max``) and its kind (the channel); the
cells' outlines, needed for cutting, come from a watershed of the classical
finder's foreground seeded with these centres. A network trained on boxes
also gives each cell's box; one trained on points takes the outline's.
Networks trained since the offset head was added place each centre by the
offset it predicts at the peak, and move it by the median shift between
their centres and the annotators' points on the tuning fields (where
annotators click, as against the cell's middle); older run folders, without
the offset output, refine the peak by the heat's centroid and move nothing.

This module needs no PyTorch: only ``learned_net`` (the network) does.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import feature, segmentation

from cellscreen.errors import UserError
from cellscreen.screen.detect import Detection, FoundCell, find_cells

__all__ = ["LearnedFinder", "Peaks", "learned_finder", "shared_finder", "work_field", "standardise", "find_peaks",
           "DESCRIPTION", "GRAPH", "WEIGHTS", "WORK_DIAMETER", "STRIDE", "MULTIPLE", "KINDS", "OUTPUTS",
           "PEAK_SPACING"]

DESCRIPTION, GRAPH, WEIGHTS = "model.json", "detector.onnx", "weights.safetensors"
WORK_DIAMETER, STRIDE, MULTIPLE = 16.0, 2, 4  # as in learned_net (kept here so running needs no PyTorch)
KINDS = ("red", "white")  # the kinds a finder may be trained on, in channel order
OUTPUTS = ("heat", "log_size", "offset")  # the graph's outputs; run folders made before the offset have two
PEAK_SPACING = 0.3  # closest two peaks of one kind may lie, in red-cell diameters
SAME_CELL = 0.35  # a red and a white peak closer than this (in red-cell diameters) are one cell: the higher wins
MARKER_RADIUS = 0.3  # each centre is given at least a disc of this share of a red cell's diameter as its outline
SINGLE_AREA = (0.55, 1.7)  # area range of one red cell, as shares of the median red cell found
SCALE_CHECK = (0.5, 0.7, 1.4, 2.0, 3.0)  # multiples of a measured diameter the network is also shown (scale_check)
CHECK_FLOOR = 0.2  # peaks this high count towards the network's confidence at a scale
CHECK_MARGIN = 0.1  # another scale wins only when its mean peak is this much higher than the measured one's


def _work_size(shape: tuple[int, int], diameter: float, work_diameter: float = WORK_DIAMETER) -> tuple[int, int]:
    """(width, height) of the work image of a field of ``shape`` (height, width) with red cells ``diameter``
    pixels across, where they are to be ``work_diameter`` across."""
    scale = work_diameter / diameter
    height, width = shape
    return max(MULTIPLE, round(width * scale)), max(MULTIPLE, round(height * scale))


def work_field(rgb: np.ndarray, diameter: float, work_diameter: float = WORK_DIAMETER) -> np.ndarray:
    """The field resized so that a red cell of ``diameter`` pixels is ``work_diameter`` across."""
    scale = work_diameter / diameter
    size = _work_size(rgb.shape[:2], diameter, work_diameter)
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize(size, method))


def standardise(work: np.ndarray) -> np.ndarray:
    """(3, H, W) float32: each channel minus its mean over the field, over its spread (stains and lamps differ)."""
    pixels = work.astype(np.float32)
    mean = pixels.reshape(-1, 3).mean(axis=0)
    spread = pixels.reshape(-1, 3).std(axis=0) + 8.0
    return np.ascontiguousarray(((pixels - mean) / spread).transpose(2, 0, 1))


@dataclass
class Peaks:
    """Cells found by the network, in the work image's pixels."""

    kind: np.ndarray  # (N,) channel index
    centre: np.ndarray  # (N, 2) x, y
    score: np.ndarray  # (N,)
    size: np.ndarray  # (N, 2) width and height as shares of a red cell's diameter


def find_peaks(heat: np.ndarray, log_size: np.ndarray, thresholds: list[float], *, offset: np.ndarray | None = None,
               spacing: float = PEAK_SPACING, work_diameter: float = WORK_DIAMETER) -> Peaks:
    """One peak per cell from heat maps (kinds, h, w) at the network's output resolution; a red and a white peak
    on one cell keep the higher. Each centre is placed to a fraction of an output pixel by the ``offset`` (2, h, w)
    the network predicts at its peak or, without one, by the heat's centroid around the peak. Two peaks of one
    kind lie at least ``spacing`` red-cell diameters apart; a red cell is ``work_diameter`` input pixels across."""
    spacing = max(1, int(round(spacing * work_diameter / STRIDE)))
    kinds, centres, scores = [], [], []
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)))
    for channel, threshold in enumerate(thresholds):
        found = feature.peak_local_max(heat[channel], min_distance=spacing, threshold_abs=threshold,
                                       exclude_border=False)
        for row, col in found:
            if offset is not None:
                dx, dy = float(offset[0, row, col]), float(offset[1, row, col])
            else:
                window = padded[channel, row:row + 3, col:col + 3]
                total = float(window.sum())
                dy, dx = (np.array([window.sum(axis=1) @ [-1, 0, 1], window.sum(axis=0) @ [-1, 0, 1]]) / total
                          if total > 0 else (0.0, 0.0))
            kinds.append(channel)
            centres.append((col + dx, row + dy))
            scores.append(heat[channel, row, col])
    kind, centre, score = np.array(kinds, int), np.array(centres, float).reshape(-1, 2), np.array(scores, float)
    if len(thresholds) > 1 and len(kind):
        close = np.linalg.norm(centre[:, None] - centre[None], axis=2) < SAME_CELL * work_diameter / STRIDE
        beaten = close & (kind[:, None] != kind[None]) & (score[:, None] < score[None])
        keep = ~beaten.any(axis=1)
        kind, centre, score = kind[keep], centre[keep], score[keep]
    rows, cols = np.clip(np.round(centre[:, 1]).astype(int), 0, heat.shape[1] - 1), np.clip(
        np.round(centre[:, 0]).astype(int), 0, heat.shape[2] - 1)
    size = np.exp(log_size[:, rows, cols].T) if len(kind) else np.zeros((0, 2))
    return Peaks(kind=kind, centre=centre * STRIDE, score=score, size=size)


class LearnedFinder:
    """A trained cell finder loaded from its run folder; ``find_cells`` is a drop-in for ``detect.find_cells``."""

    def __init__(self, run: str | Path, *, threads: int | None = 1):
        from cellscreen.serve.graph import onnx_session  # onnxruntime is loaded only when a finder is

        run = Path(run)
        description_path = run / DESCRIPTION if run.is_dir() else run
        if not description_path.is_file():
            raise UserError(f"no learned cell finder at {run}: expected a run folder of `cellscreen cells train` "
                            f"with {DESCRIPTION} and {GRAPH}")
        try:
            self.description = json.loads(description_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{description_path} cannot be read as a cell finder's description: {exc}") from None
        if self.description.get("task") != "cell-finding":
            raise UserError(f"{description_path} does not describe a cell finder (made by `cellscreen cells "
                            "train`)")
        graph = description_path.parent / GRAPH
        if not graph.is_file():
            raise UserError(f"{graph} is missing: train the finder again with `cellscreen cells train`")
        self.run = description_path.parent
        self.kinds = tuple(self.description["kinds"])
        self.thresholds = [float(self.description["thresholds"][kind]) for kind in self.kinds]
        self.spacing = float(self.description.get("peak_spacing", PEAK_SPACING))
        self.work_diameter = float(self.description.get("work_diameter", WORK_DIAMETER))
        self.shift = {kind: tuple(map(float, xy)) for kind, xy in self.description.get("centre_shift", {}).items()}
        self.session = onnx_session(str(graph), threads)

    @property
    def seen_fields(self) -> set[str]:
        """The fields (file stems) the finder was trained or tuned on: never to be scored on."""
        fields = self.description.get("fields", {})
        return set(fields.get("train", [])) | set(fields.get("tuning", []))

    def diameter(self, classical: Detection | None, cell_diameter: float | None) -> float:
        """The red-cell diameter the network is shown the field at: given, fixed by the training set, or the
        classical finder's measure times the ratio found on the tuning fields."""
        scale = self.description["scale"]
        if cell_diameter:
            return float(cell_diameter)
        if scale["mode"] == "fixed":
            return float(scale["diameter"])
        if classical is None:
            raise ValueError("a finder whose scale is measured needs the classical detection")
        return float(classical.cell_diameter * scale["ratio"])

    def heat(self, work: np.ndarray) -> dict[str, np.ndarray]:
        """The network's maps for a work image (H, W, 3), cropped back from the padding: ``heat``, ``log_size``
        and, for networks that have it, ``offset``."""
        height, width = work.shape[:2]
        pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
        fields = np.pad(standardise(work), ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")[None]
        maps = self.session.run(None, {"fields": fields})
        h, w = -(-height // STRIDE), -(-width // STRIDE)
        return {name: values[0, :, :h, :w] for name, values in zip(OUTPUTS, maps)}

    def heat_of(self, rgb: np.ndarray, diameter: float) -> dict[str, np.ndarray]:
        """The network's maps (``heat``) for a photograph whose red cells are ``diameter`` pixels across."""
        return self.heat(work_field(rgb, diameter, self.work_diameter))

    def peaks(self, rgb: np.ndarray, diameter: float, thresholds: list[float] | None = None, *,
              spacing: float | None = None, shift: dict[str, tuple[float, float]] | None = None,
              maps: dict[str, np.ndarray] | None = None) -> tuple[Peaks, float]:
        """The cells' peaks in the photograph's pixels (centres; sizes as shares of ``diameter``) and the scale
        (work pixels per photograph pixel). ``thresholds``, ``spacing`` and ``shift`` (each kind's centre shift,
        in red-cell diameters) default to the run's; ``maps`` are the network's for this field, when known."""
        work_size = _work_size(rgb.shape[:2], diameter, self.work_diameter)
        maps = maps if maps is not None else self.heat_of(rgb, diameter)
        found = find_peaks(maps["heat"], maps["log_size"], thresholds or self.thresholds, offset=maps.get("offset"),
                           spacing=self.spacing if spacing is None else spacing, work_diameter=self.work_diameter)
        scale_x, scale_y = work_size[0] / rgb.shape[1], work_size[1] / rgb.shape[0]
        found.centre = (found.centre + 0.5) / [scale_x, scale_y] - 0.5
        shift = self.shift if shift is None else shift
        for k, kind in enumerate(self.kinds):
            found.centre[found.kind == k] += np.asarray(shift.get(kind, (0.0, 0.0)), float) * diameter
        return found, (scale_x + scale_y) / 2

    def checked_diameter(self, rgb: np.ndarray, diameter: float) -> tuple[float, dict[str, np.ndarray]]:
        """The measured ``diameter``, or a multiple of it where the network is clearly surer of its cells there,
        with the network's maps at the diameter kept.

        A measure that is far off (a field whose cells the classical finder cuts into pieces, or merges) shows
        the network cells two or three times the size it learned, and its peaks are then many and weak. The
        field is therefore also shown at ``SCALE_CHECK`` multiples of the measure; the multiple whose peaks
        (above ``CHECK_FLOOR``) are highest on average wins when it beats the measure by ``CHECK_MARGIN``.
        """
        def confidence(maps: dict[str, np.ndarray]) -> float:
            peaks = find_peaks(maps["heat"], maps["log_size"], [CHECK_FLOOR] * len(self.kinds),
                               offset=maps.get("offset"), spacing=self.spacing, work_diameter=self.work_diameter)
            return float(np.mean(peaks.score)) if len(peaks.score) else 0.0

        measured = self.heat_of(rgb, diameter)
        best = (confidence(measured) + CHECK_MARGIN, diameter, measured)
        for multiple in SCALE_CHECK:
            maps = self.heat_of(rgb, diameter * multiple)
            best = max(best, (confidence(maps), diameter * multiple, maps), key=lambda option: option[0])
        return best[1], best[2]

    def find_cells(self, rgb: np.ndarray, *, cell_diameter: float | None = None) -> Detection:
        """The red and white cells of a field, as ``detect.find_cells`` gives them."""
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        fixed = self.description["scale"]["mode"] == "fixed" or bool(cell_diameter)
        classical = find_cells(rgb, cell_diameter=self.diameter(None, cell_diameter) if fixed else None)
        diameter, maps = self.diameter(classical, cell_diameter), None
        if not fixed and self.description.get("scale_check"):
            diameter, maps = self.checked_diameter(rgb, diameter)
        peaks, _ = self.peaks(rgb, diameter, maps=maps)
        return _outlined(rgb.shape[:2], classical.labels > 0, peaks, [self.kinds[k] for k in peaks.kind], diameter,
                         boxes=bool(self.description.get("boxes")))


def _discs(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, radius: float) -> np.ndarray:
    """A mask of the pixels within ``radius`` of any of the pixels (rows, cols): the same as thresholding a
    distance transform of the whole field, stamped disc by disc (a tenth of the time on a 640x480 field)."""
    mask = np.zeros(shape, bool)
    reach = int(np.floor(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    disc = dy**2 + dx**2 <= radius**2
    height, width = shape
    for row, col in zip(rows, cols):
        y0, y1 = max(0, row - reach), min(height, row + reach + 1)
        x0, x1 = max(0, col - reach), min(width, col + reach + 1)
        mask[y0:y1, x0:x1] |= disc[y0 - row + reach:y1 - row + reach, x0 - col + reach:x1 - col + reach]
    return mask


def _outlined(shape: tuple[int, int], foreground: np.ndarray, peaks: Peaks, kinds: list[str], diameter: float,
              *, boxes: bool) -> Detection:
    """A ``Detection`` from the peaks: a watershed of the foreground (plus a small disc at every centre) seeded
    with them gives each cell its pixels; the centre is the peak's, the box the network's when it learned boxes."""
    height, width = shape
    order = np.lexsort((peaks.centre[:, 0], peaks.centre[:, 1])) if len(kinds) else np.zeros(0, int)
    markers = np.zeros(shape, np.int32)
    cols = np.clip(np.round(peaks.centre[order, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(peaks.centre[order, 1]).astype(int), 0, height - 1)
    markers[rows, cols] = np.arange(1, len(order) + 1)
    near = _discs(shape, rows, cols, MARKER_RADIUS * diameter)
    mask = foreground | near
    distance = ndi.distance_transform_edt(mask)
    labels = segmentation.watershed(-distance, markers, mask=mask).astype(np.int32) if len(order) else markers
    areas = np.bincount(labels.ravel(), minlength=len(order) + 1)
    red_areas = [areas[i + 1] for i, k in enumerate(order) if kinds[k] == "red"]
    typical = float(np.median(red_areas)) if red_areas else np.pi * diameter**2 / 4
    cells = []
    for cell_id, (k, where) in enumerate(zip(order, ndi.find_objects(labels, max_label=len(order))), start=1):
        x, y = (float(v) for v in peaks.centre[k])
        region = (where[1].start, where[0].start, where[1].stop, where[0].stop) if where else (
            int(x), int(y), int(x) + 1, int(y) + 1)
        box = region
        if boxes:
            half_w, half_h = peaks.size[k] * diameter / 2
            box = (max(0, int(round(x - half_w))), max(0, int(round(y - half_h))),
                   min(width, int(round(x + half_w))), min(height, int(round(y + half_h))))
        touches = region[0] == 0 or region[1] == 0 or region[2] == width or region[3] == height or (
            boxes and (box[0] == 0 or box[1] == 0 or box[2] == width or box[3] == height))
        kind = kinds[k]
        low, high = SINGLE_AREA
        single = kind == "red" and low <= areas[cell_id] / typical <= high
        cells.append(FoundCell(id=cell_id, kind=kind, centre=(x, y), box=tuple(int(v) for v in box),
                               area=int(areas[cell_id]), single=single, touches_border=bool(touches)))
    return Detection(labels=labels, cells=cells, cell_diameter=diameter)


def learned_finder(detector: str) -> LearnedFinder | None:
    """The finder a ``--detector`` names: None for ``classical`` (``detect.find_cells``), the
    ``LearnedFinder`` of the run folder for ``learned:RUN``."""
    if detector == "classical":
        return None
    if detector.startswith("learned:") and detector[len("learned:"):]:
        return LearnedFinder(detector[len("learned:"):])
    raise UserError(f"unknown detector {detector!r}; choose classical or learned:RUN (a run folder of "
                    "`cellscreen cells train`)")


@functools.lru_cache(maxsize=4)
def shared_finder(detector: str) -> LearnedFinder | None:
    """``learned_finder``, loaded once per process (each screening worker keeps its own session)."""
    return learned_finder(detector)
