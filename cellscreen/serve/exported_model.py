"""The graph an export writes: a checkpoint's model with cellscreen's preprocessing folded in.

``ExportedModel`` takes ``uint8`` pixels ``(batch, size, size, 3)`` and returns
``(probabilities, logits)``; ``fold_std``, ``lift_space_to_depth`` and
``lift_colour_norm`` rewrite a model so that its first steps run on the pixels
in the cheapest form, each checked against the model it replaces.
``export`` builds on this module.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cellscreen.models.compact import CompactCNN
from cellscreen.models.layers import CellColourNorm

__all__ = ["NORMALISATIONS", "NORMALISATION_WORDS", "ExportedModel", "fold_std", "lift_space_to_depth",
           "lift_colour_norm"]

NORMALISATIONS = ("sub_div", "conv", "fold")  # how the graph normalises its input (ExportedModel)
NORMALISATION_WORDS = {"sub_div": "subtract the mean, divide by the standard deviation",
                       "conv": "a 1x1 convolution per channel",
                       "fold": "the mean subtracted, the division folded into the first convolution"}


class ExportedModel(nn.Module):
    """uint8 NHWC pixels -> (probabilities, logits): the checkpoint's model with its preprocessing folded in.

    ``normalise`` says how the graph normalises its input; all three give the same outputs in exact
    arithmetic:

    - ``"sub_div"``: ``(x - mean) / std``, what the fp32 export keeps;
    - ``"conv"``: the same as a 1x1 convolution per channel (weight ``1/std``, bias ``-mean/std``), which
      onnxruntime quantises and runs in 8 bits, where the float subtraction and division over every pixel
      took about a quarter of the 8-bit graph's time;
    - ``"fold"``: ``model`` is given with its first convolution's weights already divided by ``std``
      (``fold_std``), so only ``x - mean`` is left here.  That convolution pads with zeros, and a zero of
      ``x - mean`` is a zero of the normalised input, so the padding agrees too.  The mean is subtracted as
      a whole ``size`` x ``size`` map, not one value per channel: onnxruntime moves the subtraction into
      channels-last order, where broadcasting three values over every pixel is slow.  The int8 export
      uses it: the 8-bit graph's only normalisation step is then that subtraction.

    ``space_to_depth`` (``k`` > 1): ``model`` is given without the ``PixelUnshuffle(k)`` it starts with
    (``lift_space_to_depth``), and the graph rearranges each ``k`` x ``k`` block of pixels into channels
    itself, on the uint8 pixels and in the same step that moves the colour channels first: one
    rearrangement of single bytes, where the model's own would be a second one, of floats.  ``mean`` and
    ``std`` are then repeated for the ``k * k`` channels each colour becomes.
    """

    def __init__(self, model: nn.Module, mean, std, temperature: float = 1.0, single_logit: bool = False,
                 normalise: str = "sub_div", size: int | None = None, space_to_depth: int = 1,
                 colour: CellColourNorm | None = None):
        super().__init__()
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, not {normalise!r}")
        self.model = model
        self.colour = colour
        self.space_to_depth = int(space_to_depth)
        per_colour = self.space_to_depth ** 2  # PixelUnshuffle's order: colour c becomes channels c*k*k ...
        self.register_buffer("mean", (torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
                             .repeat_interleave(per_colour, dim=1))
        self.register_buffer("std", (torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
                             .repeat_interleave(per_colour, dim=1))
        if normalise == "fold":
            if size is None:
                raise ValueError("normalise='fold' needs the input size")
            side = size // self.space_to_depth
            self.mean = self.mean.expand(1, -1, side, side).contiguous()
        self.temperature = float(temperature)
        self.single_logit = single_logit
        self.normalise = normalise

    def _planes(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(batch, size, size, colours)`` -> uint8 ``(batch, channels, side, side)``."""
        k = self.space_to_depth
        if k == 1:
            return images.permute(0, 3, 1, 2)
        _, height, width, colours = images.shape
        # pixel (k*y + i, k*x + j) of colour c goes to channel c*k*k + i*k + j at (y, x), as in PixelUnshuffle
        blocks = images.reshape(-1, height // k, k, width // k, k, colours).permute(0, 5, 2, 4, 1, 3)
        return blocks.reshape(-1, colours * k * k, height // k, width // k)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._planes(images).float()
        if self.colour is not None:  # the model's first step, lifted out of it (lift_colour_norm)
            x = self.colour.rescale(x, 255.0, self.space_to_depth)
        if self.normalise == "conv":
            x = nn.functional.conv2d(x, (1 / self.std).view(-1, 1, 1, 1), (-self.mean / self.std).view(-1),
                                     groups=x.shape[1])
        elif self.normalise == "fold":
            x = x - self.mean
        else:
            x = (x - self.mean) / self.std
        logits = self.model(x)
        scaled = logits.float() / self.temperature
        if self.single_logit:  # one sigmoid output: P(class 1)
            p = torch.sigmoid(scaled)
            return torch.cat([1 - p, p], dim=1), logits
        return torch.softmax(scaled, dim=1), logits


def fold_std(model: nn.Module, std, size: int) -> nn.Module | None:
    """A copy of ``model`` that takes ``x - mean`` instead of ``(x - mean) / std`` (``std`` per channel, in
    pixel units), its first convolution's weights divided by ``std``; None where that would not be the same
    model.

    It is only the same model when that convolution is the first thing done to the input (or comes right
    after a space-to-depth rearrangement, whose channels it then sees in ``PixelUnshuffle``'s order), pads
    with zeros and sees every input channel.  The first ``Conv2d`` in module order usually is, but nothing in a
    module's structure guarantees it, so the copy is checked against the model on random inputs.
    """
    std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    channels = std.shape[1]
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels % channels or first.groups != 1 or first.padding_mode != "zeros":
        return None
    # After a space-to-depth step (PixelUnshuffle) input channel c becomes channels c*k .. c*k + k - 1
    per_channel = std.repeat_interleave(first.in_channels // channels, dim=1)
    reference = copy.deepcopy(model).eval()  # the caller's model keeps its mode
    folded = copy.deepcopy(reference)
    conv = next(m for m in folded.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight.div_(per_channel.to(conv.weight.dtype))
        centred = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(0)) * std
        expected, got = reference(centred / std), folded(centred)
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()) + 1e-6):
        return None
    return folded


def lift_space_to_depth(model: nn.Module, size: int, colours: int = 3) -> tuple[nn.Module, int]:
    """``model`` without the ``PixelUnshuffle`` it starts with, and that step's factor, for ``ExportedModel``
    to rearrange the pixels itself; ``(model, 1)`` for a model that does not start with one.

    "Starts with" is read off module order (the first module without children), which nothing in a
    module's structure guarantees, so the copy is checked against the model on random inputs.
    """
    leaves = ((name, m) for name, m in model.named_modules()
              if not list(m.children()) and not isinstance(m, nn.Identity))
    name, first = next(leaves, (None, None))
    if not isinstance(first, nn.PixelUnshuffle) or size % first.downscale_factor:
        return model, 1
    k = first.downscale_factor
    reference = copy.deepcopy(model).eval()  # the caller's model keeps its mode
    lifted = copy.deepcopy(reference)
    parent, _, attribute = name.rpartition(".")
    setattr(lifted.get_submodule(parent) if parent else lifted, attribute, nn.Identity())
    with torch.no_grad():
        x = torch.randn(2, colours, size, size, generator=torch.Generator().manual_seed(0))
        expected, got = reference(x), lifted(nn.functional.pixel_unshuffle(x, k))
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return model, 1
    return lifted, k


def lift_colour_norm(model: nn.Module) -> tuple[nn.Module, CellColourNorm | None]:
    """``model`` without the ``CellColourNorm`` it starts with, and that step, for ``ExportedModel`` to do on
    the pixels before it normalises them (and before a lifted space-to-depth step's channels reach the first
    convolution, which can then take the division by the standard deviation); ``(model, None)`` for a model
    without one.  Only cellscreen's compact CNNs have one, as ``colour``, which their ``forward`` runs first."""
    if not isinstance(model, CompactCNN) or not isinstance(model.colour, CellColourNorm):
        return model, None
    lifted = copy.deepcopy(model)
    lifted.colour = nn.Identity()
    return lifted, model.colour
