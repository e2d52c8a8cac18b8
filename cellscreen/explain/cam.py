"""Class activation maps (CAM): where in the cell the evidence for a class lies, drawn with a colour scale.

The maps come from the ``grad-cam`` package (``pytorch_grad_cam``).  The
default is LayerCAM (Jiang et al. 2021), which weighs every position of a
stage's output by its own positive gradient instead of one weight per channel
as Grad-CAM does, and so stays sharp when read at a fine, shallow stage;
``stages.cam_stage`` picks that stage.  Every map is returned at the input's
size, 0 (no evidence) to 1 (the strongest), and drawn over the cell at a size a
person can read, with a colour bar from "low" to "high" relevance.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from cellscreen.explain.stages import CAM_FRACTION, Stage, cam_stage, network_stages

__all__ = ["CAM_METHODS", "DEFAULT_CAM_METHOD", "class_activation_map", "colour_bar", "cam_overlay", "cam_sheet",
           "DISPLAY_SIDE"]

DEFAULT_CAM_METHOD = "layercam"
DISPLAY_SIDE = 256  # pixels: a 64 px cell is drawn four times larger


def _method_classes() -> dict[str, type]:
    import pytorch_grad_cam as library  # keeps start-up fast (it imports OpenCV)

    return {"gradcam": library.GradCAM, "gradcam++": library.GradCAMPlusPlus, "layercam": library.LayerCAM,
            "hirescam": library.HiResCAM, "xgradcam": library.XGradCAM, "eigencam": library.EigenCAM}


CAM_METHODS = ("layercam", "gradcam", "gradcam++", "hirescam", "xgradcam", "eigencam")


def _target(model: nn.Module, target: int):
    from pytorch_grad_cam.utils.model_targets import (  # keeps start-up fast
        BinaryClassifierOutputTarget,
        ClassifierOutputTarget,
    )

    return BinaryClassifierOutputTarget(target) if getattr(model, "single_logit", False) else ClassifierOutputTarget(target)


def class_activation_map(model: nn.Module, x: torch.Tensor, target: int, *, method: str = DEFAULT_CAM_METHOD,
                         stages: list[Stage] | None = None, fraction: float = CAM_FRACTION) -> np.ndarray:
    """The map, ``(H, W)`` in 0..1 at the size of ``x`` (``(1, C, H, W)``, normalised), of the evidence for
    class index ``target``, by ``method`` (one of ``CAM_METHODS``) at ``stages`` (several are averaged;
    default: the stage ``cam_stage`` picks for this input size)."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; known: {', '.join(CAM_METHODS)}")
    if stages is None:
        stages = [cam_stage(network_stages(model), model.data_config.input_size, fraction=fraction)]
    with _method_classes()[method](model=model, target_layers=[s.module for s in stages]) as cam:
        heat = cam(input_tensor=x, targets=[_target(model, target)])[0]
    return np.nan_to_num(heat.astype(np.float32)).clip(0, 1)


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
                side: int = DISPLAY_SIDE, method: str = DEFAULT_CAM_METHOD) -> Image.Image:
    """The map for class index ``target`` over the picture, ``side`` pixels wide, with its colour bar
    underneath (what the web page shows)."""
    overlay = _overlay(picture, class_activation_map(model, x, target, method=method), side)
    bar = colour_bar(side)
    image = Image.new("RGB", (side, side + bar.height), (255, 255, 255))
    image.paste(overlay, (0, 0))
    image.paste(bar, (0, side))
    return image


def cam_sheet(model: nn.Module, x: torch.Tensor, picture: np.ndarray, target: int, *,
              side: int = DISPLAY_SIDE, method: str = DEFAULT_CAM_METHOD) -> tuple[Image.Image, Stage]:
    """The cell, the heat map alone and the overlay side by side, ``side`` pixels each, over a colour bar;
    and the stage the map was read at."""
    stage = cam_stage(network_stages(model), model.data_config.input_size)
    heat = class_activation_map(model, x, target, method=method, stages=[stage])
    colours = Image.fromarray(_jet(heat)).resize((side, side), Image.Resampling.BILINEAR)
    parts = [Image.fromarray(picture).convert("RGB").resize((side, side), Image.Resampling.BICUBIC), colours,
             _overlay(picture, heat, side)]
    width = 3 * side + 2
    bar = colour_bar(width)
    sheet = Image.new("RGB", (width, side + 4 + bar.height), (255, 255, 255))
    for k, part in enumerate(parts):
        sheet.paste(part, (k * (side + 1), 0))
    sheet.paste(bar, (0, side + 4))
    return sheet, stage
