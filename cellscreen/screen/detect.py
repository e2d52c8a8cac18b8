"""Find the red and white cells on a photographed field of a thin blood smear.

The classical detector needs no training. It follows scikit-image's watershed
example and NLM's Malaria Screener: the green channel (where the stained cells
are darkest against the background), CLAHE, an Otsu foreground, the distance
transform of that foreground, multi-scale Laplacian-of-Gaussian markers on it,
and a marker-controlled watershed that splits touching cells. White cells are
told apart by their stain: the nucleus is dark purple-blue, so it is bluer
than green by far more than red cells and the background are.

It is scale-free: the red-cell diameter is measured in each image (or given),
and the work is done on a copy scaled so that a red cell is ``WORK_DIAMETER``
pixels across, which keeps a 16-megapixel photograph as fast as a small field.
The labels are mapped back to the photograph's own pixels at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage import exposure, feature, filters, measure, morphology, segmentation

__all__ = ["FoundCell", "Detection", "find_cells", "WORK_DIAMETER"]

WORK_DIAMETER = 32.0  # red-cell diameter in the work image, px
PROBE_SIDE = 320  # longer side of the coarse copy used to measure the cell size, px
MIN_CONTRAST = 12.0  # a field whose colours span less than this (0-441) holds no cell
RIM_CLOSING = 0.0  # closing radius, as a share of a cell's diameter, that mends broken rims
CENTRE_FILL = 0.6  # holes smaller than this share of a cell's area are pale centres, filled
MARKERS = "distance"
MARKER_SMOOTH = 0.25
LOG_SCALES = (0.7, 1.0)
MARKER_FLOOR = 0.05
MARKER_SPACING = 0.55
EDGE_LEVEL = 0.5  # a cell's edge: where the stain falls to this share of the median stained pixel's
SMALLEST_CELL = 0.3  # objects below this share of a red cell's area are platelets or debris
NUCLEUS_MIN_AREA = 0.25  # a stained blob smaller than this share of a red cell is a platelet, not a nucleus
CYTOPLASM_CONTRAST = 12.0  # colour distance (0-255 RGB) from the background that counts as stained
NUCLEUS_STAIN = 40.0  # blue minus green (0-255) above the red cells' own, for nucleus stain
SINGLE_AREA = (0.55, 1.7)  # area range of one red cell, as shares of the median single cell
SINGLE_SOLIDITY = 0.88  # a red cell is convex; two overlapping ones are not


@dataclass(frozen=True)
class FoundCell:
    """One cell found on a field, in the photograph's own pixels."""

    id: int  # label value in Detection.labels, 1..n
    kind: str  # "red" or "white"
    centre: tuple[float, float]  # (x, y) pixels, x = column
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive
    area: int  # pixels
    single: bool  # looks like one red cell, not a clump, platelet or debris
    touches_border: bool
    solidity: float = 1.0  # area over convex-hull area, in the work image


@dataclass
class Detection:
    """The cells found on one field and the label image they come from."""

    labels: np.ndarray  # int32 (H, W): 0 background, FoundCell.id inside each cell
    cells: list[FoundCell]  # red and white cells; platelets and debris are not here
    cell_diameter: float  # median equivalent diameter of single red cells, px (or the one given)

    @property
    def red(self) -> list[FoundCell]:
        return [c for c in self.cells if c.kind == "red"]

    @property
    def white(self) -> list[FoundCell]:
        return [c for c in self.cells if c.kind == "white"]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) from grey, RGBA or 16-bit input."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        top = float(image.max()) or 1.0
        image = (image.astype(np.float32) * (255.0 / (65535.0 if top > 255 else 255.0))).clip(0, 255)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The image scaled by ``scale`` (box filter down, bilinear up): PIL does 16 MP in milliseconds."""
    if abs(scale - 1.0) < 1e-3:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize(size, method))


def _dilated(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` grown by a disc of ``radius``: a threshold on the distance transform, faster than a disc."""
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def _stain(rgb: np.ndarray, diameter: float) -> np.ndarray:
    """How far each pixel's colour lies from the background's, smoothed a little (0-441).

    The green channel alone separates dark cells from the rest and loses pale
    ones (a thin pink rim around a centre as light as the background): their
    colour still differs. The background colour is the median of the pixels on
    the bright side of Otsu's threshold on the green channel.
    """
    smooth = ndi.gaussian_filter(rgb.astype(np.float32), sigma=(max(0.5, diameter / 24),) * 2 + (0,))
    green = smooth[..., 1]
    bright = green > filters.threshold_otsu(green) if np.ptp(green) > 0 else np.ones(green.shape, bool)
    background = np.median(smooth[bright], axis=0)
    return np.sqrt(np.sum((smooth - background) ** 2, axis=2))


