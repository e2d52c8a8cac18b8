import os
from pathlib import Path

import pytest

from cellscreen.data import images
from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from tests.badfiles import write_all
from tests.conftest import make_malaria_like, write_cell

MALARIA = get_profile("malaria-nih")


def test_every_file_is_used_or_skipped_with_a_reason(malaria_like):
    bad = write_all(malaria_like / "Parasitized")
    (malaria_like / "readme.txt").write_text("top-level file")
    write_cell(malaria_like / "Unknown" / "C1x.png", seed=99)
    write_cell(malaria_like / "Uninfected" / "nogroup_cell.png", seed=98)
    index = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)

    n_files = sum(len(files) for _, _, files in os.walk(malaria_like))
    assert index.n_files == n_files
    assert len(index.records) + len(index.skipped) == n_files
    reasons = {s.path: s.reason for s in index.skipped}
    for name, (path, expected) in bad.items():
        key = f"Parasitized/{name}"
        if expected is None:
            # files named without a slide id are skipped for that reason, not for their format
            assert "no slide id" in reasons[key]
        else:
            assert expected in reasons[key], (name, reasons[key])
    assert reasons["readme.txt"] == "not inside a class folder"
    assert "unknown class folder 'Unknown'" in reasons["Unknown/C1x.png"]
    assert "no slide id" in reasons["Uninfected/nogroup_cell.png"]
    assert len(index.records) == 12 * 6


def test_odd_formats_are_indexed_when_names_carry_a_group(tmp_path):
    bad = write_all(tmp_path / "Parasitized")
    for name, (path, _) in bad.items():
        path.rename(path.with_name("C7_" + name))
    write_cell(tmp_path / "Uninfected" / "C7_a.png", seed=1)
    index = scan_dataset(tmp_path, MALARIA, workers=0, progress=False)
    used = {Path(r.path).name for r in index.records}
    assert used == {"C7_" + n for n, (_, e) in bad.items() if e is None} | {"C7_a.png"}
    modes = {Path(r.path).name: r.mode for r in index.records}
    assert modes["C7_palette.png"] == "P" and modes["C7_cmyk.jpg"] == "CMYK"


def test_groups_come_from_slide_prefix(malaria_like):
    index = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    assert {r.group for r in index.records} == {f"C{n}" for n in range(1, 13)}
    assert index.class_counts() == {"Parasitized": 36, "Uninfected": 36}


def test_empty_and_single_class_are_reported(tmp_path):
    make_malaria_like(tmp_path, {"C1": {"Parasitized": 2}})
    (tmp_path / "cell_images" / "Uninfected").mkdir()
    index = scan_dataset(tmp_path / "cell_images", MALARIA, workers=0, progress=False)
    assert any("'Uninfected' has no usable images" in w for w in index.warnings)
    assert any("only one class" in w for w in index.warnings)
    assert index.labels == ("Parasitized",)


def test_missing_class_folder_is_a_warning(tmp_path):
    make_malaria_like(tmp_path, {"C1": {"Parasitized": 2}})
    index = scan_dataset(tmp_path / "cell_images", MALARIA, workers=0, progress=False)
    assert any("'Uninfected' is missing" in w for w in index.warnings)


def test_unreadable_permissions_are_skipped(malaria_like, monkeypatch):
    locked = malaria_like / "Parasitized" / "C1P9ThinF_IMG_2015_cell_0.png"
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user
        real = images.Path.read_bytes

        def read_bytes(self):
            if self == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(images.Path, "read_bytes", read_bytes)
    try:
        index = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    finally:
        locked.chmod(0o644)
    reasons = {s.path: s.reason for s in index.skipped}
    assert reasons["Parasitized/C1P9ThinF_IMG_2015_cell_0.png"] == "permission denied"
    assert len(index.records) == 71


def test_generic_folder_takes_classes_from_disk(tmp_path):
    for label in ("blast", "normal"):
        for n in range(3):
            write_cell(tmp_path / label / f"pt{n}_{label}.png", seed=n + (10 if label == "blast" else 0))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    profile = get_profile("folder", group_regex=r"^(pt\d+)_", positive_class="blast")
    index = scan_dataset(tmp_path, profile, workers=0, progress=False)
    assert index.profile.class_folders == ("blast", "normal")
    assert {r.group for r in index.records} == {"pt0", "pt1", "pt2"}
    assert [s.reason for s in index.skipped] == ["hidden folder"]


def test_generic_positive_must_be_a_class(tmp_path):
    write_cell(tmp_path / "a" / "x.png", seed=1)
    with pytest.raises(ValueError, match="positive class 'b'"):
        scan_dataset(tmp_path, get_profile("folder", positive_class="b"), workers=0, progress=False)


def test_parallel_and_serial_scans_agree(malaria_like):
    write_all(malaria_like / "Uninfected")
    serial = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    parallel = scan_dataset(malaria_like, MALARIA, workers=2, progress=False)
    assert serial.records == parallel.records and serial.skipped == parallel.skipped


def test_second_scan_reuses_what_decoding_found(malaria_like, monkeypatch):
    from cellscreen.data import index as index_module

    first = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    probed = []
    real = index_module._probe
    monkeypatch.setattr(index_module, "_probe", lambda path, **kw: probed.append(path.name) or real(path, **kw))
    again = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    assert probed == [] and again.records == first.records
    changed = malaria_like / first.records[3].path
    write_cell(changed, seed=777, size=(30, 20))  # re-exported: new bytes, size and mtime
    os.utime(changed, ns=(1, 1))
    third = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    assert probed == [changed.name]
    assert third.records[3].sha256 != first.records[3].sha256 and third.records[3].width == 30
    fresh = scan_dataset(malaria_like, MALARIA, workers=0, progress=False, remember=False)
    assert fresh.records == third.records and len(probed) == 1 + len(first.records)
