"""Find the red and white cells on a photographed field of a thin blood smear.

The classical detector needs no training. It follows scikit-image's watershed
example and NLM's Malaria Screener: a stained foreground, its distance
transform, Laplacian-of-Gaussian markers on it, and a marker-controlled
watershed that splits touching cells. White cells are told apart by their
stain: the nucleus is dark purple-blue, bluer than green by far more than red
cells and the background are.

Two departures, each measured on Chula RBC-12 fields: the foreground is not
Otsu on the (CLAHE-equalised) green channel, which kept dark cells and lost
pale ones (a thin pink rim round a centre as light as the background), but
the colour distance to the local background, thresholded by Otsu on its log;
and the markers come from the LoG of the distance transform times the distance.

A platelet stuck on a red cell's outline is given back to the background
(the watershed would give it to the cell, and cut with it, its purple
chromatin looks like a parasite's to a malaria model).

It is scale-free: the red-cell diameter is measured in each image (or given),
and the work is done on a copy scaled so that a red cell is ``WORK_DIAMETER``
pixels across, which keeps a 16-megapixel photograph nearly as fast as a small
field. The labels, areas, centres and boxes are mapped back to the
photograph's own pixels exactly at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

__all__ = ["FoundCell", "Detection", "find_cells", "WORK_DIAMETER"]

WORK_DIAMETER = 24.0  # red-cell diameter in the work image, px
PROBE_SIDE = 240  # longer side of the coarse copy used to measure the cell size, px
BACKGROUND_SHARE = 90.0  # percentile of each channel, over a few cells around, taken as the background's
BACKGROUND_WINDOW = 3.0  # that window's width in cell diameters
MIN_CONTRAST = 12.0  # a field whose colours span less than this (0-441) holds no cell
CENTRE_FILL = 0.7  # holes smaller than this share of a cell's area are pale centres, filled
LOG_SCALES = (0.6,)  # LoG sigmas for the markers, as shares of radius / sqrt(2)
MARKER_FLOOR = 0.02  # weakest marker response kept, times the radius squared
MARKER_SPACING = 0.45  # closest two markers may lie, in radii
EDGE_LEVEL = 0.5  # a cell's edge: where the stain falls to this share of the median stained pixel's
SMALLEST_CELL = 0.4  # objects below this share of a red cell's area are platelets or debris
SMALLEST_CUT_CELL = 0.12  # the same for objects cut by the image border
NUCLEUS_MIN_AREA = 0.25  # a stained blob smaller than this share of a red cell is a platelet, not a nucleus
CYTOPLASM_CONTRAST = 12.0  # colour distance (0-255 RGB) from the background that counts as stained
NUCLEUS_GAP = 0.5  # nucleus lobes closer than this (in red-cell diameters) are one nucleus
NUCLEUS_WHOLE = 1.0  # a stained blob this big (in red-cell areas) is a whole nucleus, not a lobe
WHITE_REACH = 0.5  # a white cell's cytoplasm reaches this far from its nucleus, in red-cell diameters
NUCLEUS_STAIN = 40.0  # blue minus green (0-255) above the red cells' own, for nucleus stain
PLATELET_STAIN = 25.0  # ... and for a platelet's, paler than a nucleus
BUMP_RADIUS = 0.25  # radius of the disc that smooths a red cell's outline, in cell diameters: what sticks out is a bump
SINGLE_AREA = (0.55, 1.7)  # area range of one red cell, as shares of the median single cell
SINGLE_FILL = 0.93  # a red cell fills its moment ellipse; two overlapping ones (0.89) and clumps do not
GREY_DARK = 25.0  # a pixel this much darker than the background in green (0-255) is dark enough to judge its hue
GREY_EVEN = 0.75  # red and blue each darkened at least this share of green: an even, grey darkening (a fibre)
GREY_MARGIN = 0.2  # ... and by this much more evenly than the field's own red cells are darkened
GREY_SHARE = 0.05  # a red cell with more grey pixels than this share is crossed by a fibre: not judged
FIBRE_SHARE = 0.5  # an object with more than this share of grey pixels is a piece of fibre, not a cell
MARK_SHARE = 0.01  # a cell with more than this share of drawn pixels (a scale bar, an arrow) is not judged


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
    ellipse_fill: float = 1.0  # area over the area of the ellipse with the cell's moments (work image)
    grey_share: float = 0.0  # share of its pixels dark and grey, as a fibre (or a microscope's pointer) is
    mark_share: float = 0.0  # share of its pixels drawn over the photograph (green or yellow: a scale bar, an arrow)


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


def _resized(rgb: np.ndarray, scale: float, picture: Image.Image | None = None) -> np.ndarray:
    """The image scaled by ``scale`` (box filter down, bilinear up): PIL does 16 MP in milliseconds.
    ``picture``: ``rgb`` as a PIL image, made once for both copies (a 16 MP one takes 80 ms to make)."""
    if abs(scale - 1.0) < 1e-3:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray((picture or Image.fromarray(rgb)).resize(size, method))


def _dilated(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` grown by a disc of ``radius``: a threshold on the distance transform, faster than a disc."""
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def _background(smooth: np.ndarray, diameter: float) -> np.ndarray:
    """The background's colour around each pixel, (H, W, 3).

    Illumination is seldom even across a photographed field, so the colour is
    taken locally: on a coarse copy (a cell about 2 pixels across), each
    channel's ``BACKGROUND_SHARE`` percentile over a window a few cells wide,
    where even a crowded field shows some background between its cells; then
    brought back to full size.
    """
    height, width = smooth.shape[:2]
    step = max(1, int(diameter / 2))
    coarse = smooth[: height - height % step or height, : width - width % step or width]
    h, w = coarse.shape[0] // step, coarse.shape[1] // step
    coarse = coarse[: h * step, : w * step].reshape(h, step, w, step, 3).mean(axis=(1, 3))
    window = max(3, int(BACKGROUND_WINDOW * diameter / step) | 1)
    local = np.stack([ndi.percentile_filter(coarse[..., c], BACKGROUND_SHARE, size=window, mode="reflect")
                      .astype(np.float32)
                      for c in range(3)], axis=-1)
    return np.stack([np.asarray(Image.fromarray(local[..., c]).resize((width, height), Image.Resampling.BILINEAR))
                     for c in range(3)], axis=-1)


