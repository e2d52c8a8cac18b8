"""What every benchmark record shares: the machine it ran on, and timing and rounding helpers."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cellscreen import __version__

__all__ = ["cpu_name", "record", "rounded", "significant", "timed"]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def record(bench: str, **fields) -> dict:
    """A result: which benchmark, its fields, then the machine (threads, CPU) and cellscreen's version."""
    return {"bench": bench, **fields, "threads": torch.get_num_threads(), "cpu": cpu_name(),
            "cellscreen": __version__}


def timed(fn: Callable[[], object], seconds: float, *, min_calls: int = 1, warmup: int = 1) -> tuple[int, float]:
    """Call ``fn`` ``warmup`` times untimed, then again until ``seconds`` have passed (at least ``min_calls``
    times); return (timed calls, their total seconds)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - start


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def significant(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits (rates and fractions of any size keep their precision)."""
    return None if value is None else float(f"{float(value):.{digits}g}")
