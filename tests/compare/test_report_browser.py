"""The comparison report opened in a real browser: Debian's chromium, driven by playwright."""

from tests.browser import needs_chromium, open_report
from tests.clitools import run


@needs_chromium
def test_report_renders_with_every_picture(learnable_cells, tmp_path):
    made = run("compare", "compact_cnn", "lenet5", "-d", "malaria-nih", "--data", str(learnable_cells), "--out",
               str(tmp_path / "cmp"), "--folds", "2", "--set", "epochs=1", "--set", "input_size=16",
               "--bootstrap", "20", "-q")
    assert made.returncode == 0, made.stderr
    report = tmp_path / "cmp" / "report.html"
    seen = open_report(report, "#comparison tr", screenshot=tmp_path / "report.png")
    images, rows, headings = seen["images"], seen["rows"], seen["headings"]
    assert len(images) == 6 and all(complete and width > 100 for _, complete, width in images), images
    assert len(rows) == 3 and rows[1].startswith("compact_cnn") and rows[2].startswith("lenet5")
    assert any("Errors per slide" in h for h in headings)
    from PIL import Image

    shot = Image.open(tmp_path / "report.png")
    assert shot.height > 2000  # the whole page, pictures included, not an empty shell
    assert len(set(shot.convert("L").resize((64, 256)).get_flattened_data())) > 20
