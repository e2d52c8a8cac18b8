"""What the stages of a network respond to: feature maps, strongest channels and filter pictures.

These are the "advanced" pictures of ``cellscreen explain``, for those who
want to look inside the network; each is named by its stage
(``stages.Stage.title``) rather than by a layer's name in the code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from cellscreen.engine.inference import normalise
from cellscreen.explain.stages import Stage, last_stage, network_stages

__all__ = ["feature_maps", "top_channels", "visualise_filters"]


def _capture(model: nn.Module, x: torch.Tensor, modules: list[nn.Module]) -> list[torch.Tensor]:
    outputs: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, args, out, k=k: outputs.__setitem__(k, out))
               for k, m in enumerate(modules)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [outputs[k] for k in range(len(modules)) if k in outputs]


def _normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Each map stretched to 0..1 on its own (a flat map stays black)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0)


def _tile(maps: np.ndarray, tile: int, columns: int | None = None) -> Image.Image:
    """Grey tiles of ``(C, H, W)`` maps in 0..1, a 1-pixel gap between them."""
    count = len(maps)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    sheet = Image.new("L", (columns * (tile + 1), rows * (tile + 1)), 40)
    for k, m in enumerate(maps):
        image = Image.fromarray((m * 255).astype(np.uint8)).resize((tile, tile), Image.NEAREST)
        sheet.paste(image, ((k % columns) * (tile + 1), (k // columns) * (tile + 1)))
    return sheet


def feature_maps(model: nn.Module, x: torch.Tensor, *, max_channels: int = 64, tile: int = 48,
                 stages: list[Stage] | None = None) -> list[tuple[Stage, Image.Image]]:
    """One tiled sheet per stage for the single image ``x`` (``(1, C, H, W)``, normalised)."""
    stages = stages if stages is not None else network_stages(model)
    outputs = _capture(model, x, [s.module for s in stages])
    return [(stage, _tile(_normalise_maps(out[0, :max_channels].float().numpy()), tile))
            for stage, out in zip(stages, outputs)]


def top_channels(model: nn.Module, x: torch.Tensor, picture: np.ndarray, *, count: int = 16,
                 tile: int = 64, stages: list[Stage] | None = None) -> tuple[Image.Image, list[int]]:
    """The input beside the ``count`` channels of the last stage with the highest mean activation."""
    layer = last_stage(stages if stages is not None else network_stages(model)).module
    out = _capture(model, x, [layer])[0][0].float()
    strength = out.mean(dim=(1, 2))
    order = torch.argsort(strength, descending=True)[:count].tolist()
    maps = _tile(_normalise_maps(out[order].numpy()), tile, columns=8).convert("RGB")
    sheet = Image.new("RGB", (tile * 2 + 8 + maps.width, max(tile * 2, maps.height)), (40, 40, 40))
    sheet.paste(Image.fromarray(picture).resize((tile * 2, tile * 2)), (0, 0))
    sheet.paste(maps, (tile * 2 + 8, 0))
    draw = ImageDraw.Draw(sheet)
    for k, channel in enumerate(order):
        draw.text((tile * 2 + 8 + (k % 8) * (tile + 1) + 2, (k // 8) * (tile + 1) + 1), str(channel),
                  fill=(255, 200, 0))
    return sheet, order


def visualise_filters(model: nn.Module, *, channels: list[int] | None = None, steps: int = 40, lr: float = 0.05,
                      seed: int = 0, stages: list[Stage] | None = None) -> tuple[Stage, Image.Image]:
    """Inputs optimised (Adam, from grey noise, small L2 penalty) to excite channels of the last stage."""
    stage = last_stage(stages if stages is not None else network_stages(model))
    layer = stage.module
    config = model.data_config
    size, in_chans = config.input_size, len(config.mean)
    generator = torch.Generator().manual_seed(seed)
    channels = channels if channels is not None else list(range(min(8, stage.channels)))
    pictures = []
    for channel in channels:
        image = (0.5 + 0.05 * torch.randn(1, in_chans, size, size, generator=generator)).requires_grad_(True)
        optimiser = torch.optim.Adam([image], lr=lr)
        seen = {}
        handle = layer.register_forward_hook(lambda mod, args, out: seen.__setitem__("out", out))
        try:
            for _ in range(steps):
                optimiser.zero_grad()
                model(normalise(image.clamp(0, 1), config))
                loss = -seen["out"][0, channel].mean() + 1e-3 * (image - 0.5).pow(2).sum()
                loss.backward()
                optimiser.step()
        finally:
            handle.remove()
        picture = image.detach().clamp(0, 1)[0]
        if in_chans != 3:
            picture = picture[:1].expand(3, -1, -1)
        pictures.append((picture.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    tile = max(size, 64)
    sheet = Image.new("RGB", (len(pictures) * (tile + 1), tile), (40, 40, 40))
    for k, p in enumerate(pictures):
        sheet.paste(Image.fromarray(p).resize((tile, tile)), (k * (tile + 1), 0))
    return stage, sheet
