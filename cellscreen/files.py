"""Writing files so that a crash never leaves a half-written one under the real name.

Everything cellscreen writes (checkpoints, manifests, metrics, reports,
figures) goes to ``NAME.partial`` first and is renamed over ``NAME`` once
complete; a rename within a folder is atomic, so a reader sees either the old
file or the new one, never a torn mix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial" + path.suffix)  # keeps the suffix for savefig/PIL
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as partial:
        partial.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
