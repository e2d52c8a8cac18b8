import time, torch, torch.nn as nn
torch.set_num_threads(2)
conv = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
x = torch.randn(64, 64, 32, 32)
for name, bf, cl in [("fp32", False, False), ("fp32 cl", False, True), ("bf16", True, False), ("bf16 cl", True, True)]:
    m = conv.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    xx = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format).requires_grad_()
    for i in range(4):
        if i == 1: t = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            y = m(xx)
        y.float().sum().backward()
    dt = (time.time() - t) / 3
    gmac = 64 * 32 * 32 * 64 * 64 * 9 * 3 / 1e9
    print(f"{name}: {dt*1000:.0f} ms/iter fwd+bwd, {gmac/dt:.1f} GMAC/s", flush=True)
