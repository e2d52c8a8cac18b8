import sys, numpy as np
from pathlib import Path
from cellscreen.data.images import load_rgb
from cellscreen.screen.learned import LearnedFinder
from cellscreen.screen.annotations import read_yolo_boxes, YOLO_KINDS
root = Path("../shared/data/smears/txl-pbc/TXL_PBC")
def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - ix*iy
    return ix*iy/u
finders = [LearnedFinder(r) for r in sys.argv[1:3]]
for stem in sys.argv[3:]:
    img = next((root/"images/train").glob(stem+"*"))
    rgb = load_rgb(img)
    lab = [c for c in read_yolo_boxes(root/"labels/train"/(img.stem+".txt"), width=rgb.shape[1], height=rgb.shape[0], kinds=YOLO_KINDS) if c.kind=="white"]
    for f in finders:
        det = f.find_cells(rgb)
        ws = [c for c in det.cells if c.kind=="white"]
        out = []
        for l in lab:
            lw = (l.box[2]-l.box[0]) 
            best = min(ws, key=lambda c: np.hypot(c.centre[0]-l.centre[0], c.centre[1]-l.centre[1]), default=None)
            if best is None: out.append("none"); continue
            d = np.hypot(best.centre[0]-l.centre[0], best.centre[1]-l.centre[1])
            out.append(f"d/w {d/lw:.2f} iou {iou(best.box, l.box):.2f} size {(best.box[2]-best.box[0])/lw:.2f}")
        print(f.run.name, stem, "nlab", len(lab), "nfound", len(ws), "diam", round(det.cell_diameter), "|", "; ".join(out))
