"""Ensembles: the average of several trained models' class probabilities.

``make_ensemble(runs, out)`` copies each member's checkpoint into
``out/members/`` and writes ``out/model.json`` (``"kind": "ensemble"``), so the
ensemble is one self-contained folder that evaluate, predict and the other
commands accept wherever they accept a checkpoint.  Members must agree on the
classes and on the preprocessing before resizing (border crop); each sees the
image at its own input size and normalisation.

An ensemble calls a cell positive from its own ``decision_threshold`` on the averaged probability (the
members' thresholds, set for their own probabilities, do not carry over): given (``decision_threshold=``),
or chosen afterwards on the validation cells the members share (``cellscreen threshold ENSEMBLE
--operating-point sensitivity=0.98``, which ``cellscreen ensemble --operating-point`` runs).  Members share
validation cells when they were trained on one split manifest with the same fold and split seed; the
ensemble then keeps that manifest as its ``split.csv`` and the two settings under ``train``, where a run
keeps them, so it is chosen exactly as for a single run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path


import torch
from torch import nn
from torch.nn import functional as F

from cellscreen.config import TrainConfig
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
from cellscreen.engine.paths import file_sha256
from cellscreen.engine.threshold import run_decision
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.models import DataConfig

__all__ = ["EnsembleModel", "make_ensemble", "load_ensemble", "ensemble_files", "member_folders",
           "shared_validation", "member_thresholds"]


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


def _split_settings(meta: dict) -> tuple[str | None, int | None, int]:
    """What decides a member's validation cells: its split's SHA-256, the test fold and the split seed."""
    settings = (meta.get("train") or {}).get("config") or {}
    return (meta.get("split") or {}).get("sha256"), settings.get("fold"), int(settings.get("split_seed") or 0)


def shared_validation(loaded: list[tuple[Path, Checkpoint]]) -> tuple[Path | None, str]:
    """The split manifest whose validation cells every member set aside (a member's ``split.csv``), or None
    and the reason the members share none, in words for the user."""
    settings = {_split_settings(checkpoint.meta) for _, checkpoint in loaded}
    if len(settings) != 1:
        return None, "its members were not trained on one split (the same manifest, fold and split seed)"
    sha256 = next(iter(settings))[0]
    for folder, _ in loaded:
        manifest = folder / "split.csv"
        if sha256 and manifest.is_file() and file_sha256(manifest) == sha256:
            return manifest, ""
    return None, "no member's folder holds the split manifest its members were trained on (split.csv)"


def member_thresholds(path: Path) -> list[float | None]:
    """Each member's own decision threshold (None: 0.5), read from the ensemble ``model.json`` at ``path``."""
    meta = json.loads(Path(path).read_text())
    return [json.loads((folder / "model.json").read_text()).get("decision_threshold")
            for folder in member_folders(Path(path), meta)]


def _agreed(loaded: list[tuple[Path, Checkpoint]], field: str):
    """A setting the members that record it record alike (how the folder was read; the bundled model records
    no folder), else None."""
    values = {json.dumps(checkpoint.meta.get(field)) for _, checkpoint in loaded} - {"null"}
    return json.loads(values.pop()) if len(values) == 1 else None


def make_ensemble(runs: list[str | Path], out: str | Path, *, overwrite: bool = False,
                  decision_threshold: float | None = None, need_validation: bool = False) -> Path:
    """Write an ensemble of ``runs`` (run folders, checkpoints or bundled names) into ``out``.

    ``decision_threshold`` is stored as the ensemble's own; ``need_validation`` refuses members that share no
    validation cells (before anything is written), for an operating point to be chosen on them next."""
    if len(runs) < 2:
        raise UserError("an ensemble needs at least two members")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite to replace it")
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
    # the ensemble's own decision, checked before anything is written
    decision = run_decision(TrainConfig(decision_threshold=decision_threshold), first.classes,
                            first.positive_class, [], lambda: None)
    manifest, why_not = shared_validation(loaded)
    if need_validation and manifest is None:
        raise UserError(f"no operating point can be chosen for this ensemble: {why_not}, so they share no "
                        "validation cells; give --threshold P instead")
    if out.exists():
        shutil.rmtree(out)
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
        **decision,
        "dataset": first.meta.get("dataset"), "border_crop": first.border_crop,
        # how the members read the folder, so that evaluate and threshold need neither pattern nor folder again
        "group_regex": _agreed(loaded, "group_regex"), "root": _agreed(loaded, "root"),
        "split": first.meta.get("split") if len(splits) == 1 else {"sha256": None, "note": "members differ"},
        "members": members, "sources": [str(folder) for folder, _ in loaded],
    }
    if manifest is not None:  # the validation cells the members share, found as a run's are
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(manifest, out / "split.csv")
        _, fold, split_seed = _split_settings(first.meta)
        meta["train"] = {"config": {"fold": fold, "split_seed": split_seed},
                         "note": "the split settings every member was trained with"}
    else:
        meta["no_shared_validation"] = why_not  # what `cellscreen threshold --operating-point` tells the user
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    return out / "model.json"
