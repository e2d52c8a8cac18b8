import time, numpy as np, onnxruntime as ort, statistics as st, pickle
from pathlib import Path
from cellscreen.screen import cut
from cellscreen.data.images import load_rgb
from cellscreen.screen.detect import find_cells
blob = open("cellscreen/weights/malaria/model.onnx","rb").read()
chula = sorted(Path("/work/shared/data/smears/chula-rbc12/Dataset").glob("*.jpg"), key=lambda q: int(q.stem))[60:72]
batches = []
for f in chula:
    rgb = load_rgb(f); det = find_cells(rgb)
    batches.append(cut.model_batch(cut.cut_cells(rgb, det.labels, det.red, cut.field_scale(det.cell_diameter)), 64))
def make(threads, denormal):
    o = ort.SessionOptions(); o.intra_op_num_threads=threads; o.log_severity_level=3
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if denormal: o.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(blob, o, providers=["CPUExecutionProvider"])
for threads in (1, 2):
    a, b = make(threads, False), make(threads, True)
    ta, tb, d = [], [], 0.0
    for rep in range(3):
        for x in batches:
            c = time.process_time(); pa = a.run(None, {"images": x})[0]; ta.append(time.process_time() - c)
            c = time.process_time(); pb = b.run(None, {"images": x})[0]; tb.append(time.process_time() - c)
            d = max(d, float(np.abs(pa - pb).max()))
    print(f"threads {threads}: CPU ms per field default {1000*np.median(ta):.1f}, denormals as zero {1000*np.median(tb):.1f}; sum ratio {sum(tb)/sum(ta):.3f}; max |dp| {d:.2e}")
