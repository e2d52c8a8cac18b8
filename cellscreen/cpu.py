"""Two process-wide settings that make CPU training much faster; ``tune_process()`` applies both.

**Freed memory is kept.**  glibc's ``malloc`` serves every block of 128 KiB or more (after it adapts, up
to 32 MiB) with its own ``mmap`` and returns it with ``munmap`` when freed.  A CPU training step
allocates and frees feature maps of a few MiB dozens of times, so every step asks the kernel for fresh
pages and takes a page fault on each first touch: on the seed malaria CNN (batch 16, 128 px) that was a
quarter of the step, much of it kernel time (BENCHMARKS.md, "Training: freed memory kept, denormals
flushed").  PyTorch's CPU tuning guide
suggests swapping in jemalloc or tcmalloc for the same reason; ``keep_freed_memory`` does it with
glibc's own settings, so nothing needs installing:

* blocks up to 32 MiB (glibc's largest threshold on 64-bit) come from the heap, not from ``mmap``;
* the heap keeps up to 1 GiB of freed memory at its top instead of trimming it, and grows 64 MiB at a
  time.

The cost is memory: a process holds on to what it has freed, up to about its peak use.

**Denormal numbers are flushed to zero.**  Adam's running averages of weights whose gradient stays zero
(a dead unit, a dropped one) shrink by a constant factor every step until they fall below float32's
smallest normal number, 1.2e-38.  The CPU computes on such denormal numbers many times more slowly:
after six epochs 29% of the seed malaria CNN's optimiser state was denormal, and the optimiser's part of
a step took 5.5-6.6 ms instead of 2.5 ms (the same section).  ``flush_denormals`` sets
the CPU to read and write them as zero (``torch.set_flush_denormal``), which moves each such value by less
than 1.2e-38.  The setting belongs to a thread and is copied to the threads it starts, so it reaches
PyTorch's worker threads only if made before they exist.  ``train()`` keeps freed memory and flushes
denormals first thing (in a ``cellscreen`` command, PyTorch has run nothing before it), and when it
returns puts the calling thread's denormal setting back as it found it (``denormals_flushed``); every
``cellscreen`` command keeps freed memory from its start.  Denormals are not flushed at a command's start
because that would mean importing PyTorch, which added about two seconds to commands that do not need it (``predict`` on
onnxruntime, BENCHMARKS.md).

Set ``CELLSCREEN_KEEP_FREED_MEMORY=0`` or ``CELLSCREEN_FLUSH_DENORMALS=0`` to leave either as it is.
Freed memory is only kept with glibc (not on macOS, musl or Windows); denormals are flushed wherever
PyTorch can (x86 with SSE3, and ARM).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

__all__ = ["denormals_flushed", "flush_denormals", "flushing_denormals", "keep_freed_memory", "tune_process"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
_MALLOC_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
_done: dict[str, bool] = {}


def _wanted(variable: str) -> bool:
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


def keep_freed_memory() -> bool:
    """Set glibc's ``malloc`` to reuse freed blocks (see the module's text); True if it was set.

    Safe to call many times and from any process; only the first call in a process does anything.
    """
    if "malloc" not in _done:
        _done["malloc"] = False
        if _wanted("CELLSCREEN_KEEP_FREED_MEMORY"):
            try:
                libc = ctypes.CDLL(None)
                libc.gnu_get_libc_version  # only glibc has this, and only glibc's mallopt takes these settings
            except (OSError, AttributeError):
                return False
            _done["malloc"] = all(libc.mallopt(param, value) == 1 for param, value in _MALLOC_SETTINGS)
    return _done["malloc"]


def flush_denormals() -> bool:
    """Have this thread, and the threads it starts from now on, treat denormal floats as zero (see the
    module's text); True if the CPU supports it."""
    if not _wanted("CELLSCREEN_FLUSH_DENORMALS"):  # checked first: turned off, PyTorch is not even imported
        return False
    import torch  # keeps start-up fast: the CLI imports this module before it knows it will train

    return torch.set_flush_denormal(True)


def flushing_denormals() -> bool:
    """Whether this thread now flushes denormal floats to zero: a division whose exact result is denormal
    comes out as 0."""
    return sys.float_info.min / 3 == 0.0


@contextlib.contextmanager
def denormals_flushed():
    """Denormals flushed (``flush_denormals``) while a block, or a function this decorates, runs; then this
    thread's own setting as it was before.  Left set, it would change the arithmetic of whatever the
    caller runs next (hypothesis, for one, refuses to run without denormals).  PyTorch's worker threads
    started meanwhile keep the flush: another thread's setting cannot be reached."""
    before = flushing_denormals()
    flushed = flush_denormals()
    try:
        yield flushed
    finally:
        if flushed and not before:
            import torch  # keeps start-up fast, as in flush_denormals

            torch.set_flush_denormal(False)


def tune_process() -> dict[str, bool]:
    """Both settings; best called before PyTorch runs anything in parallel."""
    return {"keep_freed_memory": keep_freed_memory(), "flush_denormals": flush_denormals()}
