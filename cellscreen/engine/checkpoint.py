"""Self-describing checkpoints: weights in safetensors, everything else in JSON.

A checkpoint is two files side by side, ``model.safetensors`` and
``model.json`` (an SVM baseline or an ensemble keeps other files beside its
``model.json``, whose ``kind`` says so).  The JSON says which model to build and how, the class names,
the preprocessing, the split it was trained on and the metric it was kept
for, so evaluation, prediction and export need nothing else.  Loading never
unpickles anything.

``resolve_checkpoint`` accepts a run folder, either file, or the name of a
model shipped with cellscreen (``malaria``).

Each kind of checkpoint (``network`` here, ``svm`` and ``ensemble`` in their
own modules) registers how to load it with ``register_kind``, the way
torchvision's ``register_model`` does for models, so this module knows no kind
but its own.  ``cellscreen.engine.kinds`` imports every kind; load through it
whenever the checkpoint may be of any kind.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cellscreen import __version__
from cellscreen.engine.paths import BUNDLED, file_sha256, resolve_checkpoint
from cellscreen.engine.validate import check_weights_file, read_description
from cellscreen.errors import UserError
from cellscreen.files import atomic_path, atomic_write
from cellscreen.models import DataConfig, create_model
from cellscreen.models.transfer import replace_head

__all__ = ["Checkpoint", "CheckpointKind", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
           "file_sha256", "BUNDLED", "FORMAT", "register_kind", "get_kind", "list_kinds", "checkpoint_files"]

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class CheckpointKind:
    """How to load one kind of checkpoint, and which files beside its ``model.json`` belong to it."""

    load: Callable[[Path, dict], torch.nn.Module]  # (path of model.json, its contents) -> model
    files: Callable[[Path, dict], list[str]]  # (folder, contents of model.json) -> files relative to the folder


KINDS: dict[str, CheckpointKind] = {}


def register_kind(name: str, *, files: Callable[[Path, dict], list[str]]):
    """Decorator: register a checkpoint kind's loader (refuses a name registered already)."""

    def wrapper(load: Callable[[Path, dict], torch.nn.Module]):
        if name in KINDS:
            raise ValueError(f"a checkpoint kind named {name!r} is already registered")
        KINDS[name] = CheckpointKind(load=load, files=files)
        return load

    return wrapper


def list_kinds() -> list[str]:
    return sorted(KINDS)


def get_kind(name: str) -> CheckpointKind:
    if name not in KINDS:
        raise UserError(f"unknown checkpoint kind {name!r}; known: {', '.join(list_kinds())}")
    return KINDS[name]


def checkpoint_files(folder: Path, meta: dict) -> list[str]:
    """The files (relative to ``folder``) that make up a checkpoint of any kind."""
    return get_kind(meta.get("kind", "network")).files(folder, meta)


@dataclasses.dataclass
class Checkpoint:
    model: torch.nn.Module
    meta: dict

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def data_config(self) -> DataConfig:
        return DataConfig.from_dict(self.meta["data_config"])

    @property
    def border_crop(self) -> int:
        return int(self.meta.get("border_crop", 0))

    @property
    def positive_class(self) -> str | None:
        return self.meta.get("positive_class")


def save_checkpoint(folder: str | Path, model: torch.nn.Module, meta: dict, *, half: bool = False) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/model.json``; return the JSON path.

    ``half`` stores floating-point weights as float16 (half the size; used for
    the bundled model, whose predictions it changes by less than 1e-3).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    # the weights first, then the description that vouches for them
    with atomic_path(folder / "model.safetensors") as partial:
        save_file(state, str(partial))
        digest = file_sha256(partial)
    full_meta = {
        "format": FORMAT,
        "cellscreen": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model.model_name,
        "data_config": model.data_config.to_dict(),
        "single_logit": bool(getattr(model, "single_logit", False)),
        "head": getattr(model, "head_spec", None),  # a replaced classifier (transfer learning), rebuilt on load
        **meta,
    }
    full_meta["weights_sha256"] = digest
    return atomic_write(folder / "model.json", json.dumps(full_meta, indent=2) + "\n")


def load_checkpoint(where: str | Path) -> Checkpoint:
    """Rebuild the model described by a checkpoint and load its weights (in eval mode)."""
    path = resolve_checkpoint(where)
    meta = read_description(path)  # types and sizes a model can have, or a UserError naming the field
    try:
        DataConfig.from_dict(meta["data_config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a cellscreen checkpoint description ({exc})") from None
    if meta.get("format", 0) > FORMAT:
        raise UserError(f"{path} was written by a newer cellscreen ({meta.get('cellscreen')}); upgrade to read it")
    model = get_kind(meta.get("kind", "network")).load(path, meta)
    return Checkpoint(model=model.eval(), meta=meta)


@register_kind("network", files=lambda folder, meta: ["model.json", "model.safetensors"])
def load_network(path: Path, meta: dict) -> torch.nn.Module:
    """A network from the registry with its weights from the safetensors file beside ``path``."""
    name, classes = meta["model"], meta["classes"]
    config = DataConfig.from_dict(meta["data_config"])
    model = create_model(name, num_classes=len(classes), in_chans=len(config.mean), input_size=config.input_size)
    model.data_config = config
    if meta.get("cam_method"):  # these weights' own class activation map method, chosen on validation cells
        model.cam_method = meta["cam_method"]
    if meta.get("head"):
        replace_head(model, **meta["head"])
    weights = path.with_suffix(".safetensors")
    expected = meta.get("weights_sha256")
    if expected and weights.is_file() and file_sha256(weights) != expected:
        raise UserError(f"{weights} does not match the checksum in {path.name}: the file was changed, damaged or "
                        "half-written; retrain or copy the run again")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise UserError(f"cannot read the weights {weights}: {exc}") from None
    check_weights_file(weights)  # every weight finite: a NaN would make every probability nan
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and tensor.shape != own[key].shape:
            raise UserError(f"the weights {weights} do not fit {path.name}: {key} has shape {list(tensor.shape)}, "
                            f"{name} with {len(classes)} classes needs {list(own[key].shape)}; copy the run again")
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"weights in {path.with_suffix('.safetensors')} do not fit {name}: "
                        f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.temperature = float(meta.get("temperature", 1.0))  # fitted on the validation cells after training
    return model
