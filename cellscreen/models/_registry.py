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
import urllib.error
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cellscreen.data.images import DEFAULT_INTERPOLATION, UNRECORDED_INTERPOLATION, check_interpolation
from cellscreen.errors import UserError

__all__ = ["DataConfig", "ModelEntry", "register_model", "create_model", "list_models", "model_entry",
           "get_data_config", "count_flops", "model_summary", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a model expects as input."""

    input_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = DEFAULT_INTERPOLATION  # how cells are shrunk to input_size: one of images.INTERPOLATIONS

    def __post_init__(self):
        check_interpolation(self.interpolation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def for_channels(self, in_chans: int) -> DataConfig:
        """The same for ``in_chans`` input channels: a model built for another number of channels than its
        mean and standard deviation have takes their averages for every channel."""
        if in_chans == len(self.mean):
            return self
        return dataclasses.replace(self, mean=(sum(self.mean) / len(self.mean),) * in_chans,
                                   std=(sum(self.std) / len(self.std),) * in_chans)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        return cls(input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   interpolation=d.get("interpolation", UNRECORDED_INTERPOLATION))


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What ``register_model`` records about an architecture."""

    builder: Callable[..., nn.Module]
    data_config: DataConfig
    description: str
    single_logit: bool  # one sigmoid output for two classes (the seed malaria CNN)
    classifier: str | None  # attribute path of the final classifier; None: timm's pretrained_cfg says
    pool: str | None  # a pooling layer before the classifier that transfer learning makes global
    imagenet: str | None  # where ImageNet weights come from: "torchvision:Enum.MEMBER" or "timm:name.tag"
    cam_method: str = "gradcam"  # how its class activation maps are drawn: one of explain's CAM_METHODS


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, data_config: DataConfig, description: str = "", single_logit: bool = False,
                   classifier: str | None = "classifier", pool: str | None = None, imagenet: str | None = None,
                   cam_method: str = "gradcam"):
    """Decorator: register ``builder(*, num_classes, in_chans, input_size) -> nn.Module`` under ``name``.

    ``classifier`` names the final layer (or head) that transfer learning
    replaces and whose input is the model's feature vector (``None`` for timm
    models, which say it themselves); ``pool`` names a fixed-size pooling layer
    before it (AlexNet and VGG pool to 6x6 and 7x7) that becomes global
    average pooling when the head is replaced.  ``imagenet`` says where
    published ImageNet weights come from (``pretrained="imagenet"``).
    ``cam_method`` is the class activation map method ``cellscreen explain``
    and the server draw its maps with (Grad-CAM unless a measurement showed
    another pointing at the parasite far more often for this architecture).
    """

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        _MODELS[name] = ModelEntry(builder, data_config, summary, single_logit, classifier, pool, imagenet,
                                   cam_method)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    """What was registered under ``name`` (a ``UserError`` listing the known names if nothing was)."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def get_data_config(name: str) -> DataConfig:
    return model_entry(name).data_config


def describe(name: str) -> str:
    return model_entry(name).description


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: str | Path | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """Build a registered model.

    ``pretrained`` is a local file of weights (safetensors, or a torch state
    dict in torchvision or timm naming), an ``http(s)://`` address of one
    (downloaded once into torch's hub cache), or ``"imagenet"`` for the
    model's published ImageNet weights from the torchvision or timm cache.
    Tensors whose shape does not fit (a different head) are dropped and left
    freshly initialised; a 3-channel first convolution is adapted to
    ``in_chans``.  ``input_size`` overrides the model's default input size
    (for networks that pool globally).
    """
    entry = model_entry(name)
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
    if entry.single_logit and num_classes != 2:
        raise UserError(f"{name} has one sigmoid output and only handles 2 classes, not {num_classes}")
    config = entry.data_config
    if input_size is not None:
        config = dataclasses.replace(config, input_size=input_size)
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, input_size=config.input_size)
    config = config.for_channels(in_chans)
    model.data_config = config
    model.model_name = name
    model.single_logit = entry.single_logit
    model.cam_method = entry.cam_method
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"pretrained weights {path} not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as exc:  # damaged or foreign files fail in many ways
        raise UserError(f"cannot read pretrained weights {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers (Lightning, timm, training scripts)
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict of weights")
    return state


def _download(url: str) -> dict[str, torch.Tensor]:
    """A state dict from ``url``, through torch's hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    target = cache / Path(urllib.parse.urlparse(url).path).name
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=str(cache), map_location="cpu", progress=False,
                                                  weights_only=True)
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"could not fetch pretrained weights from {url} ({exc}); without internet, copy the "
                        f"file to {target} or pass a local file") from None


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Published ImageNet weights for a registered model, from the library cache (or downloaded if online)."""
    source = model_entry(name).imagenet
    if source is None:
        raise UserError(f"{name} has no published ImageNet weights; pass a weights file instead")
    library, _, spec = source.partition(":")
    if library == "torchvision":
        import torchvision  # keeps start-up fast: several seconds, only for its published weights

        return _download(torchvision.models.get_weight(spec).url)
    import timm  # keeps start-up fast: several seconds, only for its published weights

    try:
        return timm.create_model(spec, pretrained=True).state_dict()
    except Exception as exc:  # huggingface_hub raises its own errors when offline
        raise UserError(f"could not load timm's pretrained {spec} ({type(exc).__name__}: {exc}); without "
                        "internet, download the weights elsewhere and pass the file (HF_HUB_OFFLINE=1 skips the network wait)") from None


def load_pretrained(model: nn.Module, source: str | Path) -> list[str]:
    """Load matching tensors from ``source`` (a file, a URL or ``"imagenet"``); return the names left as
    initialised (a new head, or layers the weights do not have)."""
    text = str(source)
    if text == "imagenet":
        state = imagenet_state_dict(model.model_name)
    elif text.startswith(("http://", "https://")):
        state = _download(text)
    else:
        state = _read_state_dict(Path(source))
    own = model.state_dict()
    usable = {}
    for key, value in state.items():
        if key not in own or not isinstance(value, torch.Tensor):
            continue
        target = own[key]
        if (value.ndim == 4 and target.ndim == 4 and value.shape[0] == target.shape[0]
                and value.shape[2:] == target.shape[2:] and value.shape[1] == 3 != target.shape[1]):
            from timm.models import adapt_input_conv  # a 3-channel first conv for grey or multi-channel input

            value = adapt_input_conv(target.shape[1], value)
        if value.shape == target.shape:
            usable[key] = value.to(target.dtype)
    if not usable:
        raise UserError(f"none of the weights in {source} fit {model.model_name}; are they for another architecture?")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def count_flops(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """Floating-point operations of one forward pass on one image (torch's FLOP counter;
    a multiply-add counts as 2)."""
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
