"""Recipe search for NIH malaria cells on a slide-disjoint 5-fold split.

Usage: python train.py --model small --size 64 --epochs 12 --folds 0 [--bf16] [--cl]
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import common

torch.set_num_threads(int(os.environ.get("NT", "2")))

# ---------------------------------------------------------------- models
def cbr(ci, co, s=1):
    return nn.Sequential(nn.Conv2d(ci, co, 3, s, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))

class SmallVGG(nn.Module):
    """channels ch*(1,2,4,8), two 3x3 conv-BN-ReLU per stage, maxpool between, GAP."""
    def __init__(self, ch=32, nconv=2, nclass=2):
        super().__init__()
        c = [ch, ch * 2, ch * 4, ch * 8]
        layers, ci = [], 3
        for i, co in enumerate(c):
            for j in range(nconv):
                layers.append(cbr(ci, co)); ci = co
            if i < len(c) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(ci, nclass))
    def forward(self, x):
        return self.head(self.features(x))

class SeedCNN(nn.Module):
    """The seed study's Keras CNN (128x128 input, sigmoid output)."""
    def __init__(self, size=128):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
            nn.Flatten(), nn.Linear(64 * (size // 8) ** 2, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
    def forward(self, x):
        return self.f(x)

def make_model(name, size):
    if name == "small":   return SmallVGG(32, 2)
    if name == "small1":  return SmallVGG(32, 1)
    if name == "tiny":    return SmallVGG(16, 2)
    if name == "seed":    return SeedCNN(size)
    import timm
    return timm.create_model(name, pretrained=False, num_classes=2)

# ---------------------------------------------------------------- augmentation
def augment(x, gen):
    """x: uint8 NHWC batch -> float NCHW in [0,1], randomly rotated/flipped/jittered."""
    x = x.permute(0, 3, 1, 2).float().div_(255)
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for kk in range(4):
        for ff in (False, True):
            m = (k == kk) & (flip == ff)
            if m.any():
                t = x[m]
                if ff: t = t.flip(3)
                out[m] = torch.rot90(t, kk, (2, 3))
    b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2   # brightness +-10%
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2   # contrast +-10%
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * c + mean) * b
    return out.clamp_(0, 1)

# ---------------------------------------------------------------- train / eval
def roc_auc(y, s):
    order = np.argsort(s); r = np.empty(len(s)); r[order] = np.arange(1, len(s) + 1)
    # average ranks for ties
    s_sorted = s[order]; i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s_sorted[j + 1] == s_sorted[i]: j += 1
        if j > i: r[order[i:j + 1]] = (i + j + 2) / 2
        i = j + 1
    npos = y.sum(); nneg = len(y) - npos
    return (r[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg)

def run(a, fold):
    t0 = time.time()
    xtr, ytr, xte, yte, _ = common.load(a.size, fold)
    xtr = torch.from_numpy(xtr); ytr = torch.from_numpy(ytr)
    xte = torch.from_numpy(xte)
    mean = (xtr[:2000].float().mean(dim=(0, 1, 2)) / 255).view(1, 3, 1, 1)
    std = (xtr[:2000].float().std(dim=(0, 1, 2)) / 255).view(1, 3, 1, 1)
    torch.manual_seed(a.seed); gen = torch.Generator().manual_seed(a.seed)
    model = make_model(a.model, a.size)
    binary = a.model == "seed"
    mf = torch.channels_last if a.cl else torch.contiguous_format
    model = model.to(memory_format=mf)
    n = len(xtr); steps = n // a.bs
    if a.opt == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        sched = None
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps * a.epochs, pct_start=0.25)
    load_time = time.time() - t0
    t_train = time.time(); seen = 0
    for ep in range(a.epochs):
        model.train(); perm = torch.randperm(n, generator=gen); te = time.time(); tl = 0.0
        for s in range(steps):
            idx = perm[s * a.bs:(s + 1) * a.bs]
            xb = augment(xtr[idx], gen) if a.aug else xtr[idx].permute(0, 3, 1, 2).float().div(255)
            xb = ((xb - mean) / std).contiguous(memory_format=mf)
            yb = ytr[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                out = model(xb)
            out = out.float()
            if binary:
                loss = F.binary_cross_entropy_with_logits(out.squeeze(1), yb.float())
            else:
                loss = F.cross_entropy(out, yb, label_smoothing=a.ls)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            if sched: sched.step()
            tl += loss.item(); seen += len(idx)
            if a.max_steps and s + 1 >= a.max_steps: break
        ep_time = time.time() - te
        msg = f"  ep {ep+1} loss {tl/(s+1):.4f} {ep_time:.1f}s {(s+1)*a.bs/ep_time:.0f} img/s"
        if a.eval_every:
            acc, auc = evaluate(model, xte, yte, mean, std, mf, a, binary)
            msg += f" acc {acc:.4f} auc {auc:.4f}"
        print(msg, flush=True)
    train_time = time.time() - t_train
    te = time.time()
    acc, auc = evaluate(model, xte, yte, mean, std, mf, a, binary)
    eval_time = time.time() - te
    res = dict(fold=fold, acc=round(acc, 4), auc=round(auc, 4), train_s=round(train_time, 1), eval_s=round(eval_time, 1),
               total_s=round(time.time() - t0, 1), load_s=round(load_time, 1), train_img_s=round(seen / train_time, 1),
               params=sum(p.numel() for p in model.parameters()))
    return res

@torch.no_grad()
def evaluate(model, xte, yte, mean, std, mf, a, binary):
    model.eval(); scores = []
    views = [(0, False)] if not a.tta else [(k, f) for k in range(4) for f in (False, True)][: a.tta]
    for i in range(0, len(xte), 256):
        xb = xte[i:i + 256].permute(0, 3, 1, 2).float().div(255)
        xb = ((xb - mean) / std)
        acc_s = 0
        for k, f in views:
            v = torch.rot90(xb.flip(3) if f else xb, k, (2, 3)).contiguous(memory_format=mf)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                o = model(v).float()
            acc_s = acc_s + (torch.sigmoid(o[:, 0]) if binary else o.softmax(1)[:, 1])
        scores.append(acc_s / len(views))
    s = torch.cat(scores).numpy()
    acc = float(((s > 0.5).astype(int) == yte).mean())
    return acc, float(roc_auc(yte, s.astype(np.float64)))

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small"); ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=12); ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3); ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--opt", default="adamw"); ap.add_argument("--ls", type=float, default=0.05)
    ap.add_argument("--bf16", action="store_true"); ap.add_argument("--cl", action="store_true")
    ap.add_argument("--no-aug", dest="aug", action="store_false"); ap.add_argument("--tta", type=int, default=0)
    ap.add_argument("--folds", default="0"); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0); ap.add_argument("--eval-every", action="store_true")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    print(vars(a), flush=True)
    allres = []
    for f in a.folds.split(","):
        r = run(a, f); allres.append(r); print(json.dumps(r), flush=True)
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(json.dumps({"args": vars(a), "results": allres}) + "\n")
