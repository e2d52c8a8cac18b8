"""Class activation maps (CAM): where in the cell the evidence for a class lies, drawn with a colour scale.

The maps come from the ``grad-cam`` package (``pytorch_grad_cam``): Grad-CAM
(or the method the model names, below) at the two stages ``stages.cam_stages`` picks (32 x 32 and 16 x 16 for the
default model, not its 2 x 2 last stage), averaged.  On the default model's
parasitized cells whose stained body is clear, the hottest pixel of that map
fell on the body for 0.98 of 180 test cells and 0.99 of 616 validation cells,
against 0.92 and 0.81 for Grad-CAM at the 16 x 16 stage alone, 0.90 and 0.95
for LayerCAM there and 0.96 and 0.96 for Grad-CAM++; on all 527 such test
cells, 0.98 (``bench/cam_pointing.py``; the last stage, read before, scored 0).
On zoo models trained briefly here (same 527 cells) the same map pointed for 0.84 of cells on ResNet-10-T
(0.89 with LayerCAM) but only 0.25 on the VGG-style ``seed_allnet``, where LayerCAM at the same stages
pointed for 0.99; LayerCAM dropped the default model to 0.83.  No one method suits every network, so
each registered model names its own (``register_model(cam_method=...)``, carried as ``model.cam_method``):
Grad-CAM unless measured otherwise, LayerCAM for ``seed_allnet``.  A ``method`` given here overrides it.
Every map is returned at the input's size, 0 (no evidence) to 1 (the
strongest), and drawn over the cell at a size a person can read, with a colour
bar from "low" to "high" relevance.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from cellscreen.explain.stages import CAM_FRACTION, Stage, cam_stages, network_stages

__all__ = ["CAM_METHODS", "CAM_METHOD_NAMES", "DEFAULT_CAM_METHOD", "DISPLAY_SIDE", "class_activation_map",
           "class_activation_maps", "colour_bar", "cam_overlay", "cam_sheet", "model_cam_method"]

DEFAULT_CAM_METHOD = "gradcam"  # for a network that names no method of its own (one not built by the registry)
DISPLAY_SIDE = 256  # pixels: a 64 px cell is drawn four times larger


def _method_classes() -> dict[str, type]:
    import pytorch_grad_cam as library  # keeps start-up fast (it imports OpenCV)

    return {"gradcam": library.GradCAM, "gradcam++": library.GradCAMPlusPlus, "layercam": library.LayerCAM,
            "hirescam": library.HiResCAM, "xgradcam": library.XGradCAM, "eigencam": library.EigenCAM}


CAM_METHODS = ("layercam", "gradcam", "gradcam++", "hirescam", "xgradcam", "eigencam")
CAM_METHOD_NAMES = {"layercam": "LayerCAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM",
                    "xgradcam": "XGrad-CAM", "eigencam": "Eigen-CAM"}  # as the methods' papers write them


def model_cam_method(model: nn.Module, method: str | None = None) -> str:
    """``method`` if one is given, else the method the model's registry entry names (``model.cam_method``),
    else ``DEFAULT_CAM_METHOD``; a ``ValueError`` for a name not in ``CAM_METHODS``."""
    method = method or getattr(model, "cam_method", None) or DEFAULT_CAM_METHOD
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; known: {', '.join(CAM_METHODS)}")
    return method


def _target(model: nn.Module, target: int):
    from pytorch_grad_cam.utils.model_targets import (  # keeps start-up fast
        BinaryClassifierOutputTarget,
        ClassifierOutputTarget,
    )

    if getattr(model, "single_logit", False):  # one sigmoid output: class 1 is its logit, class 0 its negation
        return BinaryClassifierOutputTarget(target)
    return ClassifierOutputTarget(target)


def class_activation_maps(model: nn.Module, x: torch.Tensor, targets: list[int], *,
                          method: str | None = None, stages: list[Stage] | None = None,
                          fraction: float = CAM_FRACTION) -> np.ndarray:
    """The maps, ``(N, H, W)`` in 0..1 at the size of ``x`` (``(N, C, H, W)``, normalised), of the evidence
    for class index ``targets[k]`` in image ``k``, by ``method`` (one of ``CAM_METHODS``; default: the
    model's own, ``model_cam_method``) at ``stages`` (their maps are averaged; default: the stages
    ``cam_stages`` picks for this input size)."""
    method = model_cam_method(model, method)
    if stages is None:
        stages = cam_stages(network_stages(model), model.data_config.input_size, fraction=fraction)
    with _method_classes()[method](model=model, target_layers=[s.module for s in stages]) as cam:
        heat = cam(input_tensor=x, targets=[_target(model, t) for t in targets])
    return np.nan_to_num(heat.astype(np.float32)).clip(0, 1)


def class_activation_map(model: nn.Module, x: torch.Tensor, target: int, **options) -> np.ndarray:
    """The map, ``(H, W)``, of the evidence for class index ``target`` in the one image ``x``
    (``(1, C, H, W)``): ``class_activation_maps`` for one image."""
    return class_activation_maps(model, x, [target], **options)[0]


def _jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map (blue = low, red = high) of values in 0..1, as uint8 RGB."""
    import cv2  # keeps start-up fast; the grad-cam package draws with it too

    grey = np.uint8(np.clip(values, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _overlay(picture: np.ndarray, heat: np.ndarray, side: int) -> Image.Image:
    """The heat map blended over the picture (60% picture, 40% colour), both enlarged to ``side``."""
    cell = Image.fromarray(picture).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    colours = Image.fromarray(_jet(np.asarray(Image.fromarray(heat.astype(np.float32)).resize(
        (side, side), Image.Resampling.BILINEAR))))
    return Image.blend(cell, colours, 0.4)


def colour_bar(width: int, *, height: int = 14, label_height: int = 14) -> Image.Image:
    """A horizontal jet scale ``width`` pixels wide, labelled "low" on the left and "high" on the right."""
    bar = Image.new("RGB", (width, height + label_height), (255, 255, 255))
    bar.paste(Image.fromarray(np.repeat(_jet(np.linspace(0, 1, width))[None, :, :], height, axis=0).reshape(
        height, width, 3)), (0, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((2, height + 1), "low", fill=(0, 0, 0))
    high = "high relevance"
    draw.text((width - 6 * len(high) - 2, height + 1), high, fill=(0, 0, 0))
    return bar


def cam_overlay(model: nn.Module, x: torch.Tensor, picture: np.ndarray, target: int, *,
                side: int = DISPLAY_SIDE, method: str | None = None) -> Image.Image:
    """The map for class index ``target`` over the picture, ``side`` pixels wide, with its colour bar
    underneath (what the web page shows); drawn by ``method``, by default the model's own."""
    overlay = _overlay(picture, class_activation_map(model, x, target, method=method), side)
    bar = colour_bar(side)
    image = Image.new("RGB", (side, side + bar.height), (255, 255, 255))
    image.paste(overlay, (0, 0))
    image.paste(bar, (0, side))
    return image


def cam_sheet(model: nn.Module, x: torch.Tensor, picture: np.ndarray, target: int, *,
              side: int = DISPLAY_SIDE, method: str | None = None) -> tuple[Image.Image, list[Stage]]:
    """The cell, the heat map alone and the overlay side by side, ``side`` pixels each, over a colour bar;
    and the stages the map was read at.  Drawn by ``method``, by default the model's own."""
    stages = cam_stages(network_stages(model), model.data_config.input_size)
    heat = class_activation_map(model, x, target, method=method, stages=stages)
    colours = Image.fromarray(_jet(heat)).resize((side, side), Image.Resampling.BILINEAR)
    parts = [Image.fromarray(picture).convert("RGB").resize((side, side), Image.Resampling.BICUBIC), colours,
             _overlay(picture, heat, side)]
    width = 3 * side + 2
    bar = colour_bar(width)
    sheet = Image.new("RGB", (width, side + 4 + bar.height), (255, 255, 255))
    for k, part in enumerate(parts):
        sheet.paste(part, (k * (side + 1), 0))
    sheet.paste(bar, (0, side + 4))
    return sheet, stages
