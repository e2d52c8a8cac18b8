"""Why a model decided as it did: class activation maps that point at the parasite, and what its stages see.

``stages`` names a network's stages and picks the one a map is read at;
``cam`` computes and draws the maps (the ``grad-cam`` package); ``pictures``
draws the advanced pictures (feature maps, strongest channels, filters);
``report`` writes them all for ``cellscreen explain``.
"""

from __future__ import annotations

from cellscreen.explain.cam import (
    CAM_METHOD_NAMES,
    CAM_METHODS,
    DEFAULT_CAM_METHOD,
    DISPLAY_SIDE,
    cam_overlay,
    cam_sheet,
    class_activation_map,
    class_activation_maps,
    colour_bar,
    model_cam_method,
)
from cellscreen.explain.pictures import feature_maps, top_channels, visualise_filters
from cellscreen.explain.report import explain, images_to_explain
from cellscreen.explain.stages import (
    CAM_FRACTION,
    Stage,
    cam_stage,
    cam_stages,
    describe_stages,
    last_stage,
    network_stages,
)

__all__ = ["CAM_FRACTION", "CAM_METHOD_NAMES", "CAM_METHODS", "DEFAULT_CAM_METHOD", "DISPLAY_SIDE", "Stage",
           "cam_overlay", "cam_sheet", "cam_stage", "cam_stages", "class_activation_map", "class_activation_maps",
           "colour_bar", "describe_stages", "explain", "feature_maps", "grad_cam", "images_to_explain", "last_stage",
           "model_cam_method", "network_stages", "target_layer", "top_channels", "visualise_filters"]


def target_layer(model):
    """``(layer name, module)`` of the deepest stage the class activation map is read at for this model's
    input size."""
    stage = cam_stage(network_stages(model), model.data_config.input_size)
    return stage.layer, stage.module


def grad_cam(model, x, picture, target: int):
    """The cell, the map for class index ``target`` (by the model's own CAM method) and the overlay side by
    side, over a colour bar."""
    return cam_sheet(model, x, picture, target)[0]
