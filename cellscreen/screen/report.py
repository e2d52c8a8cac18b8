"""The HTML report of a screening run: one self-contained, printable page.

Per sample: fields, red cells counted, positive cells, parasitemia with its
95% interval, cells flagged, white cells and warnings; per image the same,
or why the file was skipped; thumbnails of the overlays (embedded, so the
page can be mailed or printed alone); and what the model is and what it was
validated on, so that a reader knows how far to trust the figures.  A run
that classified white cells (``--cells white``) shows white cells counted,
blasts and the blast share with its interval instead.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

from cellscreen.files import atomic_path
from cellscreen.screen import count, overlay

__all__ = ["MAX_THUMBNAILS", "write_report", "validation_notes"]

MAX_THUMBNAILS = 60  # overlay pictures embedded in the page; the rest are linked in the images table

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }
th { background: #eee; } td.name, th.name, td.text { text-align: left; }
td.name { max-width: 22em; overflow-wrap: anywhere; } td.pct { white-space: nowrap; }
td.warn { color: #a40; text-align: left; max-width: 28em; }
.fields { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 300px; break-inside: avoid; page-break-inside: avoid; }
figure img { width: 300px; border: 1px solid #999; } figcaption { font-size: 0.8em; overflow-wrap: anywhere; }
.legend span { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin: 0 0.3em 0 1em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: 600; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; } }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _percent(row: dict) -> str:
    if row.get("blast_percent"):
        share, low, high = (float(row[key]) for key in ("blast_percent", "blast_ci_low", "blast_ci_high"))
    elif row.get("parasitemia_percent"):
        share, low, high = (float(row[key]) for key in ("parasitemia_percent", "ci_low", "ci_high"))
    else:
        return "&ndash;"
    return f"{share:.2f}% ({low:.2f}&ndash;{high:.2f})"


# the count columns of the tables: (before the share, after it), by the kind of cell the model classified
_COLUMNS = {"red": (("red_counted", "positive"), ("flagged", "white")),
            "white": (("white_counted", "blasts"), ("white", "red_counted"))}
_HEADS = {"red": ("<th>red cells counted</th><th>positive</th><th>parasitemia (95% interval)</th><th>flagged</th>"
                  "<th>white cells</th>"),
          "white": ("<th>white cells counted</th><th>blasts</th><th>blast share (95% interval)</th>"
                    "<th>white cells (border included)</th><th>red cells counted</th>")}


def _count_cells(row: dict, judged: str = "red") -> str:
    before, after = _COLUMNS[judged]
    return "".join(f"<td>{int(row[key] or 0):,}</td>" for key in before) + (
        f"<td class='pct'>{_percent(row)}</td>") + "".join(f"<td>{int(row[key] or 0):,}</td>" for key in after)


def validation_notes(record: dict) -> list[tuple[str, str]]:
    """What the report says about the model and its validation, as (term, text) pairs, from the run's record
    (the model's own description is recorded there)."""
    from cellscreen.data.sources import PROFILES  # the dataset's own description and citation

    threshold = record.get("threshold", count.DEFAULT_THRESHOLD)
    white_cut = record.get("white_cut") if record.get("cells") == "white" else None
    if white_cut:
        called = (f"; blasts: {', '.join(record.get('blast_classes') or [])}, called when their summed "
                  f"probability is {threshold:g} or more")
    elif record.get("positive_class"):
        called = (f"; positive class {record['positive_class']}, called at a probability of {threshold:g} or "
                  "more")
    else:
        called = "; no positive class, so no parasitemia"
    notes = [("model", f"{record.get('model_name') or 'unnamed'} from {record.get('model')} "
                       f"(engine {record.get('engine')})"),
             ("classes", ", ".join(record.get("classes", [])) + called)]
    profile = PROFILES.get(record.get("dataset") or "")
    if profile is not None:
        notes.append(("trained on", f"{profile.description} ({profile.name}). {profile.citation}"))
    elif record.get("dataset"):
        notes.append(("trained on", str(record["dataset"])))
    validation = record.get("validation") or {}
    if validation.get("metric"):
        metric = validation["metric"]
        notes.append(("kept for", f"{metric.get('name')} = {metric.get('value'):.4g} on its validation cells"
                      if isinstance(metric.get("value"), (int, float)) else str(metric)))
    if validation.get("split"):
        split = validation["split"]
        notes.append(("validation split", f"{split.get('method', '?')} by {split.get('by', '?')}"))
    if validation.get("cells"):
        notes.append(("cells", ", ".join(f"{v:,} {k}" for k, v in validation["cells"].items())))
    notes.append(("validated on", "cells already cut from smear photographs of the training "
                  "dataset's own laboratory and microscope. Its accuracy on whole fields and on smears from "
                  "other laboratories, stains and microscopes is not established by that validation: check the "
                  "positive and flagged cells on the overlays before acting on a count."))
    notes.append(("cutting", _cutting(record, white_cut)))
    notes.append(("interval", f"Wilson score interval, {int(100 * count.CONFIDENCE)}%, over the counted cells "
                  "(it treats cells as independent; fields and slides vary more than that)"))
    return notes


def _cutting(record: dict, white_cut: dict | None) -> str:
    if not white_cut:
        return (f"each red cell along its outline, black outside, enlarged so that a red cell is "
                f"{record.get('training_cell_diameter')} px across as the training cells are (median of the "
                "training cells)")
    if white_cut.get("style") == "outline":
        return (f"each white cell along its outline, black outside, enlarged to {white_cut.get('diameter')} px "
                f"across (the median training cell) and centred on a black {white_cut.get('frame')} px frame, as "
                "the training cells were cut")
    return (f"a {white_cut.get('frame')} px window of the field centred on each white cell, the field enlarged so "
            f"that its red cells are {white_cut.get('diameter')} px across as in the training images")


def _sample_table(samples: list[dict], judged: str = "red") -> Iterator[str]:
    yield ("<h2>Samples</h2><table id='samples'><tr><th class='name'>sample</th><th>fields</th><th>skipped</th>"
           f"{_HEADS[judged]}<th class='name'>warnings</th></tr>")
    for row in samples:
        yield (f"<tr><td class='name'>{_e(row['sample'])}</td><td>{int(row['images']):,}</td>"
               f"<td>{int(row['skipped']):,}</td>{_count_cells(row, judged)}"
               f"<td class='warn'>{_e(row['warnings'])}</td></tr>")
    if judged == "white":
        yield ("</table><p>A white cell is counted when the image border does not cut it; the blast share is "
               "blasts over white cells counted. A blast count needs at least "
               f"{count.MIN_WHITE_CELLS:,} white cells per sample.</p>")
        return
    yield ("</table><p>A red cell is counted when it is one single red cell not cut by the image border; objects "
           "that are not (clumps, overlapping cells, debris) are flagged and not counted. A thin-film count needs "
           f"at least {count.MIN_RED_CELLS:,} red cells per sample.</p>")


def _thumbnails(out: Path, images: Iterable[dict], screened: int, judged: str = "red") -> Iterator[str]:
    legend = "".join(f"<span style='background:{_css(name)}'></span>{_e(meaning)}"
                     for name, meaning in overlay.legend(judged).items())
    yield f"<h2>Fields</h2><p class='legend'>Outlines:{legend}</p><div class='fields'>"
    shown = 0
    for row in images:
        if shown == MAX_THUMBNAILS:
            break
        if row["status"] == "ok" and (out / row["overlay"]).is_file():
            data = base64.b64encode(overlay.thumbnail_jpeg(out / row["overlay"])).decode()
            yield (f"<figure><img alt='{_e(row['image'])}' src='data:image/jpeg;base64,{data}'>"
                   f"<figcaption>{_e(row['image'])}: {_percent(row)}</figcaption></figure>")
            shown += 1
    yield "</div>"
    if screened > shown:
        yield f"<p>{shown} of {screened:,} fields shown; every overlay is in the overlays folder.</p>"


def _image_table(images: Iterable[dict], judged: str = "red") -> Iterator[str]:
    yield ("<h2>Images</h2><table id='images'><tr><th class='name'>image</th><th class='name'>sample</th>"
           f"{_HEADS[judged]}<th>red cell diameter (px)</th><th class='name'>warnings</th></tr>")
    for row in images:
        if row["status"] != "ok":
            yield (f"<tr><td class='name'>{_e(row['image'])}</td><td class='name'>{_e(row['sample'])}</td>"
                   f"<td class='warn' colspan='7'>{_e(row['status'])}</td></tr>")
        else:
            yield (f"<tr><td class='name'><a href='{_e(quote(row['overlay']))}'>{_e(row['image'])}</a></td>"
                   f"<td class='name'>{_e(row['sample'])}</td>{_count_cells(row, judged)}"
                   f"<td>{float(row['cell_diameter_px']):.1f}</td><td class='warn'>{_e(row['warnings'])}</td></tr>")
    yield "</table>"


def write_report(path: Path, out: Path, record: dict, samples: list[dict],
                 images: Callable[[], Iterable[dict]]) -> Path:
    """Write ``report.html`` for the run in ``out`` from its record, its sample rows and ``images()``, which
    gives the image rows afresh each time it is called: the page is written as it is read, never held whole."""
    judged = "white" if record.get("cells") == "white" else "red"
    counted = (f"{record.get('white_counted', 0):,} white cells" if judged == "white" else
               f"{record.get('red_counted', 0):,} red cells")
    head = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>cellscreen smear screening"
            f"</title><style>{_STYLE}</style></head><body><h1>Smear screening report</h1>"
            f"<p>{record.get('images', 0):,} field images screened, {record.get('skipped', 0):,} skipped; "
            f"{counted} counted in {len(samples):,} "
            f"sample{'s' if len(samples) != 1 else ''}. Run started {_e(record.get('started', ''))}.</p>")
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8") as page:
        page.write(head)
        page.writelines(_sample_table(samples, judged))
        page.writelines(_thumbnails(out, images(), record.get("images", 0), judged))
        page.writelines(_image_table(images(), judged))
        page.write("<h2>The model and what it was validated on</h2><dl>")
        page.writelines(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in validation_notes(record))
        page.write("</dl></body></html>\n")
    return path


def _css(name: str) -> str:
    """A swatch for a legend entry."""
    swatches = {"green to red": f"linear-gradient(90deg, rgb{overlay.NEGATIVE}, rgb{overlay.POSITIVE})",
                "yellow": f"rgb{overlay.FLAGGED}", "grey": f"rgb{overlay.BORDER}", "blue": f"rgb{overlay.WHITE}",
                "blue-grey": f"rgb{overlay.UNJUDGED}"}
    return swatches[name]
