"""Run a function over many files on every core, with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    chunksize: int = 32,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order.

    ``workers=0`` runs in this process (handy in tests and debuggers); otherwise
    a process pool of ``workers`` (default: one per core) does the work.
    """
    workers = default_workers() if workers is None else workers
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, leave=False)
    try:
        if workers == 0 or len(items) < 2 * chunksize:
            for item in items:
                yield fn(item)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(fn, items, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