def _stain(rgb: np.ndarray, diameter: float) -> np.ndarray:
    """Each pixel's colour minus the local background's, smoothed a little, (H, W, 3) float.

    The green channel alone separates dark cells from the rest and loses pale
    ones (a thin pink rim around a centre as light as the background): their
    colour still differs.
    """
    smooth = ndi.gaussian_filter(rgb.astype(np.float32), sigma=(max(0.5, diameter / 24),) * 2 + (0,))
    return smooth - _background(smooth, diameter)


def _foreground(difference: np.ndarray, diameter: float) -> np.ndarray:
    """Stained pixels (Otsu on the log of ``_stain``), pale centres filled.

    Red cells have a pale centre; it is filled when smaller than ``CENTRE_FILL``
    of a cell, which leaves the background enclosed by a ring of cells alone.
    """
    stain = np.sqrt(np.sum(difference**2, axis=2))  # how far from the background's colour, 0-441
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
    mask = morphology.remove_small_holes(mask, max_size=int(CENTRE_FILL * cell_area))
    mask = ndi.binary_opening(mask, morphology.disk(max(1, int(diameter / 16))))
    return morphology.remove_small_objects(mask, max_size=int(0.1 * cell_area))


def _measure_diameter(rgb: np.ndarray, picture: Image.Image | None = None) -> float:
    """The red-cell diameter in ``rgb``'s pixels, measured on a coarse copy.

    A first foreground (all holes filled) gives the distance transform; its
    peaks lie at the cells' centres and their height is a cell's radius, also
    for cells that touch. The median peak, on the pixels of a first guess, then
    a second pass at that size.
    """
    scale = min(1.0, PROBE_SIDE / max(rgb.shape[:2]))
    probe = _resized(rgb, scale, picture)
    guess = max(probe.shape[:2]) / 12  # any size between a few and a hundred cells per side
    for _ in range(2):
        mask = _foreground(_stain(probe, guess), guess)
        distance = ndi.distance_transform_edt(ndi.binary_fill_holes(mask))
        peaks = feature.peak_local_max(distance, min_distance=max(2, int(guess / 4)), threshold_abs=2,
                                       exclude_border=False)
        if len(peaks) == 0:
            break
        radii = distance[tuple(peaks.T)]
        guess = float(np.clip(2 * np.median(radii[radii >= np.percentile(radii, 25)]), 6, max(probe.shape) / 2))
    return guess / scale


