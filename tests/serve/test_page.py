"""The service's web page in a real browser (Debian's chromium, driven by playwright) against the real server."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import re
import socket
import threading
import time
import urllib.request

import pytest

from tests.browser import needs_chromium

pytestmark = needs_chromium

BAD_NAME = 'not a cell, "really" <b>.png'  # a comma, quotes and markup: CSV quoting and DOM escaping
DONE = """n => {
    const rows = document.querySelectorAll('#results tbody tr');
    return rows.length === n && !document.querySelector('#results tbody tr.pending');
}"""
ROWS = """rows => rows.map(r => ({
    name: r.cells[1].textContent, predicted: r.cells[2].textContent, status: r.cells[4].textContent,
    flagged: r.classList.contains('flagged'), bar: r.querySelector('.bar > div') ? r.querySelector('.bar > div').style.width : null,
    p: r.cells[3].textContent, camHidden: r.querySelector('.cam-button').hidden,
}))"""


@contextlib.contextmanager
def _serving(app):
    """``app`` served by uvicorn from a background thread on a free port of 127.0.0.1."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the ONNX export goes to a private cache, not ~/.cache
        patch.setenv("CELLSCREEN_CACHE", str(tmp_path_factory.mktemp("serve-cache")))
        from cellscreen.serve.app import create_app

        yield create_app("malaria")  # the bundled model


@pytest.fixture(scope="module")
def url(app):
    with _serving(app) as address:
        yield address


def _open(page, address) -> None:
    page.goto(address)
    page.wait_for_function("() => document.getElementById('prob-heading').textContent.startsWith('P(')")


def _cells(real_data, label, start, count):
    folder = real_data / "malaria-nih" / "cell_images" / label
    return sorted(p for p in folder.iterdir() if p.suffix == ".png")[start:start + count]


def test_page_screens_real_cells(url, page, real_data, tmp_path):
    parasitized, uninfected = _cells(real_data, "Parasitized", 0, 12), _cells(real_data, "Uninfected", 0, 12)
    bad = tmp_path / BAD_NAME
    bad.write_text("this is text, not a picture of a cell\n")
    files = [*parasitized, *uninfected, bad]
    with urllib.request.urlopen(url + "v1/model") as answer:
        info = json.load(answer)

    _open(page, url)
    model_text = page.inner_text("#model-info")
    for shown in (info["model"], info["engine"], "Parasitized", f"{info['input_size']} × {info['input_size']}",
                  str(info["limits"]["max_files"]), f"{info['limits']['max_upload_bytes']:,}", "available"):
        assert shown in model_text, (shown, model_text)
    assert page.is_disabled("#download")

    page.set_input_files("#files", [str(path) for path in files])
    page.wait_for_function(DONE, arg=25, timeout=120_000)
    rows = page.eval_on_selector_all("#results tbody tr", ROWS)
    assert [row["name"] for row in rows] == [path.name for path in files]
    assert page.locator("#results tbody b").count() == 0  # the file name was shown as text, not markup
    ok, skipped = rows[:24], rows[24]
    assert all(row["status"] == "ok" for row in ok), [row["status"] for row in ok]
    assert skipped["status"].startswith("skipped: ") and "not an image" in skipped["status"], skipped
    assert skipped["predicted"] == "" and skipped["camHidden"]
    assert all(row["flagged"] == (row["predicted"] == "Parasitized") for row in rows)
    assert all(row["bar"].endswith("%") and row["p"].endswith("%") for row in ok)
    assert sum(row["predicted"] == "Parasitized" for row in ok[:12]) >= 9
    assert sum(row["predicted"] == "Uninfected" for row in ok[12:]) >= 9
    thumbs = page.eval_on_selector_all("#results tbody img", "els => els.slice(0, 5).map(e => e.naturalWidth)")
    assert all(width > 0 for width in thumbs), thumbs

    flagged = sum(row["flagged"] for row in rows)
    summary = page.inner_text("#summary")
    assert "Parasitemia estimate" in summary, summary
    assert f"{100 * flagged / 24:.1f}% ({flagged} of 24 red cells flagged Parasitized)" in summary, summary
    assert "1 skipped" in summary, summary
    assert page.inner_text("#progress-text").startswith("25 of 25 cells")

    assert page.is_enabled("#download")
    with page.expect_download() as info_download:
        page.click("#download")
    download = info_download.value
    assert download.suggested_filename == "cellscreen-results.csv"
    saved = tmp_path / "results.csv"
    download.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["filename", "predicted", *(f"p_{c}" for c in info["classes"]), "status"]
    assert len(table) == 26
    for line, row in zip(table[1:], rows):
        assert line[0] == row["name"] and line[1] == row["predicted"] and line[-1] == row["status"]
    for line in table[1:25]:
        assert abs(sum(map(float, line[2:-1])) - 1) < 1e-4, line
    assert table[25] == [BAD_NAME, "", "", "", skipped["status"]]

    page.click("#results tbody tr:nth-child(1) .cam-button")
    cam = "() => { const i = document.querySelector('#cam-panel img.cam'); return i && i.complete && i.naturalWidth > 0; }"
    page.wait_for_function(cam, timeout=60_000)
    assert page.eval_on_selector("#cam-panel img.cam", "i => i.naturalWidth") >= info["input_size"]
    assert files[0].name in page.inner_text("#cam-title")
    page.click("#results tbody tr:nth-child(13) td.name")  # a click anywhere on a row does the same
    page.wait_for_function(f"() => document.getElementById('cam-title').textContent.includes({json.dumps(files[12].name)})")
    page.wait_for_function(cam, timeout=60_000)
    assert files[12].name in page.get_attribute("#cam-panel img.cam", "alt")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)


