import json
import os

from tests.badfiles import write_all
from tests.clitools import run
from tests.conftest import make_malaria_like


def test_datasets_lists_every_profile():
    result = run("datasets")
    assert result.returncode == 0
    for name in ("malaria-nih", "taleqani", "taleqani-binary", "cnmc", "folder"):
        assert f"\n{name}\n" in f"\n{result.stdout}"


def test_info_on_a_messy_folder_accounts_for_every_file(malaria_like, tmp_path):
    write_all(malaria_like / "Uninfected")
    (malaria_like / "Uninfected" / "C3P9_notes.txt").write_text("x")
    out = tmp_path / "info.json"
    result = run("data", "info", str(malaria_like), "--dataset", "malaria-nih", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    n_files = sum(len(f) for _, _, f in os.walk(malaria_like))
    assert report["files"] == n_files == report["images"] + report["skipped"]
    assert report["images"] == 72 and report["groups"] == 12
    assert report["skipped_reasons"]["hidden or system file"] == 2
    assert "not an image file type (.txt)" in result.stdout
    again = run("data", "info", str(malaria_like), "--dataset", "malaria-nih", "--out", str(out), "-q")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_info_reports_duplicates_within_and_across_classes(malaria_like, tmp_path):
    first = malaria_like / "Parasitized" / "C1P9ThinF_IMG_2015_cell_0.png"
    (malaria_like / "Parasitized" / "C1P9ThinF_copy.png").write_bytes(first.read_bytes())
    (malaria_like / "Uninfected" / "C1P9ThinF_copy.png").write_bytes(first.read_bytes())
    out = tmp_path / "info.json"
    assert run("data", "info", str(malaria_like), "-d", "malaria-nih", "--out", str(out), "-q").returncode == 0
    duplicates = json.loads(out.read_text())["duplicates"]
    assert duplicates["sets"] == 1 and duplicates["across_class_sets"] == 1 and duplicates["extra_copies"] == 2


def test_split_and_cache_commands(malaria_like, tmp_path):
    split = tmp_path / "split.csv"
    result = run("split", str(malaria_like), "-d", "malaria-nih", "--out", str(split), "-q")
    assert result.returncode == 0, result.stderr
    assert split.read_text().startswith("path,label,group,subset\n")
    assert json.loads(split.with_suffix(".json").read_text())["leaky"] is False
    leaky = run("split", str(malaria_like), "-d", "malaria-nih", "--out", str(tmp_path / "c.csv"), "--by", "cell", "-q")
    assert leaky.returncode == 2 and "--allow-leakage" in leaky.stderr and not (tmp_path / "c.csv").exists()
    args = ("cache", str(malaria_like), "-d", "malaria-nih", "--size", "16", "--manifest", str(split), "-q")
    first, second = run(*args), run(*args)
    assert first.stdout.startswith("built cache") and "72 distinct images" in first.stdout
    assert second.stdout.startswith("reused cache")


def test_user_errors_are_one_line_not_tracebacks(tmp_path):
    one_class = make_malaria_like(tmp_path / "one", {f"C{n}": {"Parasitized": 2} for n in range(4)})
    cases = [
        (("data", "info", str(tmp_path / "nowhere"), "-d", "malaria-nih"), "does not exist"),
        (("data", "info", str(tmp_path), "-d", "no-such-set"), "known datasets"),
        (("split", str(one_class), "-d", "malaria-nih", "--out", str(tmp_path / "s.csv")), "at least two classes"),
        (("cache", str(one_class), "-d", "malaria-nih", "--size", "2"), "image size must be"),
        (("data", "fetch", "cnmc", "--data", str(tmp_path)), "no official download"),
    ]
    for args, message in cases:
        result = run(*args, "-q", cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and result.stderr.startswith("cellscreen: error:")


def test_demo_runs_end_to_end_on_a_small_copy(learnable_cells, tmp_path):
    """The demo's whole path (find the data, split by slide, train, evaluate, report) on synthetic slides."""
    result = run("demo", "--data", str(learnable_cells), "--out", str(tmp_path / "demo"), "--epochs", "1", "-q")
    assert result.returncode == 0, result.stderr
    assert "[demo] held-out slides: accuracy" in result.stdout
    report = tmp_path / "demo" / "report" / "report.md"
    assert report.is_file() and str(report) in result.stdout
    assert (tmp_path / "demo" / "report" / "predictions.csv").is_file()
    assert (tmp_path / "demo" / "run" / "model.onnx").is_file()  # what predict and serve run for it
    int8 = tmp_path / "demo" / "run" / "model.int8.onnx"
    assert ("8-bit graph for --engine int8" in result.stdout) == int8.is_file()
    assert int8.is_file() or "[demo] no 8-bit graph:" in result.stdout
