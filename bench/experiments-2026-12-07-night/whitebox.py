"""Held-out TXL white F1 of a learned finder with white boxes from (a) the network, (b) the watershed outline."""
import sys
import cellscreen.screen.learned as L
from cellscreen.cli import main
mode = sys.argv[1]
orig = L._outlined
if mode == "outline":
    def patched(shape, foreground, peaks, kinds, diameter, *, boxes):
        det = orig(shape, foreground, peaks, kinds, diameter, boxes=boxes)
        import numpy as np
        from scipy import ndimage as ndi
        from dataclasses import replace
        where = ndi.find_objects(det.labels, max_label=len(det.cells))
        cells = []
        for c, w in zip(det.cells, where):
            if c.kind == "white" and w is not None:
                c = replace(c, box=(w[1].start, w[0].start, w[1].stop, w[0].stop))
            cells.append(c)
        return L.Detection(labels=det.labels, cells=cells, cell_diameter=det.cell_diameter)
    L._outlined = patched
sys.exit(main(["cells", "score", "--dataset", "txl-pbc", "--data", "/work/shared/data", "--detector", f"learned:{sys.argv[2]}",
               "--out", f"/tmp/wb-{mode}.csv", "--overwrite", "-q"]))
