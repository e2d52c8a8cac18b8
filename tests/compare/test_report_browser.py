"""The comparison report opened in a real browser: Debian's chromium, driven by playwright."""

import shutil

import pytest

from tests.clitools import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_with_every_picture(learnable_cells, tmp_path):
    from playwright.sync_api import sync_playwright

    made = run("compare", "compact_cnn", "lenet5", "-d", "malaria-nih", "--data", str(learnable_cells), "--out",
               str(tmp_path / "cmp"), "--folds", "2", "--set", "epochs=1", "--set", "input_size=16",
               "--bootstrap", "20", "-q")
    assert made.returncode == 0, made.stderr
    report = tmp_path / "cmp" / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        rows = page.eval_on_selector_all("#comparison tr", "els => els.map(e => e.innerText)")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.innerText)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(images) == 6 and all(complete and width > 100 for _, complete, width in images), images
    assert len(rows) == 3 and rows[1].startswith("compact_cnn") and rows[2].startswith("lenet5")
    assert any("Errors per slide" in h for h in headings)
    from PIL import Image

    shot = Image.open(tmp_path / "report.png")
    assert shot.height > 2000  # the whole page, pictures included, not an empty shell
    assert len(set(shot.convert("L").resize((64, 256)).get_flattened_data())) > 20
