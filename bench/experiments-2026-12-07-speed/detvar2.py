"""screen_detection --part tuning --skip big with _measure_diameter's first pass on a coarser probe."""
import sys
import numpy as np
from scipy import ndimage as ndi
from skimage import feature
sys.path.insert(0, "/work/main/bench")
from cellscreen.screen import detect as d
FIRST = int(sys.argv[1])
def measure(rgb, picture=None):
    guess_px = None
    for side, passes in ((FIRST, 1), (d.PROBE_SIDE, 1)):
        scale = min(1.0, side / max(rgb.shape[:2]))
        probe = d._resized(rgb, scale, picture)
        guess = max(probe.shape[:2]) / 12 if guess_px is None else guess_px * scale
        mask = d._foreground(d._stain(probe, guess), guess)
        distance = ndi.distance_transform_edt(ndi.binary_fill_holes(mask))
        peaks = feature.peak_local_max(distance, min_distance=max(2, int(guess / 4)), threshold_abs=2, exclude_border=False)
        if len(peaks) == 0:
            return (guess_px if guess_px else guess / scale)
        radii = distance[tuple(peaks.T)]
        guess = float(np.clip(2 * np.median(radii[radii >= np.percentile(radii, 25)]), 6, max(probe.shape) / 2))
        guess_px = guess / scale
    return guess_px
d._measure_diameter = measure
sys.argv = ["screen_detection.py", "--part", "tuning", "--skip", "big"]
import screen_detection
screen_detection.main()
