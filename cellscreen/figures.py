"""Figures: matplotlib without a display, each saved so that a crash never leaves a half-written PNG.

Every figure cellscreen draws (learning curves, ROC curves, reliability
diagrams, comparison plots) goes through ``pyplot`` and ``save_figure``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellscreen.files import atomic_path

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, which needs no display."""
    import matplotlib  # keeps start-up fast: only commands that draw need matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` atomically, close it; return the path."""
    fig.tight_layout()
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=dpi)
    pyplot().close(fig)
    return Path(path)
