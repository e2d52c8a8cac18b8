"""Transfer learning on any registered model: a new head, and a choice of what trains.

The studies fine-tuned ImageNet networks by replacing the classifier with
global average pooling, dropout and a dense layer, then training the head
only, the top blocks, or everything.  ``replace_head`` and ``set_trainable``
do that for every architecture in the registry; ``forward_features`` gives
the pooled feature vector the classifier sees (the "deep features" of the
VGG-SVM baseline).
"""

from __future__ import annotations

import torch
from torch import nn

from cellscreen.errors import UserError
from cellscreen.models._registry import model_entry

__all__ = ["classifier_path", "replace_head", "forward_features", "backbone_blocks", "set_trainable",
           "parse_trainable"]


def classifier_path(model: nn.Module) -> str:
    """Attribute path of the model's final classifier (``fc``, ``classifier``, ``head.fc``...)."""
    path = model_entry(model.model_name).classifier
    if path is None:  # timm records it in the model's pretrained_cfg
        path = model.pretrained_cfg["classifier"]
    return path


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


class PoolFlatten(nn.Module):
    """Global average pooling of a feature map, or nothing for a vector: the start of every new head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.ndim == 4 else x.flatten(1)


def replace_head(model: nn.Module, *, hidden: int = 0, dropout: float = 0.0) -> nn.Module:
    """Replace the classifier with global average pooling, dropout, [dense ``hidden`` + ReLU + dropout,]
    dense to the same outputs, as the MobileNet study did.  Returns ``model``, changed in place."""
    old = model.get_submodule(classifier_path(model))
    outputs = [m for m in old.modules() if isinstance(m, nn.Linear)][-1].out_features
    size = model.data_config.input_size
    with torch.no_grad():
        features = forward_features(model.eval(), torch.zeros(1, len(model.data_config.mean), size, size)).shape[1]
    pool = model_entry(model.model_name).pool
    if pool:
        _set_submodule(model, pool, nn.AdaptiveAvgPool2d(1))
    layers: list[nn.Module] = [PoolFlatten(), nn.Dropout(dropout)]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        features = hidden
    layers.append(nn.Linear(features, outputs))
    _set_submodule(model, classifier_path(model), nn.Sequential(*layers))
    model.head_spec = {"hidden": hidden, "dropout": dropout}
    return model


def forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature vector the classifier sees, ``(N, D)``: the classifier's input, globally average-pooled
    if it is a feature map.  For AlexNet and VGG, whose dense layers read a fixed 6x6 or 7x7 grid, it is
    the last convolutional map pooled globally (512 values for VGG)."""
    entry = model_entry(model.model_name)
    grab = model.get_submodule(entry.pool) if entry.pool else model.get_submodule(classifier_path(model))
    seen = {}

    def hook(module, args):
        seen["x"] = args[0]
        raise _Stop

    handle = grab.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    features = seen["x"]
    if features.ndim == 4:
        features = features.mean(dim=(2, 3))
    return features.flatten(1)


class _Stop(Exception):
    """Ends a forward pass once the features are in hand."""


def _holds_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or (
        not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules()))


def backbone_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's trainable blocks below the head, input to output.

    Top-level children (a ResNet's stem layers and its four stages), with a
    sequential stack that holds most of the weights (VGG's ``features``,
    EfficientNet's ``blocks``) opened into its elements; a batch-norm layer
    joins the convolution before it.  Auxiliary classifiers count as head.
    """
    head = classifier_path(model).split(".")[0]
    children = [(n, m) for n, m in model.named_children()
                if n != head and "aux" not in n.lower() and _holds_params(m)]
    total = sum(p.numel() for _, m in children for p in m.parameters())
    # a network of few parts keeps its blocks in one stack (VGG's features, EfficientNet's blocks): open it
    few_parts = sum(not _is_norm(m) for _, m in children) <= 3
    blocks: list[tuple[str, list[nn.Module]]] = []
    for name, child in children:
        inner = [(f"{name}.{n}", m) for n, m in child.named_children() if _holds_params(m)]
        stack = (few_parts and isinstance(child, (nn.Sequential, nn.ModuleList)) and len(inner) > 1
                 and sum(p.numel() for p in child.parameters()) > total / 2)
        for sub_name, sub in inner if stack else [(name, child)]:
            if blocks and _is_norm(sub):
                blocks[-1][1].append(sub)
            else:
                blocks.append((sub_name, [sub]))
    return [(name, parts[0] if len(parts) == 1 else nn.ModuleList(parts)) for name, parts in blocks]


def parse_trainable(text: str | int) -> str | int:
    """``all``, ``head`` or a number N of top blocks (``top3`` or ``3``)."""
    text = str(text).strip().lower()
    if text in ("all", "head"):
        return text
    number = text.removeprefix("top").lstrip(":")
    if number.isdigit():
        return int(number)
    raise UserError(f"trainable must be 'all', 'head' or the number of top blocks to train (e.g. top2), not {text!r}")


def set_trainable(model: nn.Module, trainable: str | int = "all", *, freeze_bn: bool = False) -> list[str]:
    """Choose what trains: ``"all"``, ``"head"`` (the classifier and any auxiliary heads) or the top ``N``
    backbone blocks plus the head.  Frozen blocks keep their batch-norm statistics (their BN layers stay in
    evaluation mode, as Keras does for non-trainable layers); ``freeze_bn`` keeps every BN layer's
    statistics fixed.  Returns the names of the parameters that train."""
    trainable = parse_trainable(trainable)
    blocks = backbone_blocks(model)
    if trainable == "all":
        frozen = []
    elif trainable == "head":
        frozen = blocks
    else:
        if trainable > len(blocks):
            raise UserError(f"{model.model_name} has {len(blocks)} blocks; cannot train the top {trainable}")
        frozen = blocks[: len(blocks) - trainable]
    for p in model.parameters():
        p.requires_grad_(True)
    frozen_bn = []
    for _, block in frozen:
        for p in block.parameters():
            p.requires_grad_(False)
        frozen_bn += [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if freeze_bn:
        frozen_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.frozen_bn = frozen_bn  # CellClassifier keeps these in eval mode while training
    return [n for n, p in model.named_parameters() if p.requires_grad]
