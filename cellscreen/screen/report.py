"""The HTML report of a screening run: one self-contained, printable page.

Per sample: fields, red cells counted, positive cells, parasitemia with its
95% interval, cells flagged, white cells and warnings; per image the same,
or why the file was skipped; thumbnails of the overlays (embedded, so the
page can be mailed or printed alone); and what the model is and what it was
validated on, so that a reader knows how far to trust the figures.
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
    if not row.get("parasitemia_percent"):
        return "&ndash;"
    return f"{float(row['parasitemia_percent']):.2f}% ({float(row['ci_low']):.2f}&ndash;{float(row['ci_high']):.2f})"


def _count_cells(row: dict) -> str:
    values = [f"{int(row[key]):,}" for key in ("red_counted", "positive")]
    return "".join(f"<td>{v}</td>" for v in values) + f"<td class='pct'>{_percent(row)}</td>" + "".join(
        f"<td>{int(row[key]):,}</td>" for key in ("flagged", "white"))


_COUNT_HEAD = ("<th>red cells counted</th><th>positive</th><th>parasitemia (95% interval)</th><th>flagged</th>"
               "<th>white cells</th>")


def validation_notes(record: dict) -> list[tuple[str, str]]:
    """What the report says about the model and its validation, as (term, text) pairs, from the run's record
    (the model's own description is recorded there)."""
    from cellscreen.data.sources import PROFILES  # the dataset's own description and citation

    notes = [("model", f"{record.get('model_name') or 'unnamed'} from {record.get('model')} "
                       f"(engine {record.get('engine')})"),
             ("classes", ", ".join(record.get("classes", [])) + (
                 f"; positive class {record['positive_class']}, called at a probability of "
                 f"{record.get('threshold', count.DEFAULT_THRESHOLD):g} or more" if record.get("positive_class")
                 else "; no positive class, so no parasitemia"))]
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
    notes.append(("validated on", "single cells already cut from thin-smear photographs of the training "
                  "dataset's own laboratory and microscope. Its accuracy on whole fields and on smears from "
                  "other laboratories, stains and microscopes is not established by that validation: check the "
                  "positive and flagged cells on the overlays before acting on a count."))
    notes.append(("cutting", f"each red cell along its outline, black outside, enlarged so that a red cell is "
                  f"{record.get('training_cell_diameter')} px across as the training cells are (median of "
                  "the training cells)"))
    notes.append(("interval", f"Wilson score interval, {int(100 * count.CONFIDENCE)}%, over the counted cells "
                  "(it treats cells as independent; fields and slides vary more than that)"))
    return notes


def _sample_table(samples: list[dict]) -> Iterator[str]:
    yield ("<h2>Samples</h2><table id='samples'><tr><th class='name'>sample</th><th>fields</th><th>skipped</th>"
           f"{_COUNT_HEAD}<th class='name'>warnings</th></tr>")
    for row in samples:
        yield (f"<tr><td class='name'>{_e(row['sample'])}</td><td>{int(row['images']):,}</td>"
               f"<td>{int(row['skipped']):,}</td>{_count_cells(row)}<td class='warn'>{_e(row['warnings'])}</td></tr>")
    yield ("</table><p>A red cell is counted when it is one single red cell not cut by the image border; objects "
           "that are not (clumps, overlapping cells, debris) are flagged and not counted. A thin-film count needs "
           f"at least {count.MIN_RED_CELLS:,} red cells per sample.</p>")


def _thumbnails(out: Path, images: Iterable[dict], screened: int) -> Iterator[str]:
    legend = "".join(f"<span style='background:{_css(name)}'></span>{_e(meaning)}"
                     for name, meaning in overlay.LEGEND.items())
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


def _image_table(images: Iterable[dict]) -> Iterator[str]:
    yield ("<h2>Images</h2><table id='images'><tr><th class='name'>image</th><th class='name'>sample</th>"
           f"{_COUNT_HEAD}<th>red cell diameter (px)</th><th class='name'>warnings</th></tr>")
    for row in images:
        if row["status"] != "ok":
            yield (f"<tr><td class='name'>{_e(row['image'])}</td><td class='name'>{_e(row['sample'])}</td>"
                   f"<td class='warn' colspan='7'>{_e(row['status'])}</td></tr>")
        else:
            yield (f"<tr><td class='name'><a href='{_e(quote(row['overlay']))}'>{_e(row['image'])}</a></td>"
                   f"<td class='name'>{_e(row['sample'])}</td>{_count_cells(row)}"
                   f"<td>{float(row['cell_diameter_px']):.1f}</td><td class='warn'>{_e(row['warnings'])}</td></tr>")
    yield "</table>"


def write_report(path: Path, out: Path, record: dict, samples: list[dict],
                 images: Callable[[], Iterable[dict]]) -> Path:
    """Write ``report.html`` for the run in ``out`` from its record, its sample rows and ``images()``, which
    gives the image rows afresh each time it is called: the page is written as it is read, never held whole."""
    head = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>cellscreen smear screening"
            f"</title><style>{_STYLE}</style></head><body><h1>Smear screening report</h1>"
            f"<p>{record.get('images', 0):,} field images screened, {record.get('skipped', 0):,} skipped; "
            f"{record.get('red_counted', 0):,} red cells counted in {len(samples):,} "
            f"sample{'s' if len(samples) != 1 else ''}. Run started {_e(record.get('started', ''))}.</p>")
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8") as page:
        page.write(head)
        page.writelines(_sample_table(samples))
        page.writelines(_thumbnails(out, images(), record.get("images", 0)))
        page.writelines(_image_table(images()))
        page.write("<h2>The model and what it was validated on</h2><dl>")
        page.writelines(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in validation_notes(record))
        page.write("</dl></body></html>\n")
    return path


def _css(name: str) -> str:
    """A swatch for a legend entry."""
    swatches = {"green to red": f"linear-gradient(90deg, rgb{overlay.NEGATIVE}, rgb{overlay.POSITIVE})",
                "yellow": f"rgb{overlay.FLAGGED}", "grey": f"rgb{overlay.BORDER}", "blue": f"rgb{overlay.WHITE}"}
    return swatches[name]