def test_dropped_files_are_classified_and_cleared(url, page, real_data):
    picked = _cells(real_data, "Parasitized", 12, 1) + _cells(real_data, "Uninfected", 12, 1)
    payload = [{"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()} for path in picked]
    _open(page, url)
    page.evaluate("""files => {
        const data = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
            data.items.add(new File([bytes], f.name, {type: 'image/png'}));
        }
        const drop = document.getElementById('drop');
        for (const type of ['dragenter', 'dragover', 'drop'])
            drop.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
    }""", payload)
    page.wait_for_function(DONE, arg=2, timeout=60_000)
    rows = page.eval_on_selector_all("#results tbody tr", ROWS)
    assert [row["name"] for row in rows] == [path.name for path in picked]
    assert [row["status"] for row in rows] == ["ok", "ok"]
    page.click("#clear")
    assert page.locator("#results tbody tr").count() == 0
    assert page.is_disabled("#download") and page.inner_text("#progress-text") == "0 of 0 cells"


def test_small_batches_keep_the_good_files(app, page, real_data, tmp_path):
    """With 3 files per request, bad files spread over several batches cost only themselves."""
    from cellscreen.serve.app import Limits, create_app

    strict = create_app(app.state.predictor, limits=Limits(max_files=3))
    good = _cells(real_data, "Parasitized", 20, 3) + _cells(real_data, "Uninfected", 20, 3)
    (tmp_path / "text.png").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    files = [good[0], tmp_path / "text.png", good[1], good[2], tmp_path / "empty.png", good[3], good[4], good[5]]
    with _serving(strict) as address:
        _open(page, address)
        page.set_input_files("#files", [str(path) for path in files])
        page.wait_for_function(DONE, arg=len(files), timeout=60_000)
        rows = page.eval_on_selector_all("#results tbody tr", ROWS)
    assert [row["name"] for row in rows] == [path.name for path in files]
    statuses = [row["status"] for row in rows]
    assert statuses[1] == "skipped: not an image Pillow can read", statuses
    assert statuses[4] == "skipped: empty file (0 bytes)", statuses
    assert [s for k, s in enumerate(statuses) if k not in (1, 4)] == ["ok"] * 6, statuses
    assert strict.state.batcher.images == 6  # every good cell predicted once


def test_page_screens_a_field_and_sums_cells_per_sample(app, url, page, real_data, tmp_path):
    """A folder picked whole: a synthetic field of real NIH cells (16 red cells, 4 parasitized) in slideA, and
    single cells in slideB and slideC; the overlay, the counts, the interval and the per-sample table are shown."""
    from PIL import Image
    from scipy.stats import binomtest

    from tests.serve.test_fields import synthetic_nih_field

    data, _ = synthetic_nih_field(real_data, app.state.predictor)
    root = tmp_path / "smears"
    (root / "slideA").mkdir(parents=True)
    (root / "slideA" / "field.png").write_bytes(data)
    for sample, label, start in (("slideB", "Parasitized", 30), ("slideC", "Uninfected", 30)):
        (root / sample).mkdir()
        for path in _cells(real_data, label, start, 2):
            (root / sample / path.name).write_bytes(path.read_bytes())

    _open(page, url)
    validated = page.inner_text("#model-info")
    assert "Validated on" in validated and "malaria-nih" in validated and "10,422 trained on" in validated
    assert "Parasitized from a probability of 0.5 on (the default)" in validated
    assert re.search(r"Labels\s+relabelled by relabelled-fuhad2020\.csv", validated), validated
    assert re.search(r"Test\s+1,618 cells of 11 slides, against the relabelled labels: accuracy 0\.98", validated)
    page.set_input_files("#folder", str(root))
    page.wait_for_function(DONE, arg=5, timeout=120_000)
    rows = page.eval_on_selector_all("#results tbody tr", ROWS)
    assert [row["name"] for row in rows][0] == "smears/slideA/field.png", rows
    field = rows[0]
    interval = binomtest(4, 16).proportion_ci(method="wilson")
    shown_interval = f"25.00% (95% CI {100 * interval.low:.2f}–{100 * interval.high:.2f}%)"
    assert field["predicted"] == "field: 16 red cells, 4 Parasitized" and field["p"] == shown_interval, field
    assert field["status"].startswith("ok") and field["camHidden"]
    assert all(row["status"] == "ok" for row in rows[1:]), rows

    overlay = "() => { const i = document.getElementById('field-overlay'); return i.complete && i.naturalWidth > 0; }"
    page.wait_for_function(overlay, timeout=30_000)
    assert page.eval_on_selector("#field-overlay", "i => [i.naturalWidth, i.naturalHeight]") == [640, 480]
    counts = page.inner_text("#field-counts")
    assert "Red cells counted\n16\n" in counts and "Parasitized\n4\n" in counts and shown_interval in counts, counts
    assert "only 16 red cells counted" in page.inner_text("#field-warnings")
    assert "16 red cells counted, 4 Parasitized" in page.inner_text("#summary")

    table = "() => document.querySelectorAll('#samples tbody tr').length"
    page.wait_for_function(f"{table} === 3")
    samples = page.eval_on_selector_all("#samples tbody tr",
                                        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    flagged_b = sum(row["flagged"] for row in rows[1:3])
    assert samples[0][:8] == ["slideA", "0", "–", "–", "1", "16", "4", shown_interval], samples
    assert "only 16 red cells counted" in samples[0][8]
    assert samples[1][:5] == ["slideB", "2", str(flagged_b), samples[1][3], "0"] and "95% CI" in samples[1][3]
    assert samples[2][:3] == ["slideC", "2", str(sum(row["flagged"] for row in rows[3:]))]

    page.fill("#group-regex", "^(C\\d+)")  # the slide in the NIH cells' names; the field keeps its folder
    page.wait_for_function(f"{table} === 2 || document.getElementById('regex-message').textContent !== ''")
    samples = page.eval_on_selector_all("#samples tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert page.inner_text("#regex-message") == "" and len(samples) == 2, samples
    page.fill("#group-regex", "(")
    page.wait_for_function(
        "() => document.getElementById('regex-message').textContent.includes('not a regular expression')")
    page.screenshot(path=str(tmp_path / "fields.png"), full_page=True)
    Image.open(tmp_path / "fields.png").verify()
