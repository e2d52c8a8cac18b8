"""What a network sees: feature maps, strongest channels, filter visualisations and Grad-CAM.

``explain(model, images, out)`` writes, for each image (``NAME`` = its file
stem):

- ``NAME-featuremaps-LAYER.png``: every channel of each block's output, tiled
  and normalised for display one by one, as the ALL study drew them;
- ``NAME-top-channels.png``: the input beside the 16 channels of the last block
  that respond most strongly (mean activation), as the malaria study showed;
- ``NAME-gradcam.png``: the input, the Grad-CAM heat map for the predicted
  class (the ``grad-cam`` package) and the overlay, with the probability;

and once per model ``filters-LAYER.png``: inputs optimised from grey noise to
excite single channels of the last block (activation maximisation).  An
``index.html`` shows them all.  The layer Grad-CAM reads is chosen per
architecture: the last block of the backbone (a ResNet's ``layer4``, VGG's
last convolution, EfficientNet's ``conv_head``...).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from cellscreen.engine.inference import logits_to_proba, normalise
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.models.transfer import backbone_blocks
from cellscreen.serve.predict import list_inputs, prepare_image

__all__ = ["explain", "images_to_explain", "target_layer", "feature_maps", "top_channels", "visualise_filters",
           "grad_cam"]


def _module_of(block: nn.Module) -> nn.Module:
    """A block that is a group of layers (conv + its batch norm) is read at its last layer."""
    return block[-1] if isinstance(block, nn.ModuleList) else block


def layers_to_show(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone blocks, input to output, whose outputs are feature maps."""
    return [(name, _module_of(block)) for name, block in backbone_blocks(model)]


def target_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer Grad-CAM reads: the last backbone block."""
    return layers_to_show(model)[-1]


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


def feature_maps(model: nn.Module, x: torch.Tensor, *, max_channels: int = 64, tile: int = 48) -> list[tuple[str, Image.Image]]:
    """One tiled sheet per backbone block for the single image ``x`` (``(1, C, H, W)``, normalised)."""
    layers = layers_to_show(model)
    outputs = _capture(model, x, [m for _, m in layers])
    sheets = []
    for (name, _), out in zip(layers, outputs):
        if out.ndim != 4:
            continue
        maps = out[0, :max_channels].float().numpy()
        sheets.append((name, _tile(_normalise_maps(maps), tile)))
    return sheets


def top_channels(model: nn.Module, x: torch.Tensor, picture: np.ndarray, *, count: int = 16,
                 tile: int = 64) -> tuple[Image.Image, list[int]]:
    """The input beside the ``count`` channels of the last block with the highest mean activation."""
    _, layer = target_layer(model)
    out = _capture(model, x, [layer])[0][0].float()
    strength = out.mean(dim=(1, 2))
    order = torch.argsort(strength, descending=True)[:count].tolist()
    maps = _tile(_normalise_maps(out[order].numpy()), tile, columns=8).convert("RGB")
    sheet = Image.new("RGB", (tile * 2 + 8 + maps.width, max(tile * 2, maps.height)), (40, 40, 40))
    sheet.paste(Image.fromarray(picture).resize((tile * 2, tile * 2)), (0, 0))
    sheet.paste(maps, (tile * 2 + 8, 0))
    draw = ImageDraw.Draw(sheet)
    for k, channel in enumerate(order):
        draw.text((tile * 2 + 8 + (k % 8) * (tile + 1) + 2, (k // 8) * (tile + 1) + 1), str(channel), fill=(255, 200, 0))
    return sheet, order


def visualise_filters(model: nn.Module, *, channels: list[int] | None = None, steps: int = 40, lr: float = 0.05,
                      seed: int = 0) -> tuple[str, Image.Image]:
    """Inputs optimised (Adam, from grey noise, small L2 penalty) to excite channels of the last block."""
    name, layer = target_layer(model)
    config = model.data_config
    size, in_chans = config.input_size, len(config.mean)
    generator = torch.Generator().manual_seed(seed)
    probe = _capture(model, torch.zeros(1, in_chans, size, size), [layer])[0]
    channels = channels if channels is not None else list(range(min(8, probe.shape[1])))
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
    return name, sheet


def _cam_mask(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    _, layer = target_layer(model)
    single = bool(getattr(model, "single_logit", False))
    goal = BinaryClassifierOutputTarget(target) if single else ClassifierOutputTarget(target)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[goal])[0]


def cam_overlay(model: nn.Module, x: torch.Tensor, picture: np.ndarray, target: int) -> Image.Image:
    """The Grad-CAM heat map for class index ``target`` laid over the picture (for the web page)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = picture.astype(np.float32) / 255
    return Image.fromarray(show_cam_on_image(rgb, _cam_mask(model, x, target), use_rgb=True))


