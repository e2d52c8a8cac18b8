"""Keep freed memory in the process instead of handing it back to the system at once.

glibc's ``malloc`` serves every block of 128 KiB or more (after it adapts, up to 32 MiB) with its own
``mmap`` and returns it with ``munmap`` when freed.  A CPU training step allocates and frees feature
maps of a few MiB dozens of times, so every step asks the kernel for fresh pages and takes a page fault
on each first touch: on the seed malaria CNN (batch 16, 128 px) that was a third of the step, most of
it kernel time (``bench/malloc_reuse.py``).  PyTorch's CPU tuning guide suggests swapping in jemalloc or
tcmalloc for the same reason; this does it with glibc's own settings, so nothing needs installing:

* blocks up to 32 MiB (glibc's largest threshold on 64-bit) come from the heap, not from ``mmap``;
* the heap keeps up to 1 GiB of freed memory at its top instead of trimming it, and grows 64 MiB at a
  time.

The cost is memory: a process holds on to what it has freed, up to about its peak use.  Set
``CELLSCREEN_KEEP_FREED_MEMORY=0`` to leave ``malloc`` as it is.  Elsewhere than glibc (macOS, musl,
Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's ``malloc`` to reuse freed blocks (see the module's text); True if it was set.

    Safe to call many times and from any process; only the first call in a process does anything.
    """
    global _done
    if _done is None:
        _done = False
        if os.environ.get("CELLSCREEN_KEEP_FREED_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off"):
            try:
                libc = ctypes.CDLL(None)
                libc.gnu_get_libc_version  # only glibc has this, and only glibc's mallopt takes these settings
            except (OSError, AttributeError):
                return _done
            _done = all(libc.mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _done
