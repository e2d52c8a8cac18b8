"""Extra training cells from folders outside the dataset: added to the training subset only.

A folder of class folders (``FOLDER/Uninfected/*.png``), e.g. red cells cut
from another lab's smear fields that hold no malaria, joins the training
cells of a run (``--set extra_train=FOLDER``, a list for several) without
copying anything into the dataset's folder and without touching the split:
the validation and test cells, and so every figure measured on them, stay the
dataset's own.  Each cell is preprocessed exactly as the cache preprocesses
the dataset's cells (border crop, pad to a square with black, resize).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cellscreen.data.images import IMAGE_SUFFIXES, ImageReadError, load_prepared
from cellscreen.errors import UserError

__all__ = ["extra_cells", "with_extra_training_cells"]

GROUP_PREFIX = "extra:"  # the group of an extra cell: this and its folder's name


def extra_cells(folder: str | Path, classes: Sequence[str], *, size: int, crop: int, interpolation: str):
    """The cells of ``folder``'s class folders as ``(pixels (N, size, size, 3) uint8, targets, paths)``.

    Every subfolder must be named after one of ``classes``; files that are not images are left out, an image
    that cannot be read is refused (the folder was made for this run: a broken file is a mistake to fix).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"extra_train: no folder at {folder} (give a folder of class folders, e.g. "
                        f"{folder}/{classes[0]}/*.png)")
    class_index = {name: i for i, name in enumerate(classes)}
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in subfolders if p.name not in class_index]
    if unknown:
        raise UserError(f"extra_train: {folder} holds folders {', '.join(unknown)} that are not classes of the "
                        f"model ({', '.join(classes)}); rename or remove them")
    pixels, targets, paths = [], [], []
    for subfolder in subfolders:
        for path in sorted(subfolder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            try:
                pixels.append(load_prepared(path, size=size, crop=crop, interpolation=interpolation))
            except (ImageReadError, OSError) as exc:
                raise UserError(f"extra_train: {path} cannot be read ({exc}); remove or replace it") from None
            targets.append(class_index[subfolder.name])
            paths.append(str(path))
    if not paths:
        raise UserError(f"extra_train: no image in the class folders of {folder}")
    return np.stack(pixels), np.array(targets, np.int64), paths


def with_extra_training_cells(prepared, folders: Sequence[str], *, size: int, interpolation: str):
    """``prepared`` (``engine.data.PreparedData``) with the cells of ``folders`` added to its training subset."""
    folders = [folders] if isinstance(folders, str) else list(folders or [])  # --set extra_train=ONE_FOLDER
    if not folders:
        return prepared
    train = prepared.subsets["train"]
    crop = prepared.index.profile.border_crop
    images, targets, paths, groups = [train.images], [train.targets], list(train.paths), list(train.groups)
    for folder in folders:
        pixels, labels, files = extra_cells(folder, prepared.classes, size=size, crop=crop,
                                            interpolation=interpolation)
        images.append(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
        targets.append(torch.from_numpy(labels))
        paths += files
        groups += [f"{GROUP_PREFIX}{Path(folder).name}"] * len(files)
        counts = np.bincount(labels, minlength=len(prepared.classes))
        print(f"extra training cells from {folder}: "
              + ", ".join(f"{n} {name}" for name, n in zip(prepared.classes, counts) if n))
    extended = dataclasses.replace(train, images=torch.cat(images), targets=torch.cat(targets), paths=paths,
                                   groups=groups)
    return dataclasses.replace(prepared, subsets={**prepared.subsets, "train": extended})