def grad_cam(model: nn.Module, x: torch.Tensor, picture: np.ndarray, target: int) -> Image.Image:
    """Input, heat map and overlay side by side, for class index ``target``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    mask = _cam_mask(model, x, target)
    rgb = picture.astype(np.float32) / 255
    overlay = show_cam_on_image(rgb, mask, use_rgb=True)
    heat = show_cam_on_image(np.zeros_like(rgb), mask, use_rgb=True, image_weight=0.0)
    side = max(picture.shape[0], 128)
    sheet = Image.new("RGB", (3 * side + 2, side), (40, 40, 40))
    for k, part in enumerate((picture, heat, overlay)):
        sheet.paste(Image.fromarray(part).resize((side, side)), (k * (side + 1), 0))
    return sheet


def images_to_explain(checkpoint, inputs: list[str | Path], *, max_images: int = 16
                      ) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first ``max_images`` readable images among ``inputs`` (files or folders), each prepared at the
    checkpoint's input size and named by its file stem (a stem seen before in another folder gets ``_``
    appended), and the notes to show the user: each file skipped and why, and whether the count was capped."""
    config = checkpoint.data_config
    images, names, notes = [], set(), []
    for path, reason in list_inputs(inputs):
        picture = reason or prepare_image(path, config.input_size, checkpoint.border_crop, config.interpolation)
        if isinstance(picture, str):
            notes.append(f"skipped {path}: {picture}")
            continue
        if len(images) == max_images:
            notes.append(f"only the first {max_images} images are explained (--max-images)")
            break
        name = path.stem
        while name in names:  # same stem in two folders
            name += "_"
        names.add(name)
        images.append((name, picture))
    return images, notes


def explain(checkpoint, images: list[tuple[str, np.ndarray]], out: str | Path, *, filters: bool = True) -> Path:
    """Write every picture for ``images`` (``(name, (H, W, 3) uint8 at the model's input size)``) into ``out``
    and return the HTML index."""
    if not images:
        raise UserError("no readable images to explain")
    model = checkpoint.model
    if checkpoint.meta.get("kind", "network") != "network":
        raise UserError("explain needs a network checkpoint; an SVM or an ensemble has no layers of its own to show")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)  # Grad-CAM needs gradients even where fine-tuning froze them
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    classes = checkpoint.classes
    for name, picture in images:
        x = normalise(torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].contiguous(), model.data_config)
        with torch.no_grad():
            proba = logits_to_proba(model(x), getattr(model, "temperature", 1.0))[0].numpy()
        predicted = int(proba.argmax())
        files = []
        for layer, sheet in feature_maps(model, x):
            files.append((f"{name}-featuremaps-{layer}.png", f"feature maps of {layer}"))
            sheet.save(out / files[-1][0])
        sheet, order = top_channels(model, x, picture)
        files.append((f"{name}-top-channels.png", f"strongest channels of {target_layer(model)[0]}: {order}"))
        sheet.save(out / files[-1][0])
        files.append((f"{name}-gradcam.png", f"Grad-CAM for {classes[predicted]} (layer {target_layer(model)[0]})"))
        grad_cam(model, x, picture, predicted).save(out / files[-1][0])
        verdict = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, proba))
        sections.append((name, verdict, files))
    extra = []
    if filters:
        layer, sheet = visualise_filters(model)
        extra.append((f"filters-{layer}.png", f"inputs that excite channels 0-7 of {layer}"))
        sheet.save(out / extra[-1][0])
    return _write_index(out, checkpoint, sections, extra)


def _write_index(out: Path, checkpoint, sections, extra) -> Path:
    parts = [f"<!doctype html><meta charset='utf-8'><title>cellscreen explain</title>"
             f"<style>body{{font-family:sans-serif;background:#fafafa}} img{{image-rendering:pixelated;"
             f"max-width:100%;border:1px solid #ccc}} figure{{display:inline-block;margin:8px}}</style>"
             f"<h1>{html.escape(checkpoint.meta['model'])}: what it sees</h1>"]
    for name, verdict, files in sections:
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(verdict)}</p>")
        parts += [f"<figure><img src='{html.escape(f)}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}"
                  f"</figcaption></figure>" for f, c in files]
    if extra:
        parts.append("<h2>Filters</h2>")
        parts += [f"<figure><img src='{html.escape(f)}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}"
                  f"</figcaption></figure>" for f, c in extra]
    index = out / "index.html"
    atomic_write(index, "\n".join(parts) + "\n")
    return index
