"""The review's decisions: an append-only log, one JSON object a line, and its export as a relabel file.

Every decision is written the moment it is made (appended, flushed and ``fsync``-ed), so a review can stop
at any time, even by a crash, and resume where it stopped.  Nothing is ever rewritten: a changed mind is a
new line, and the last line about a cell wins.  A line cut short by a crash mid-write is read past.

Each line: ``{"who", "when" (UTC, ISO 8601), "path", "decision" (keep | flip | exclude | unsure), "label"
(the cell's label after it: the given one for keep, the new one for flip, "exclude"; none for unsure),
"given", "suggested"}``.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path

from cellscreen.errors import UserError
from cellscreen.labels.relabel import EXCLUDE, write_relabel_file

__all__ = ["DECISIONS", "DecisionLog", "last_decisions", "export_decisions", "DECISIONS_FILE", "EXPORT_FILE"]

DECISIONS = ("keep", "flip", "exclude", "unsure")
DECISIONS_FILE = "decisions.jsonl"
EXPORT_FILE = "review-relabel.csv"


class DecisionLog:
    """The append-only ``decisions.jsonl`` of one review; safe to use from several threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, *, who: str, path: str, decision: str, label: str | None, given: str,
               suggested: str) -> dict:
        """Record one decision durably and return it as written."""
        if decision not in DECISIONS:
            raise UserError(f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}")
        record = {"who": who, "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                  "path": path, "decision": decision, "label": label, "given": given, "suggested": suggested}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                if handle.tell() and not self._ends_with_newline():
                    handle.write("\n")  # a line cut short by a crash stays on its own
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        return record

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def read(self) -> list[dict]:
        """Every whole decision, in the order made."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash while it was written
            if isinstance(record, dict) and record.get("decision") in DECISIONS and isinstance(record.get("path"), str):
                records.append(record)
        return records


def last_decisions(records: list[dict]) -> dict[str, dict]:
    """The last decision about each cell."""
    return {record["path"]: record for record in records}


def export_decisions(audit_dir: str | Path, out: str | Path | None = None) -> tuple[Path, int]:
    """Write the review's decisions as a relabel file (``review-relabel.csv`` in the audit folder unless
    ``out``): one row per cell whose last decision is flip (its new label) or exclude; keep and unsure give
    no row.  Returns the file and its number of rows."""
    audit_dir = Path(audit_dir)
    last = last_decisions(DecisionLog(audit_dir / DECISIONS_FILE).read())
    chosen = [r for r in last.values() if r["decision"] in ("flip", "exclude") and r.get("label")]
    chosen.sort(key=lambda r: r["path"])
    rows = [(r["path"], EXCLUDE if r["decision"] == "exclude" else r["label"]) for r in chosen]
    target = Path(out) if out else audit_dir / EXPORT_FILE
    write_relabel_file(target, rows, extra={"reviewer": [r["who"] for r in chosen],
                                             "decided": [r["when"] for r in chosen],
                                             "given": [r.get("given", "") for r in chosen]})
    return target, len(rows)
