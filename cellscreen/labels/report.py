"""The label audit as one self-contained HTML page: summary, noise per class and per slide, and montages of
the most suspect cells (inline pictures, so the page can be mailed or archived on its own)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from cellscreen.files import atomic_write

__all__ = ["write_audit_report", "cell_thumbnail"]

TILE = 112  # pixels a side for each cell in the montages
SLIDE_ROWS = 40  # slides listed in the page (all of them are in audit.json)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child, #summary td { text-align: left; }
.montage { display: flex; flex-wrap: wrap; gap: 6px; }
figure { margin: 0; width: 132px; font-size: 11px; text-align: center; }
figure img { width: 112px; height: 112px; object-fit: contain; background: #000; image-rendering: auto; }
figcaption { overflow-wrap: anywhere; }
.note { color: #555; }
"""


def cell_thumbnail(path: Path, size: int = TILE) -> bytes | None:
    """A PNG of the cell at ``path`` fitted into ``size`` x ``size`` pixels (small cells enlarged), or None
    when the file cannot be read."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _figure(suspect, root: Path) -> str:
    png = cell_thumbnail(root / suspect.path)
    caption = (f"#{suspect.rank} {suspect.label} → {suspect.suggested}<br>score {suspect.score:.3f} · "
               f"{html.escape(suspect.slide)}")
    title = html.escape(suspect.path, quote=True)
    if png is None:
        return f'<figure title="{title}"><div>unreadable</div><figcaption>{caption}</figcaption></figure>'
    source = "data:image/png;base64," + base64.b64encode(png).decode()
    return (f'<figure title="{title}"><img src="{source}" alt="{title}">'
            f"<figcaption>{caption}</figcaption></figure>")


def write_audit_report(summary: dict, suspects: Sequence, path: str | Path, *, root: Path, show: int = 60) -> Path:
    """Write the page for an audit: ``summary`` is its ``audit.json``, ``suspects`` its ranked suspects
    (``Suspect`` rows), ``root`` the folder their paths are relative to."""
    cells, flagged = summary["cells"], summary["flagged"]
    made = summary["out_of_fold"]
    if "oof_from" in made:
        source = f"read from {made['oof_from']}"
    else:
        source = (f"{made['folds']}-fold training by {summary['group_kind']} with the {made['preset']} preset, "
                  f"{len(made['seeds'])} seed(s)" + (", 8 rotations and flips averaged" if made.get("tta") else ""))
        if made.get("rounds", 1) > 1:
            source += (f"; round {made['rounds']}, trained without the previous round's "
                       f"{made['left_out_of_training']:,} suspects")
    relabels = summary.get("relabels")
    labels_used = "the labels the dataset folder gives"
    if relabels:
        files = ", ".join(f"{name} (sha256 {digest[:12]})" for name, digest in relabels["files"].items())
        labels_used = (f"the folder's labels with relabel file(s) {files}: {relabels['changed']} changed, "
                       f"{relabels['excluded']} excluded")
    summary_rows = [
        ("dataset", f"{summary['dataset']} ({summary['root']})"),
        ("labels", labels_used),
        ("cells audited", f"{cells:,} from {summary['slides']} {summary['group_kind']}(s)"),
        ("flagged", f"{flagged:,} ({_percent(flagged / max(cells, 1))}), cleanlab {summary['cleanlab']} "
                    f"{summary['filter_by']}, ranked by {summary['ranked_by']}"),
        ("out-of-fold probabilities", source),
    ]
    classes = summary["classes"]
    per_class = [(r["class"], f"{r['cells']:,}", f"{r['flagged']:,}", _percent(r["flagged_share"]),
                  _percent(r["estimated_noise_rate"]), f"{r['estimated_wrong']:,.0f}",
                  ", ".join(f"{n} as {other}" for other, n in r["flagged_as"].items()))
                 for r in summary["per_class"]]
    per_slide = [(r["slide"], r["cells"], *[r["per_class"][c] for c in classes], r["flagged"],
                  _percent(r["flagged_share"]), f"{r['expected_wrong']:.1f}")
                 for r in summary["per_slide"][:SLIDE_ROWS]]
    shown = list(suspects)[:show]
    montages = []
    for given in classes:
        mine = [s for s in shown if s.label == given]
        if mine:
            figures = "".join(_figure(s, root) for s in mine)
            montages.append(f'<h3>Filed as {html.escape(given)} ({len(mine)})</h3>'
                            f'<div class="montage" data-label="{html.escape(given, quote=True)}">{figures}</div>')
    kind = html.escape(summary["group_kind"])
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Label audit: {html.escape(summary['dataset'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Label audit: {html.escape(summary['dataset'])}</h1>",
        '<p class="note">Cells whose given label their held-out probabilities doubt, found by confident learning '
        "(Northcutt et al. 2021). These are suspects, not verdicts: review them by hand (<code>cellscreen labels "
        "review</code>), and never drop them silently from a test set.</p>",
        "<h2>Summary</h2>", _table("summary", ("", ""), summary_rows),
        "<h2>Noise per class</h2>",
        _table("per-class", ("given class", "cells", "flagged", "flagged share", "estimated noise rate",
                             "estimated wrong", "flagged as"), per_class),
        f"<h2>Noise per {kind}</h2>",
        f'<p class="note">The {min(SLIDE_ROWS, len(summary["per_slide"]))} {kind}s with the largest flagged share '
        f"of {len(summary['per_slide'])} (all in audit.json); expected wrong is the sum of one minus each cell's "
        "label quality. Many suspects on one slide often mean a labelling batch went wrong.</p>",
        _table("per-slide", (kind, "cells", *classes, "flagged", "flagged share", "expected wrong"), per_slide),
        f"<h2>The {len(shown)} most suspect cells</h2>",
        '<p class="note">Given label → suggested label, label quality (the held-out probability of the given '
        "label) and slide; most suspect first.</p>",
        *montages,
        "</body></html>",
    ]
    return atomic_write(path, "\n".join(parts) + "\n")
