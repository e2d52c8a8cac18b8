"""Training-step throughput (img/s) of candidate models, synthetic input, fp32/bf16."""
import sys, os, time, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import make_model
torch.set_num_threads(int(os.environ.get("NT", "2")))
for spec in sys.argv[1:]:
    name, size, mode = spec.split(":")
    bf = "bf16" in mode; cl = "cl" in mode
    m = make_model(name, int(size)); mf = torch.channels_last if cl else torch.contiguous_format
    m = m.to(memory_format=mf)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x = torch.randn(64, 3, int(size), int(size)).contiguous(memory_format=mf); y = torch.randint(0, 2, (64,))
    n = 0
    for i in range(12):
        if i == 2: t = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            o = m(x).float()
        loss = F.binary_cross_entropy_with_logits(o[:, 0], y.float()) if name == "seed" else F.cross_entropy(o, y)
        opt.zero_grad(); loss.backward(); opt.step()
        if i >= 2: n += 64
    print(f"{spec}: {n/(time.time()-t):.0f} img/s  params {sum(p.numel() for p in m.parameters())/1e6:.2f}M", flush=True)
