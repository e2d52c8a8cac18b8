"""A network's stages, named for people, and the stage a class activation map (CAM) is read at.

A network looks at a cell through a stack of stages, each at a coarser grid
than the one before: the first see edges and colours at nearly full
resolution, the last see whole-cell patterns on a grid of a few squares.  A
map read at the last stage of the default model (2 x 2 squares for a 64 px
cell) cannot point at a ring a few pixels wide, so the CAM is read at the
deepest stage whose grid is still fine enough: at least a quarter of the input
side (16 x 16 for 64 px, 56 x 56 for 224 px).  At 8 x 8 the default model's
map touched the stained body on nearly every cell but its hottest pixel fell
on it for fewer than half (``bench/cam_pointing.py``).  The map drawn is the
mean of the maps at that stage and at the one before it (``cam_stages``): the
finer stage sharpens the spot, the deeper one keeps it on what the class
depends on.  The sides come from one forward pass with hooks, so the rule
holds for every registered architecture without a table of layer names.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from cellscreen.models.transfer import backbone_blocks

__all__ = ["Stage", "network_stages", "cam_stage", "cam_stages", "describe_stages", "last_stage", "CAM_FRACTION"]

CAM_FRACTION = 1 / 4  # the CAM is read where the grid has at least this share of the input side


@dataclasses.dataclass(frozen=True)
class Stage:
    """One backbone block: its place (1 = nearest the input), its output grid and the module to hook."""

    number: int
    count: int  # stages in the network
    layer: str  # the module's name in the network (features.4, layer2...), for those who want it
    module: nn.Module
    side: int  # output height (and width) for the model's input size
    channels: int

    @property
    def depth(self) -> str:
        """What a stage at this depth tends to respond to."""
        share = self.number / self.count
        if share <= 1 / 3:
            return "early: edges and colours"
        if share <= 2 / 3:
            return "middle: textures and small shapes"
        return "late: whole-cell patterns"

    @property
    def title(self) -> str:
        """``stage 2 (16x16, early: edges and colours)``."""
        return f"stage {self.number} ({self.side}x{self.side}, {self.depth})"

    @property
    def slug(self) -> str:
        """A file-name part: ``stage2``."""
        return f"stage{self.number}"


def _module_of(block: nn.Module) -> nn.Module:
    """A block that is a group of layers (conv + its batch norm) is read at its last layer."""
    return block[-1] if isinstance(block, nn.ModuleList) else block


def network_stages(model: nn.Module) -> list[Stage]:
    """The backbone blocks whose outputs are feature maps, input to output, with their grid sides at the
    model's input size (measured by one forward pass on a blank image)."""
    blocks = [(name, _module_of(block)) for name, block in backbone_blocks(model)]
    config = model.data_config
    shapes: dict[int, torch.Size] = {}
    handles = [module.register_forward_hook(
        lambda mod, args, out, k=k: shapes.__setitem__(k, out.shape) if isinstance(out, torch.Tensor) else None)
        for k, (_, module) in enumerate(blocks)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, len(config.mean), config.input_size, config.input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    maps = [(name, module, shapes[k]) for k, (name, module) in enumerate(blocks)
            if k in shapes and len(shapes[k]) == 4]
    return [Stage(number=k + 1, count=len(maps), layer=name, module=module, side=int(shape[-1]),
                  channels=int(shape[1]))
            for k, (name, module, shape) in enumerate(maps)]


def cam_stage(stages: list[Stage], input_size: int, *, fraction: float = CAM_FRACTION) -> Stage:
    """The deepest stage whose grid side is at least ``fraction`` of ``input_size`` (rounded up); a network
    with no stage that fine (none here) is read at its finest stage."""
    wanted = math.ceil(input_size * fraction)
    fine = [stage for stage in stages if stage.side >= wanted]
    if fine:
        return fine[-1]
    return max(stages, key=lambda stage: (stage.side, -stage.number))


def cam_stages(stages: list[Stage], input_size: int, *, fraction: float = CAM_FRACTION) -> list[Stage]:
    """The stages whose maps are averaged: ``cam_stage`` and the stage before it (itself alone if first)."""
    chosen = cam_stage(stages, input_size, fraction=fraction)
    index = stages.index(chosen)
    return stages[max(index - 1, 0) : index + 1]


def describe_stages(chosen: list[Stage]) -> str:
    """``stage 2 (16x16, ...)``, or ``stages 1 and 2 (32x32 and 16x16)`` for two."""
    if len(chosen) == 1:
        return chosen[0].title
    numbers = " and ".join(str(s.number) for s in chosen)
    sides = " and ".join(f"{s.side}x{s.side}" for s in chosen)
    return f"stages {numbers} ({sides})"


def last_stage(stages: list[Stage]) -> Stage:
    """The stage nearest the classifier: where the strongest channels and the filters are shown."""
    return stages[-1]
