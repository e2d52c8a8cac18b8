"""Every kind of checkpoint cellscreen can load: a network, an SVM baseline, an ensemble.

Importing this module registers the three kinds (each registers itself with
``checkpoint.register_kind`` when its module is imported), so ``load_checkpoint``
from here loads any run folder.  The stack, bottom first: ``checkpoint.py``
(the format, the registry, networks), ``svm.py``, ``ensemble.py`` (whose
members may be SVMs), and this module, which callers import.

This is a module of its own rather than ``cellscreen/engine/__init__.py``
because importing any ``cellscreen.engine`` module runs the package's
``__init__``, and ``engine.paths`` must stay importable without PyTorch (so
``predict`` on onnxruntime starts fast).
"""

from __future__ import annotations

from cellscreen.engine import ensemble, svm  # noqa: F401  (importing registers the kinds)
from cellscreen.engine.checkpoint import (
    BUNDLED,
    Checkpoint,
    checkpoint_files,
    list_kinds,
    load_checkpoint,
    resolve_checkpoint,
)

__all__ = ["BUNDLED", "Checkpoint", "checkpoint_files", "list_kinds", "load_checkpoint", "resolve_checkpoint"]
