import time, numpy as np
from PIL import Image
from cellscreen.data.images import load_rgb, resize_square
from cellscreen.screen.detect import find_cells
from cellscreen.screen import cut
rgb = load_rgb("/work/shared/data/smears/chula-rbc12/Dataset/100.jpg")
det = find_cells(rgb); s = cut.field_scale(det.cell_diameter)
red = [c for c in det.red]
print(len(red), "scale", s)
def T(name, fn, n=5):
    t = time.process_time()
    for _ in range(n): r = fn()
    print(name, "ms/field %.1f" % (1000*(time.process_time()-t)/n)); return r
crops = T("cut_cells", lambda: cut.cut_cells(rgb, det.labels, red, s))
T("model_batch", lambda: cut.model_batch(crops, 64))
field = Image.fromarray(rgb)
regions = []
for c in red:
    x0,y0,x1,y1 = c.box; regions.append((max(0,x0-2),max(0,y0-2),min(640,x1+2),min(480,y1+2)))
sizes = [(round((r[2]-r[0])*s), round((r[3]-r[1])*s)) for r in regions]
T("rgb up (box)", lambda: [field.resize(sz, Image.Resampling.BICUBIC, box=r) for r, sz in zip(regions, sizes)])
T("rgb up (crop)", lambda: [Image.fromarray(np.ascontiguousarray(rgb[r[1]:r[3], r[0]:r[2]])).resize(sz, Image.Resampling.BICUBIC) for r, sz in zip(regions, sizes)])
masks = [np.ascontiguousarray(det.labels[r[1]:r[3], r[0]:r[2]] == c.id).view(np.uint8)*np.uint8(255) for r, c in zip(regions, red)]
T("mask up", lambda: [np.asarray(Image.fromarray(m).resize(sz, Image.Resampling.BILINEAR)) for m, sz in zip(masks, sizes)])
T("mask up NEAREST", lambda: [np.asarray(Image.fromarray(m).resize(sz, Image.Resampling.NEAREST)) for m, sz in zip(masks, sizes)])
T("resize_square", lambda: [resize_square(c, 64) for c in crops])
T("whole up", lambda: field.resize((round(640*s), round(480*s)), Image.Resampling.BICUBIC))
