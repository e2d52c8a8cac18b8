"""One registry for every architecture cellscreen can build.

Builders register with ``@register_model`` (as in timm) and are built with
``create_model(name, num_classes=..., in_chans=...)``.  A duplicate name is
refused (as torchvision's ``register_model`` does) and an unknown name lists the
known ones.  Every builder declares its ``DataConfig`` (input size and
normalisation, like timm's ``pretrained_cfg``), and the built model carries it
as ``model.data_config`` so training, evaluation, export and serving read
preprocessing from the model itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cellscreen.errors import UserError

__all__ = ["DataConfig", "register_model", "create_model", "list_models", "get_data_config", "count_flops",
           "model_summary", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a model expects as input."""

    input_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        return cls(input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   interpolation=d.get("interpolation", "bicubic"))


@dataclasses.dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    data_config: DataConfig
    description: str
    single_logit: bool  # one sigmoid output for two classes (the seed malaria CNN)


_MODELS: dict[str, _Entry] = {}


def register_model(name: str, *, data_config: DataConfig, description: str = "", single_logit: bool = False):
    """Decorator: register ``builder(*, num_classes, in_chans, input_size) -> nn.Module`` under ``name``."""

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = _Entry(builder, data_config, description or (builder.__doc__ or "").strip().split("\n")[0],
                               single_logit)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def _entry(name: str) -> _Entry:
    try:
        return _MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def get_data_config(name: str) -> DataConfig:
    return _entry(name).data_config


def describe(name: str) -> str:
    return _entry(name).description


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: str | Path | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """Build a registered model.

    ``pretrained`` is a local file of weights (safetensors, or a torch
    state dict); tensors whose shape does not fit (a different head) are
    dropped and left freshly initialised.  ``input_size`` overrides the
    model's default input size (for networks that pool globally).
    """
    entry = _entry(name)
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
    if entry.single_logit and num_classes != 2:
        raise UserError(f"{name} has one sigmoid output and only handles 2 classes, not {num_classes}")
    config = entry.data_config
    if input_size is not None:
        config = dataclasses.replace(config, input_size=input_size)
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, input_size=config.input_size)
    if in_chans != len(config.mean):
        mean = (sum(config.mean) / len(config.mean),) * in_chans
        std = (sum(config.std) / len(config.std),) * in_chans
        config = dataclasses.replace(config, mean=mean, std=std)
    model.data_config = config
    model.model_name = name
    model.single_logit = entry.single_logit
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load matching tensors from ``path``; return the names that were skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def count_flops(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """Floating-point operations of one forward pass on one image (torch's FLOP counter;
    a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_chans, input_size, input_size))
    return int(counter.get_total_flops())


def model_summary(name: str, *, num_classes: int = 2) -> dict:
    """Name, parameters, FLOPs at the default input size, input size, description."""
    model = create_model(name, num_classes=num_classes)
    size = model.data_config.input_size
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": count_flops(model, size),
        "input_size": size,
        "description": describe(name),
    }
