"""Finding a checkpoint's files without importing PyTorch (so `predict` on onnxruntime starts fast)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cellscreen.errors import UserError

__all__ = ["BUNDLED", "BUNDLED_DIR", "resolve_checkpoint", "file_sha256"]

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"
BUNDLED = {"malaria": BUNDLED_DIR / "malaria"}


def resolve_checkpoint(where: str | Path) -> Path:
    """The ``model.json`` for a run folder, a checkpoint file or a bundled name."""
    if str(where) in BUNDLED:
        path = BUNDLED[str(where)] / "model.json"
        if not path.is_file():
            raise UserError(f"the bundled {where!r} model is missing from this installation ({path})")
        return path
    path = Path(where)
    if path.is_dir():
        path = path / "model.json"
    elif path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        known = ", ".join(BUNDLED)
        raise UserError(f"no cellscreen checkpoint at {where} (give a run folder, its model.json, or one of: {known})")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
