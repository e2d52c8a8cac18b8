"""``bench train``: training steps (images/s) through the real training module on synthetic batches."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable

import torch

from cellscreen.benchmarks._ceiling import ceiling_fields
from cellscreen.benchmarks._common import record, rounded, significant
from cellscreen.errors import UserError

__all__ = ["train_throughput"]


def train_throughput(model: str, *, size: int | None = None, batch_size: int | None = None,
                     precision: str | None = None, channels_last: bool | None = None, steps: int = 20, warmup: int = 3,
                     preset: str = "default", settings: Iterable[str] = (), ceiling_gflops: float | None = None,
                     compiled: bool = False, seed: int = 0) -> dict:
    """Images/s of full training steps (augmentation, forward, loss, backward, optimiser step) through
    ``CellClassifier`` with the preset's optimiser, on one synthetic uint8 batch; ``precision`` as in
    training (bf16-mixed: autocast around the step, as Lightning does).  Settings left as ``None`` come
    from ``preset``.  The learning-rate schedule is left out (it needs a Trainer and costs nothing
    measurable).  ``compiled`` wraps the network in ``torch.compile``; its first step (the compilation) is
    reported as ``compile_seconds`` and left out of the rate."""
    from cellscreen.config import load_config  # keeps start-up fast
    from cellscreen.engine.inference import autocast, resolve_precision
    from cellscreen.engine.module import CellClassifier
    from cellscreen.engine.train import build_model
    from cellscreen.models import count_flops, get_data_config

    if steps < 1 or warmup < 0:
        raise UserError("--steps must be at least 1 and --warmup not negative")
    config = load_config(preset, {"model": model, "input_size": size, "batch_size": batch_size,
                                  "precision": precision, "channels_last": channels_last},
                         [*settings, "schedule=none"])
    config.precision = resolve_precision(config.precision, "cpu")  # the step below runs on the CPU
    size = config.input_size or get_data_config(config.model).input_size
    torch.manual_seed(seed)
    net = build_model(config, num_classes=2, input_size=size)
    flops = count_flops(net, size)
    params = sum(p.numel() for p in net.parameters())
    module = CellClassifier(net, config)
    optimizer = module.configure_optimizers()
    if compiled:
        module.model = torch.compile(module.model)
    module.train()
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (config.batch_size, 3, size, size), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 2, (config.batch_size,), generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(config.precision):
            loss = module.training_step((images, targets), 0)
        loss.backward()
        optimizer.step()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to: on purpose
        extra = {}
        if compiled:
            start = time.perf_counter()
            step()
            extra["compile_seconds"] = rounded(time.perf_counter() - start)
        for _ in range(warmup):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - start
    images_per_s = steps * config.batch_size / seconds
    achieved = 3 * flops * images_per_s / 1e9
    return record("train", model=config.model, size=size, batch_size=config.batch_size, precision=config.precision,
                  channels_last=config.channels_last, compiled=compiled, **extra, optimizer=config.optimizer,
                  preset=preset, params=params, steps=steps, warmup_steps=warmup, seconds=rounded(seconds),
                  step_ms=rounded(1000 * seconds / steps, 2),
                  images_per_s=rounded(images_per_s, 1), forward_gflops_per_image=significant(flops / 1e9),
                  gflops_per_s=significant(achieved), **ceiling_fields(ceiling_gflops, achieved))
