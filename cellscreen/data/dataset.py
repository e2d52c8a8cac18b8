"""A PyTorch dataset over a split manifest, served from the preprocessed cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from cellscreen.data.cache import ImageCache
from cellscreen.errors import UserError

__all__ = ["CachedCellDataset"]


class CachedCellDataset(Dataset):
    """``(uint8 image tensor (3, H, W), class index)`` pairs from cached pixels.

    ``rows`` are manifest rows (``path``, ``label``) and ``sha256_of`` maps a
    path to its content hash (from the dataset index).  Rows whose image could
    not be decoded when the cache was built are left out and listed in
    ``self.skipped``.
    """

    def __init__(
        self,
        cache: ImageCache,
        rows: Sequence[dict[str, str]],
        sha256_of: dict[str, str],
        classes: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.cache = cache
        self.classes = list(classes)
        self.transform = transform
        class_index = {name: i for i, name in enumerate(self.classes)}
        self.items: list[tuple[int, int, str]] = []
        self.skipped: list[str] = []
        for row in rows:
            if row["label"] not in class_index:
                raise UserError(f"label {row['label']!r} of {row['path']} is not one of {self.classes}")
            digest = sha256_of.get(row["path"])
            if digest is None or digest not in cache:
                self.skipped.append(row["path"])
                continue
            self.items.append((cache.row_of[digest], class_index[row["label"]], row["path"]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row, target, _ = self.items[i]
        image = torch.from_numpy(self.cache.images[row].copy()).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    @property
    def targets(self) -> list[int]:
        return [target for _, target, _ in self.items]