def _foreground(rgb: np.ndarray, diameter: float) -> np.ndarray:
    """Stained pixels (Otsu on ``_stain``), broken rims closed and pale centres filled.

    Red cells have a pale centre; it is filled when smaller than ``CENTRE_FILL``
    of a cell, which leaves the background enclosed by a ring of cells alone.
    """
    stain = _stain(rgb, diameter)
    if stain.max() - stain.min() < MIN_CONTRAST:
        return np.zeros(stain.shape, bool)
    # Otsu on the log, so that a dark speck or hair does not take the threshold for itself; then the edge is put
    # where the stain is a share of a typical cell's, so that the blurred rim of the photograph is left out.
    threshold = float(np.expm1(filters.threshold_otsu(np.log1p(stain))))
    stained = stain[stain > threshold]
    if stained.size:
        threshold = max(threshold, EDGE_LEVEL * float(np.median(stained)))
    mask = stain > threshold
    cell_area = np.pi * diameter**2 / 4
    if RIM_CLOSING:
        mask = ndi.binary_closing(mask, morphology.disk(max(1, round(diameter * RIM_CLOSING))), border_value=0) | mask
    mask = morphology.remove_small_holes(mask, max_size=int(CENTRE_FILL * cell_area))
    mask = ndi.binary_opening(mask, morphology.disk(max(1, int(diameter / 16))))
    return morphology.remove_small_objects(mask, max_size=int(0.1 * cell_area))


def _measure_diameter(rgb: np.ndarray) -> float:
    """The red-cell diameter in ``rgb``'s pixels, measured on a coarse copy.

    A first foreground (all holes filled) gives the distance transform; its
    peaks lie at the cells' centres and their height is a cell's radius, also
    for cells that touch. The median peak, on the pixels of a first guess, then
    a second pass at that size.
    """
    scale = min(1.0, PROBE_SIDE / max(rgb.shape[:2]))
    probe = _resized(rgb, scale)
    guess = max(probe.shape[:2]) / 12  # any size between a few and a hundred cells per side
    for _ in range(2):
        mask = _foreground(probe, guess)
        distance = ndi.distance_transform_edt(ndi.binary_fill_holes(mask))
        peaks = feature.peak_local_max(distance, min_distance=max(2, int(guess / 4)), threshold_abs=2,
                                       exclude_border=False)
        if len(peaks) == 0:
            break
        radii = distance[tuple(peaks.T)]
        guess = float(np.clip(2 * np.median(radii[radii >= np.percentile(radii, 25)]), 6, max(probe.shape) / 2))
    return guess / scale


