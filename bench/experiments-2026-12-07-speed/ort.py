import time, numpy as np, onnxruntime as ort, statistics as st
blob = open("cellscreen/weights/malaria/model.onnx","rb").read()
x = np.random.default_rng(0).integers(0,255,(107,64,64,3),dtype=np.uint8)
for threads in (1,2):
  for spin in ("0","1"):
    o = ort.SessionOptions(); o.intra_op_num_threads=threads; o.log_severity_level=3
    o.add_session_config_entry("session.intra_op.allow_spinning", spin)
    s = ort.InferenceSession(blob, o, providers=["CPUExecutionProvider"])
    for _ in range(3): s.run(None, {"images": x})
    w=[];c=[]
    for _ in range(15):
        t=time.perf_counter(); p=time.process_time(); s.run(None, {"images": x}); w.append(time.perf_counter()-t); c.append(time.process_time()-p)
    print(threads, spin, "wall ms med %.1f min %.1f  cpu med %.1f" % (1000*st.median(w), 1000*min(w), 1000*st.median(c)))
