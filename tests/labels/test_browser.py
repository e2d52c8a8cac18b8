"""The review page and the audit report in a real browser (Debian's chromium, driven by playwright), on real
NIH cells: a small copy of two slides' cells with planted wrong labels, audited from a fake out-of-fold file."""

from __future__ import annotations

import json
import shutil

import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.labels.audit import audit_labels
from cellscreen.labels.relabel import apply_relabels, load_relabels, read_relabel_rows, write_relabel_file
from tests.browser import needs_chromium
from tests.labels.helpers import fake_oof
from tests.serve.test_page import _serving

pytestmark = [pytest.mark.real_data, needs_chromium]
SLIDES = ("C100", "C101")
PER_CLASS = 10  # cells of each class per slide
PLANTED = 4


@pytest.fixture(scope="module")
def real_audit(tmp_path_factory):
    """An audit folder over 40 real cells of two slides, four of them filed under the wrong class."""
    from tests.conftest import REAL_DATA

    source = REAL_DATA / "malaria-nih" / "cell_images"
    if not source.is_dir():
        pytest.skip("real data (../shared/data or $CELLSCREEN_DATA) is not available")
    work = tmp_path_factory.mktemp("real-audit")
    root = work / "cell_images"
    for label in ("Parasitized", "Uninfected"):
        for slide in SLIDES:
            cells = sorted(p for p in (source / label).glob(f"{slide}P*.png"))[:PER_CLASS]
            (root / label).mkdir(parents=True, exist_ok=True)
            for cell in cells:
                shutil.copyfile(cell, root / label / cell.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLSCREEN_CACHE", str(work / "cache"))
        index = scan_dataset(root, get_profile("malaria-nih"), progress=False)
    true_label_of = {r.path: r.label for r in index.records}
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    flipped = [r.path for r in index.records][3::10][:PLANTED]
    noise = write_relabel_file(work / "noise.csv", [(p, other[true_label_of[p]]) for p in flipped])
    given = apply_relabels(index, load_relabels([noise], dataset_root=root, classes=index.profile.labels))
    audit = audit_labels(given, out_dir=work / "audit", oof=fake_oof(given, true_label_of, work / "oof.csv"))
    assert sorted(s.path for s in audit.suspects) == sorted(flipped)
    return work / "audit", audit


def _loaded_images(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => [e.complete, e.naturalWidth])")


def _open(page, url):
    page.goto(url)
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")


def test_review_page_keys_record_decisions_and_resume(real_audit, page):
    from cellscreen.labels.review import review_app

    folder, audit = real_audit
    suspects = audit.suspects
    with _serving(review_app(folder, reviewer="tester")) as url:
        _open(page, url)
        assert page.get_attribute("#cell", "data-path") == suspects[0].path
        assert page.inner_text("#given") == suspects[0].label
        assert page.inner_text("#suggested") == suspects[0].suggested
        shown = _loaded_images(page, "img")
        assert len(shown) >= 3 and all(done and width > 20 for done, width in shown), shown  # cell + neighbours
        page.keyboard.press("f")
        page.wait_for_function("p => document.getElementById('cell').dataset.path === p", arg=suspects[1].path)
        page.keyboard.press("x")
        page.wait_for_function("p => document.getElementById('cell').dataset.path === p", arg=suspects[2].path)
        page.keyboard.press("ArrowLeft")  # back to the second, and change my mind about it
        page.wait_for_function("p => document.getElementById('cell').dataset.path === p", arg=suspects[1].path)
        assert "exclude" in page.inner_text("#decision")
        page.keyboard.press("k")
        page.wait_for_function("p => document.getElementById('cell').dataset.path === p", arg=suspects[2].path)
        page.keyboard.press("u")
        page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('3 of')")
        records = [json.loads(line) for line in (folder / "decisions.jsonl").read_text().splitlines()]
        assert [(r["path"], r["decision"]) for r in records] == [
            (suspects[0].path, "flip"), (suspects[1].path, "exclude"), (suspects[1].path, "keep"),
            (suspects[2].path, "unsure")]
        assert all(r["who"] == "tester" and r["when"] for r in records)
        page.click("#export")
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('wrote')")
        rows = read_relabel_rows(folder / "review-relabel.csv")[0]
        assert [(p, label) for _, p, label in rows] == [(suspects[0].path, suspects[0].suggested)]
        # a new page (the reviewer came back) starts at the first cell without a decision
        page.reload()
        _open(page, url)
        assert page.get_attribute("#cell", "data-path") == suspects[3].path
        assert page.inner_text("#progress").startswith("3 of 4")


def test_audit_report_shows_every_suspect_picture(real_audit, page, tmp_path):
    folder, audit = real_audit
    page.goto((folder / "report.html").as_uri())
    page.wait_for_load_state("load")
    pictures = _loaded_images(page, ".montage img")  # each fitted into 112 px: the longer side is 112
    assert len(pictures) == PLANTED and all(done and width > 50 for done, width in pictures), pictures
    per_class = page.eval_on_selector_all("#per-class tbody tr", "rows => rows.map(r => r.innerText)")
    per_slide = page.eval_on_selector_all("#per-slide tbody tr", "rows => rows.map(r => r.cells[0].innerText)")
    assert len(per_class) == 2 and sorted(per_slide) == sorted(SLIDES)
    captions = page.eval_on_selector_all(".montage figcaption", "els => els.map(e => e.innerText)")
    assert any(c.startswith("#1 ") for c in captions) and len(captions) == PLANTED
    assert "flagged" in page.inner_text("#summary") and str(PLANTED) in page.inner_text("#summary")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    from PIL import Image

    shot = Image.open(tmp_path / "report.png")
    assert len(set(shot.convert("L").resize((64, 128)).get_flattened_data())) > 20  # pictures, not an empty shell