def _markers(distance: np.ndarray, diameter: float, stain: np.ndarray | None = None) -> np.ndarray:
    """One marker per cell: peaks of the distance transform sharpened by multi-scale LoG.

    The negative Laplacian of Gaussian at a few scales around a cell's radius
    rises at blob centres; multiplying it by the distance (as Malaria Screener
    does) keeps the peaks inside the foreground and favours cell-sized blobs.
    """
    radius = diameter / 2
    inside = distance > 0
    if MARKERS == "smooth":
        response = ndi.gaussian_filter(distance, radius * MARKER_SMOOTH)
        threshold = 0.3 * radius
    else:
        source = inside.astype(np.float32) if MARKERS == "mask" else distance
        sigmas = [radius / np.sqrt(2) * f for f in LOG_SCALES]
        log = np.max([-s**2 * ndi.gaussian_laplace(source, s) for s in sigmas], axis=0)
        response = np.clip(log, 0, None) * distance
        threshold = MARKER_FLOOR * radius * (radius if MARKERS == "distance" else 1)
    peaks = feature.peak_local_max(response, min_distance=max(2, int(MARKER_SPACING * radius)),
                                   threshold_abs=threshold, labels=inside.astype(np.int32), exclude_border=False)
    markers = np.zeros(distance.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return markers


def _nuclei(rgb: np.ndarray, foreground: np.ndarray, diameter: float) -> np.ndarray:
    """Labelled white-cell nuclei: blobs far bluer than green, bigger than a platelet.

    The lobes of one nucleus are joined by a closing about a third of a red
    cell across, so that a neutrophil counts once.
    """
    stain = rgb[..., 2].astype(np.float32) - rgb[..., 1].astype(np.float32)
    stain = filters.gaussian(stain, sigma=max(0.5, diameter / 20), preserve_range=True)
    red_level = float(np.median(stain[foreground])) if foreground.any() else 0.0
    mask = stain > max(red_level, 0.0) + NUCLEUS_STAIN
    mask = ndi.binary_closing(mask, morphology.disk(max(1, int(diameter / 6))))
    cell_area = np.pi * diameter**2 / 4
    mask = morphology.remove_small_objects(mask, max_size=int(NUCLEUS_MIN_AREA * cell_area))
    return measure.label(mask)


def _cytoplasm(rgb: np.ndarray, foreground: np.ndarray, nuclei: np.ndarray, diameter: float) -> np.ndarray:
    """Pixels around a nucleus that differ in colour from the background: a white cell's cytoplasm.

    The cytoplasm is often as light as the background in the green channel,
    so the Otsu foreground misses it; its colour (violet, blue) still differs.
    """
    if not nuclei.any():
        return np.zeros_like(foreground)
    background = np.median(rgb[~foreground], axis=0) if (~foreground).any() else np.full(3, 255.0)
    stained = np.linalg.norm(rgb.astype(np.float32) - background, axis=2) > CYTOPLASM_CONTRAST
    near = _dilated(nuclei > 0, diameter * 0.4)
    return ndi.binary_fill_holes(ndi.binary_opening(stained & near, morphology.disk(1)) | (nuclei > 0))


def _segment(work: np.ndarray, diameter: float) -> tuple[np.ndarray, set[int]]:
    """Label image of the work copy (cells only) and the set of labels that are white cells."""
    foreground = _foreground(work, diameter)
    nuclei = _nuclei(work, foreground, diameter)
    foreground |= _cytoplasm(work, foreground, nuclei, diameter)
    distance = ndi.distance_transform_edt(foreground)
    markers = _markers(distance, diameter)
    markers[_dilated(nuclei > 0, diameter / 4)] = 0
    first_white = int(markers.max()) + 1
    markers[nuclei > 0] = nuclei[nuclei > 0] + first_white - 1
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    cell_area = np.pi * diameter**2 / 4
    areas = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    small = areas < SMALLEST_CELL * cell_area
    small[first_white:] = False
    small[0] = False
    labels[small[labels]] = 0
    white = set(range(first_white, int(labels.max()) + 1)) & set(np.unique(labels).tolist())
    return labels, white


def _solidity(labels: np.ndarray, count: int) -> np.ndarray:
    """Area over convex-hull area for labels 1..count (index 0 unused).

    The hull is taken over the corners of each cell's edge pixels with qhull,
    far faster than rasterising every hull as regionprops does.
    """
    solidity = np.ones(count + 1)
    edges = labels * (labels != ndi.grey_erosion(labels, size=3))
    for cell_id, where in enumerate(ndi.find_objects(labels, max_label=count), start=1):
        if where is None:
            continue
        ys, xs = np.nonzero(edges[where] == cell_id)
        if len(ys) < 3:
            continue
        corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
        try:
            hull = ConvexHull(corners)
        except QhullError:  # all on one line
            continue
        solidity[cell_id] = min(1.0, np.count_nonzero(labels[where] == cell_id) / hull.volume)
    return solidity


def _single(area: float, solidity: float, median_area: float) -> bool:
    low, high = SINGLE_AREA
    return low * median_area <= area <= high * median_area and solidity >= SINGLE_SOLIDITY


def find_cells(rgb: np.ndarray, *, cell_diameter: float | None = None) -> Detection:
    """Find the red and white cells on a field photograph of any size.

    ``cell_diameter`` is a red cell's diameter in the photograph's pixels; when
    None it is measured on the image. Platelets and debris are left out;
    cells cut by the image border are kept and marked ``touches_border``.
    """
    rgb = _as_rgb(rgb)
    height, width = rgb.shape[:2]
    diameter = float(cell_diameter) if cell_diameter else _measure_diameter(rgb)
    if diameter <= 0:
        raise ValueError(f"cell_diameter must be positive, got {cell_diameter}")
    scale = min(2.0, WORK_DIAMETER / diameter)
    work = _resized(rgb, scale)
    work_diameter = diameter * scale
    work_labels, white = _segment(work, work_diameter)

    # Number the cells from the top left, so that ids do not depend on the watershed's marker order.
    work_ids = np.unique(work_labels[work_labels > 0])
    if len(work_ids):
        rows = ndi.mean(np.indices(work_labels.shape)[0], work_labels, work_ids)
        cols = ndi.mean(np.indices(work_labels.shape)[1], work_labels, work_ids)
        work_ids = work_ids[np.lexsort((cols, rows))]
    relabel = np.zeros(int(work_labels.max()) + 1, np.int32)
    relabel[work_ids] = np.arange(1, len(work_ids) + 1, dtype=np.int32)
    work_labels = relabel[work_labels]
    count = len(work_ids)
    solidity = _solidity(work_labels, count)
    kinds = ["background"] + ["white" if old in white else "red" for old in work_ids]
    labels = work_labels if work.shape[:2] == (height, width) else np.asarray(
        Image.fromarray(work_labels).resize((width, height), Image.Resampling.NEAREST), dtype=np.int32)

    flat = labels.ravel()
    areas = np.bincount(flat, minlength=count + 1)
    slices = ndi.find_objects(labels, max_label=count)
    red = [i for i in range(1, count + 1) if kinds[i] == "red" and areas[i] > 0]
    convex = [areas[i] for i in red if solidity[i] >= SINGLE_SOLIDITY]
    typical = float(np.median(convex)) if convex else np.pi * diameter**2 / 4

    cells = []
    for cell_id in range(1, count + 1):
        where = slices[cell_id - 1]
        if where is None or areas[cell_id] == 0:
            continue
        y0, y1, x0, x1 = where[0].start, where[0].stop, where[1].start, where[1].stop
        ys, xs = np.nonzero(labels[where] == cell_id)
        kind = kinds[cell_id]
        cells.append(FoundCell(
            id=cell_id, kind=kind, centre=(float(xs.mean() + x0), float(ys.mean() + y0)),
            box=(int(x0), int(y0), int(x1), int(y1)), area=int(areas[cell_id]),
            single=kind == "red" and _single(areas[cell_id], solidity[cell_id], typical),
            touches_border=bool(x0 == 0 or y0 == 0 or x1 == width or y1 == height),
            solidity=float(solidity[cell_id])))
    singles = [c.area for c in cells if c.single and not c.touches_border]
    measured = float(np.sqrt(4 * np.median(singles) / np.pi)) if singles else diameter
    return Detection(labels=labels, cells=cells, cell_diameter=float(cell_diameter) if cell_diameter else measured)
