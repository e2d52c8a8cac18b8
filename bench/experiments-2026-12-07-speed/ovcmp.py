import importlib.util, sys, time, io, numpy as np
sys.path.insert(0, "/work/main/bench")
from pathlib import Path
from PIL import Image
spec = importlib.util.spec_from_file_location("base_overlay", "/tmp/speed-base/cellscreen/screen/overlay.py")
base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)
from cellscreen.screen import overlay
from cellscreen.screen.detect import find_cells
from cellscreen.data.images import load_rgb
from screen_detection import big_field_image
for name, rgb in (("chula", load_rgb("/work/shared/data/smears/chula-rbc12/Dataset/100.jpg")), ("txl", load_rgb(sorted(Path("/work/shared/data/smears/txl-pbc/TXL_PBC/images/train").glob("*.jpg"))[5])), ("big", big_field_image(Path("/work/shared/data")))):
    det = find_cells(rgb)
    rng = np.random.default_rng(0)
    colours = {c.id: tuple(int(v) for v in rng.integers(0, 255, 3)) for c in det.cells if rng.random() < 0.9}
    t = time.process_time(); a = base.draw_overlay(rgb, det.labels, colours); ta = time.process_time() - t
    t = time.process_time(); b = overlay.draw_overlay(rgb, det.labels, colours); tb = time.process_time() - t
    t = time.process_time(); pa = base.overlay_png(a); tpa = time.process_time() - t
    t = time.process_time(); pb = overlay.overlay_png(b); tpb = time.process_time() - t
    same = np.array_equal(np.asarray(Image.open(io.BytesIO(pa))), np.asarray(Image.open(io.BytesIO(pb))))
    print(name, "identical pixels", np.array_equal(a, b), "decoded PNGs equal", same, "draw ms %.0f -> %.0f, png ms %.0f -> %.0f, KB %d -> %d" % (1000*ta, 1000*tb, 1000*tpa, 1000*tpb, len(pa)//1024, len(pb)//1024))
