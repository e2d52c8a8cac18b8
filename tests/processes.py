"""The processes a command started, read from /proc: which of them outlived it."""

from __future__ import annotations

from pathlib import Path


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent pid, start time)`` of a live process, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid``, with its start time (a pid reused later is not mistaken for it)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (_, ppid, start) in parents.items():
            if ppid == parent and child not in found:
                found[child] = start
                frontier.append(child)
    return found


def survivors(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` (pid: start time) still alive; a zombie is dead, awaiting reaping."""
    alive = []
    for pid, start in processes.items():
        stat = process_stat(pid)
        if stat is not None and stat[2] == start and stat[0] not in "ZX":
            alive.append(pid)
    return alive
