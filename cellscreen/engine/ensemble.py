"""Ensembles: the average of several trained models' class probabilities.

``make_ensemble(runs, out)`` copies each member's checkpoint into
``out/members/`` and writes ``out/model.json`` (``"kind": "ensemble"``), so the
ensemble is one self-contained folder that evaluate, predict and the other
commands accept wherever they accept a checkpoint.  Members must agree on the
classes and on the preprocessing before resizing (border crop); each sees the
image at its own input size and normalisation.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cellscreen.engine import svm  # noqa: F401  (members may be SVM baselines: importing registers that kind)
from cellscreen.engine.checkpoint import (
    FORMAT,
    Checkpoint,
    checkpoint_files,
    load_checkpoint,
    register_kind,
    resolve_checkpoint,
)
from cellscreen.engine.inference import logits_to_proba, normalise
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.models import DataConfig

__all__ = ["EnsembleModel", "make_ensemble", "load_ensemble", "ensemble_files", "member_folders"]


class EnsembleModel(nn.Module):
    """Images scaled to 0..1 at the largest member size in, log of the mean member probabilities out.

    A member with a smaller input size gets the batch resized (bilinear, antialiased) to its size.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = []
        for member in self.members:
            size = member.data_config.input_size
            xi = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear",
                                                             antialias=True, align_corners=False)
            probabilities.append(logits_to_proba(member(normalise(xi, member.data_config)),
                                                 getattr(member, "temperature", 1.0)))
        return torch.log(torch.stack(probabilities).mean(dim=0).clamp_min(1e-7))


def ensemble_files(folder: Path, meta: dict) -> list[str]:
    """``model.json`` and every member's files, each under its member folder."""
    files = ["model.json"]
    member_folders(folder / "model.json", meta)  # each inside the ensemble's folder
    for member in meta["members"]:
        member_meta = json.loads((folder / member / "model.json").read_text())
        files += [f"{member}/{f}" for f in checkpoint_files(folder / member, member_meta)]
    return files


def member_folders(path: Path, meta: dict) -> list[Path]:
    """The members' folders, each refused unless it lies inside the ensemble's own folder: a member that is the
    ensemble itself (or a folder above it) would load it again without end."""
    members = meta.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise UserError(f"{path} is damaged: 'members' is not a list of member folders; make the ensemble again")
    home = path.parent.resolve()
    folders = []
    for member in members:
        folder = (path.parent / member).resolve()
        if folder == home or not folder.is_relative_to(home):
            raise UserError(f"{path} is damaged: member {member!r} is not a folder inside the ensemble (it would "
                            "load the ensemble itself or files elsewhere); make the ensemble again")
        folders.append(folder)
    return folders


@register_kind("ensemble", files=ensemble_files)
def load_ensemble(path: Path, meta: dict) -> EnsembleModel:
    """The ensemble described by ``path`` (its ``model.json``), with every member loaded."""
    model = EnsembleModel([load_checkpoint(folder).model for folder in member_folders(path, meta)])
    model.data_config = DataConfig.from_dict(meta["data_config"])
    model.model_name, model.single_logit = meta["model"], False
    return model


def make_ensemble(runs: list[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    """Write an ensemble of ``runs`` (run folders, checkpoints or bundled names) into ``out``."""
    if len(runs) < 2:
        raise UserError("an ensemble needs at least two members")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    loaded: list[tuple[Path, Checkpoint]] = [(resolve_checkpoint(r).parent, load_checkpoint(r)) for r in runs]
    first = loaded[0][1]
    for folder, checkpoint in loaded[1:]:
        for what, value, expected in (("classes", checkpoint.classes, first.classes),
                                      ("border crop", checkpoint.border_crop, first.border_crop),
                                      ("interpolation", checkpoint.data_config.interpolation,
                                       first.data_config.interpolation),
                                      ("positive class", checkpoint.positive_class, first.positive_class)):
            if value != expected:
                raise UserError(f"{folder} has {what} {value}, but {loaded[0][0]} has {expected}: "
                                "ensemble members must classify the same way")
    members, splits = [], set()
    for number, (folder, checkpoint) in enumerate(loaded):
        name = f"members/{number:02d}-{checkpoint.meta['model']}"
        for file in checkpoint_files(folder, checkpoint.meta):
            (out / name / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / file, out / name / file)
        members.append(name)
        splits.add((checkpoint.meta.get("split") or {}).get("sha256"))
    size = max(c.data_config.input_size for _, c in loaded)
    channels = len(first.data_config.mean)
    meta = {
        "format": FORMAT, "kind": "ensemble", "model": "ensemble",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_config": DataConfig(input_size=size, mean=(0.0,) * channels, std=(1.0,) * channels,
                                  interpolation=first.data_config.interpolation).to_dict(),
        "single_logit": False, "classes": first.classes, "positive_class": first.positive_class,
        "dataset": first.meta.get("dataset"), "border_crop": first.border_crop,
        "split": first.meta.get("split") if len(splits) == 1 else {"sha256": None, "note": "members differ"},
        "members": members, "sources": [str(folder) for folder, _ in loaded],
    }
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    return out / "model.json"