def _markers(distance: np.ndarray, diameter: float) -> np.ndarray:
    """One marker per cell: peaks of the distance transform sharpened by LoG.

    The negative Laplacian of Gaussian at about a cell's radius rises at blob
    centres; multiplying it by the distance (as Malaria Screener does) keeps
    the peaks inside the foreground and favours cell-sized blobs.
    """
    radius = diameter / 2
    inside = distance > 0
    sigmas = [radius / np.sqrt(2) * f for f in LOG_SCALES]
    log = np.max([-s**2 * ndi.gaussian_laplace(distance, s) for s in sigmas], axis=0)
    response = np.clip(log, 0, None) * distance
    peaks = feature.peak_local_max(response, min_distance=max(2, int(MARKER_SPACING * radius)),
                                   threshold_abs=MARKER_FLOOR * radius**2, labels=inside.astype(np.int32),
                                   exclude_border=False)
    markers = np.zeros(distance.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return markers


def _blue_stain(rgb: np.ndarray, foreground: np.ndarray, diameter: float) -> np.ndarray:
    """How much bluer than green each pixel is, above the red cells' own level (0-255): high on nuclei and
    platelets, whose chromatin stains purple, low on the pink or lilac red cells."""
    stain = rgb[..., 2].astype(np.float32) - rgb[..., 1].astype(np.float32)
    stain = filters.gaussian(stain, sigma=max(0.5, diameter / 20), preserve_range=True)
    red_level = float(np.median(stain[foreground])) if foreground.any() else 0.0
    return stain - max(red_level, 0.0)


def _without_platelet_bumps(labels: np.ndarray, purple: np.ndarray, first_white: int,
                            diameter: float) -> np.ndarray:
    """``labels`` with the platelets stuck to a red cell's outline given back to the background.

    A platelet touching a red cell joins its foreground, and the watershed gives it to the cell: cut with the
    cell, its purple chromatin looks like a parasite's. It sits on the outline as a bump, so the outline of each
    red cell holding purple pixels is smoothed (an opening by a disc of radius ``BUMP_RADIUS`` cell diameters) and a
    bump that holds purple pixels is taken off. A parasite lies inside the cell's round outline and is kept.
    """
    red = (labels > 0) & (labels < first_white)
    candidates = np.unique(labels[red & purple])
    if len(candidates) == 0:
        return labels
    disc = morphology.disk(max(1, round(BUMP_RADIUS * diameter)))
    boxes = ndi.find_objects(labels, max_label=int(candidates[-1]))
    trimmed = labels.copy()
    for label in candidates:
        box = boxes[label - 1]
        own = labels[box] == label
        bumps, _ = ndi.label(own & ~ndi.binary_opening(own, structure=disc))
        purple_bumps = np.unique(bumps[(bumps > 0) & purple[box]])
        if len(purple_bumps):
            trimmed[box][np.isin(bumps, purple_bumps)] = 0
    return trimmed


def _nuclei(blue: np.ndarray, diameter: float) -> np.ndarray:
    """Labelled white-cell nuclei: blobs far bluer than green, bigger than a platelet.

    The lobes of one nucleus are grouped when they lie close together, so
    that a neutrophil counts once.
    """
    mask = blue > NUCLEUS_STAIN
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    mask = ndi.binary_closing(mask, morphology.disk(max(1, int(diameter / 6))))
    # Lobes closer than NUCLEUS_GAP red-cell diameters belong to one nucleus, unless two of them are each as big
    # as a whole nucleus: then those are two cells side by side, and each smaller lobe joins the nearer one.
    cell_area = np.pi * diameter**2 / 4
    groups = np.where(mask, measure.label(_dilated(mask, diameter * NUCLEUS_GAP / 2)), 0)
    blobs = measure.label(mask)
    blob_area = np.bincount(blobs.ravel())
    whole = blob_area >= NUCLEUS_WHOLE * cell_area
    whole[0] = False
    group_of_blob = np.zeros(len(blob_area), np.int64)
    group_of_blob[blobs.ravel()] = groups.ravel()
    wholes_in_group = np.bincount(group_of_blob[whole], minlength=groups.max() + 1)
    nuclei = groups
    if (wholes_in_group >= 2).any():
        whole_mask = whole[blobs]
        nearest = ndi.distance_transform_edt(~whole_mask, return_distances=False, return_indices=True)
        nearest_blob = blobs[nearest[0], nearest[1]]
        split = mask & (wholes_in_group[groups] >= 2)
        nuclei = np.where(split, nearest_blob + groups.max(), groups)
    small = np.bincount(nuclei.ravel()) < NUCLEUS_MIN_AREA * cell_area
    small[0] = False
    nuclei[small[nuclei]] = 0
    return segmentation.relabel_sequential(nuclei)[0].astype(np.int32)


def _cytoplasm(rgb: np.ndarray, foreground: np.ndarray, nuclei: np.ndarray, diameter: float) -> np.ndarray:
    """Pixels around a nucleus that differ in colour from the background: a white cell's cytoplasm.

    The cytoplasm is often pale, below the foreground's threshold; its colour
    (violet, blue) still differs from the background's.
    """
    if not nuclei.any():
        return np.zeros_like(foreground)
    background = np.median(rgb[~foreground], axis=0) if (~foreground).any() else np.full(3, 255.0)
    stained = np.linalg.norm(rgb.astype(np.float32) - background, axis=2) > CYTOPLASM_CONTRAST
    near = _dilated(nuclei > 0, diameter * 0.4)
    return ndi.binary_fill_holes(ndi.binary_opening(stained & near, morphology.disk(1)) | (nuclei > 0))


def _segment(work: np.ndarray, diameter: float) -> tuple[np.ndarray, set[int], np.ndarray]:
    """Label image of the work copy (cells only), the set of labels that are white cells, and the stain
    (``_stain``) it was found on."""
    difference = _stain(work, diameter)
    foreground = _foreground(difference, diameter)
    blue = _blue_stain(work, foreground, diameter)
    nuclei = _nuclei(blue, diameter)
    foreground |= _cytoplasm(work, foreground, nuclei, diameter)
    distance = ndi.distance_transform_edt(foreground)
    markers = _markers(distance, diameter)
    markers[_dilated(nuclei > 0, diameter / 4)] = 0
    first_white = int(markers.max()) + 1
    markers[nuclei > 0] = nuclei[nuclei > 0] + first_white - 1
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    if BUMP_RADIUS:
        labels = _without_platelet_bumps(labels, blue > PLATELET_STAIN, first_white, diameter)
    if nuclei.any():  # a white cell reaches no farther than its cytoplasm: the rest is a neighbour's
        far = ndi.distance_transform_edt(nuclei == 0) > WHITE_REACH * diameter
        labels[far & (labels >= first_white)] = 0
    cell_area = np.pi * diameter**2 / 4
    areas = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    smallest = np.full(len(areas), SMALLEST_CELL * cell_area)
    smallest[edge_labels] = SMALLEST_CUT_CELL * cell_area  # a cell cut by the border shows only part of itself
    rejected = areas < smallest
    rejected[first_white:] = False
    rejected[0] = False
    labels[rejected[labels]] = 0
    white = set(range(first_white, int(labels.max()) + 1)) & set(np.unique(labels).tolist())
    return labels, white, difference


def _grey_pixels(difference: np.ndarray, labels: np.ndarray, red: np.ndarray) -> np.ndarray:
    """Dark pixels whose darkening is grey, spread evenly over red, green and blue, unlike the field's cells'.

    A red cell absorbs green far more than red or blue (it looks pink or lilac), and a parasite's chromatin
    (purple) keeps much of its blue or red; a fibre, a hair or a microscope's pointer absorbs all colours
    alike. A pixel is grey when red and blue each drop nearly as much as green (``GREY_EVEN``) and more
    evenly than the field's own red cells do (their median, plus ``GREY_MARGIN``), so that a stain that
    leaves every cell greyish makes no cell grey. ``red``: a boolean per label, True for red cells.
    """
    drop = -difference  # how much darker than the background, per channel
    dark = drop[..., 1] > GREY_DARK
    evenness = np.minimum(drop[..., 0], drop[..., 2]) / np.maximum(drop[..., 1], 1e-3)
    in_red = dark & red[labels]
    if not in_red.any():
        return np.zeros(labels.shape, bool)
    return dark & (evenness > max(GREY_EVEN, float(np.median(evenness[in_red])) + GREY_MARGIN))


def _drawn_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels drawn over the photograph by its software: saturated green (scale bars, their text) or yellow
    (arrows), colours a stained thin film does not show."""
    r, g, b = (rgb[..., c].astype(np.int16) for c in range(3))
    return (g - np.maximum(r, b) > 30) | (np.minimum(r, g) - b > 80)


def _shares(labels: np.ndarray, pixels: np.ndarray, count: int) -> np.ndarray:
    """The share of each label's pixels (0..count) where ``pixels`` is True."""
    flat = labels.ravel()
    total = np.bincount(flat, minlength=count + 1)
    return np.bincount(flat, weights=pixels.ravel(), minlength=count + 1) / np.maximum(total, 1)


def _ellipse_fill(labels: np.ndarray, count: int) -> np.ndarray:
    """Each cell's area over the area of the ellipse with its second moments (labels 1..count; index 0 unused).

    About 1 for a disc or an ellipse, 0.89 for two discs side by side, lower
    for clumps and ragged debris: a convexity measure like solidity, computed
    for all cells at once from pixel sums instead of one hull per cell.
    """
    where = np.flatnonzero(labels)  # the background's sums are not needed: half the pixels or more
    flat = labels.ravel()[where]
    rows, cols = np.divmod(where.astype(np.float64), labels.shape[1])
    n = np.bincount(flat, minlength=count + 1).astype(np.float64)
    safe = np.maximum(n, 1)
    mean_r = np.bincount(flat, rows, count + 1) / safe
    mean_c = np.bincount(flat, cols, count + 1) / safe
    var_r = np.bincount(flat, rows * rows, count + 1) / safe - mean_r**2 + 1 / 12
    var_c = np.bincount(flat, cols * cols, count + 1) / safe - mean_c**2 + 1 / 12
    cov = np.bincount(flat, rows * cols, count + 1) / safe - mean_r * mean_c
    # The ellipse with these moments has semi-axes 2 sqrt(eigenvalue): area 4 pi sqrt(det).
    ellipse = 4 * np.pi * np.sqrt(np.clip(var_r * var_c - cov**2, 1e-12, None))
    fill = np.clip(n / ellipse, 0, 1)
    fill[0] = 0
    return fill


def _source_index(full: int, work: int) -> np.ndarray:
    """For each of ``full`` pixels along an axis, the work-image pixel it takes its label from (centres aligned)."""
    return np.minimum(((np.arange(full) + 0.5) * (work / full)).astype(np.intp), work - 1)


def _single(area: float, fill: float, median_area: float) -> bool:
    low, high = SINGLE_AREA
    return low * median_area <= area <= high * median_area and fill >= SINGLE_FILL


def find_cells(rgb: np.ndarray, *, cell_diameter: float | None = None) -> Detection:
    """Find the red and white cells on a field photograph of any size.

    ``cell_diameter`` is a red cell's diameter in the photograph's pixels; when
    None it is measured on the image. Platelets and debris are left out;
    cells cut by the image border are kept and marked ``touches_border``.
    """
    rgb = _as_rgb(rgb)
    height, width = rgb.shape[:2]
    picture = Image.fromarray(rgb)
    diameter = float(cell_diameter) if cell_diameter else _measure_diameter(rgb, picture)
    if diameter <= 0:
        raise ValueError(f"cell_diameter must be positive, got {cell_diameter}")
    scale = min(2.0, WORK_DIAMETER / diameter)
    work = _resized(rgb, scale, picture)
    del picture
    work_diameter = diameter * scale
    work_labels, white, difference = _segment(work, work_diameter)
    # A red object that is mostly grey is a piece of a fibre (or of the microscope's pointer), not a cell.
    old_count = int(work_labels.max())
    is_red = np.ones(old_count + 1, bool)
    is_red[0] = False
    is_red[list(white)] = False
    grey = _grey_pixels(difference, work_labels, is_red)
    fibre = is_red & (_shares(work_labels, grey, old_count) > FIBRE_SHARE)
    work_labels[fibre[work_labels]] = 0

    # Nearest-neighbour mapping of the photograph's rows and columns onto the work image's: the labels at full
    # size, and each cell's exact area, centre and box there, from sums over the small image.
    source_row = _source_index(height, work.shape[0])
    source_col = _source_index(width, work.shape[1])
    rows_per = np.bincount(source_row, minlength=work.shape[0])
    cols_per = np.bincount(source_col, minlength=work.shape[1])
    row_sums = np.bincount(source_row, weights=np.arange(height), minlength=work.shape[0])
    col_sums = np.bincount(source_col, weights=np.arange(width), minlength=work.shape[1])
    pixel_weights = np.outer(rows_per, cols_per).ravel()
    full_area = np.bincount(work_labels.ravel(), weights=pixel_weights)

    # Number the cells from the top left (ids do not depend on the watershed's marker order); a cell that has no
    # pixel left at full size (only when the work image is larger) is dropped, so the ids run 1..n.
    flat = work_labels.ravel()
    x_sum = np.bincount(flat, weights=np.outer(rows_per, col_sums).ravel(), minlength=len(full_area))
    y_sum = np.bincount(flat, weights=np.outer(row_sums, cols_per).ravel(), minlength=len(full_area))
    work_ids = np.flatnonzero(full_area > 0)
    work_ids = work_ids[work_ids > 0]
    centre_x, centre_y = x_sum[work_ids] / full_area[work_ids], y_sum[work_ids] / full_area[work_ids]
    order = np.lexsort((centre_x, centre_y))
    work_ids, centre_x, centre_y = work_ids[order], centre_x[order], centre_y[order]
    relabel = np.zeros(int(work_labels.max()) + 1, np.int32)
    relabel[work_ids] = np.arange(1, len(work_ids) + 1, dtype=np.int32)
    work_labels = relabel[work_labels]
    # np.take: twice as fast as fancy indexing here (16 MP: 180 -> 80 ms)
    labels = work_labels if work.shape[:2] == (height, width) else np.take(
        np.take(work_labels, source_row, axis=0), source_col, axis=1)
    count = len(work_ids)
    fill = _ellipse_fill(work_labels, count)
    grey_share = _shares(work_labels, grey, count)
    mark_share = _shares(work_labels, _drawn_pixels(work), count)
    areas = np.concatenate([[0], full_area[work_ids]]).astype(np.int64)
    kinds = ["background"] + ["white" if old in white else "red" for old in work_ids]
    red = [i for i in range(1, count + 1) if kinds[i] == "red"]
    convex = [areas[i] for i in red if fill[i] >= SINGLE_FILL]
    typical = float(np.median(convex)) if convex else np.pi * diameter**2 / 4

    cells = []
    for cell_id, where in enumerate(ndi.find_objects(work_labels, max_label=count), start=1):
        x0 = int(np.searchsorted(source_col, where[1].start, side="left"))
        x1 = int(np.searchsorted(source_col, where[1].stop - 1, side="right"))
        y0 = int(np.searchsorted(source_row, where[0].start, side="left"))
        y1 = int(np.searchsorted(source_row, where[0].stop - 1, side="right"))
        kind = kinds[cell_id]
        cells.append(FoundCell(
            id=cell_id, kind=kind, centre=(float(centre_x[cell_id - 1]), float(centre_y[cell_id - 1])),
            box=(x0, y0, x1, y1), area=int(areas[cell_id]),
            single=kind == "red" and _single(areas[cell_id], fill[cell_id], typical)
            and grey_share[cell_id] <= GREY_SHARE and mark_share[cell_id] <= MARK_SHARE,
            touches_border=bool(x0 == 0 or y0 == 0 or x1 == width or y1 == height),
            ellipse_fill=float(fill[cell_id]), grey_share=float(grey_share[cell_id]),
            mark_share=float(mark_share[cell_id])))
    singles = [c.area for c in cells if c.single and not c.touches_border]
    measured = float(np.sqrt(4 * np.median(singles) / np.pi)) if singles else diameter
    return Detection(labels=labels, cells=cells, cell_diameter=float(cell_diameter) if cell_diameter else measured)
