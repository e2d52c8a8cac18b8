from collections import defaultdict

import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.data.splits import make_split, read_manifest
from cellscreen.errors import UserError
from tests.conftest import make_malaria_like, write_cell

MALARIA = get_profile("malaria-nih")


def sides_per_group(manifest):
    sides = defaultdict(set)
    for row in manifest.rows:
        sides[row["group"]].add(row[manifest.column])
    return sides


@pytest.fixture
def index(malaria_like):
    return scan_dataset(malaria_like, MALARIA, workers=0, progress=False)


@pytest.mark.parametrize("method", ["holdout", "kfold"])
def test_no_group_on_two_sides(index, method):
    manifest = make_split(index, method=method, folds=4, val=0.2, test=0.2, seed=3)
    assert all(len(s) == 1 for s in sides_per_group(manifest).values())
    assert not manifest.meta["leaky"]
    parts = {row[manifest.column] for row in manifest.rows}
    assert parts == ({"train", "val", "test"} if method == "holdout" else {"0", "1", "2", "3"})
    assert len(manifest.rows) == len(index.records)


def test_same_inputs_and_seed_give_identical_manifest(index, malaria_like):
    again = scan_dataset(malaria_like, MALARIA, workers=0, progress=False)
    assert make_split(index, seed=7).to_csv() == make_split(again, seed=7).to_csv()
    assert make_split(index, seed=7).to_csv() != make_split(index, seed=8).to_csv()


def test_identical_images_in_different_groups_stay_together(tmp_path):
    cells = make_malaria_like(tmp_path, {f"C{n}": {"Parasitized": 2, "Uninfected": 2} for n in range(1, 11)})
    # the same picture filed under two slides: a leak path even in a by-slide split
    write_cell(cells / "Parasitized" / "C1P9_dup.png", seed=12345)
    write_cell(cells / "Parasitized" / "C9P9_dup.png", seed=12345)
    index = scan_dataset(cells, MALARIA, workers=0, progress=False)
    for seed in range(5):
        manifest = make_split(index, seed=seed)
        side = {row["group"]: row["subset"] for row in manifest.rows}
        assert side["C1"] == side["C9"]
        assert manifest.meta["leaks"] == {"groups": 0, "duplicates": 0}


def test_cell_split_is_refused_then_labelled_leaky(index, tmp_path):
    with pytest.raises(UserError, match="--allow-leakage"):
        make_split(index, by="cell")
    manifest = make_split(index, by="cell", allow_leakage=True)
    assert manifest.meta["leaky"] and manifest.meta["leaks"]["groups"] > 0
    assert manifest.to_csv().splitlines()[0] == "path,label,group,subset,leaky"
    assert any("LEAKY" in note for note in manifest.meta["notes"])
    csv_path, meta_path = manifest.write(tmp_path / "split.csv")
    assert read_manifest(csv_path).meta["leaky"] is True


def test_write_refuses_to_overwrite(index, tmp_path):
    manifest = make_split(index)
    manifest.write(tmp_path / "split.csv")
    with pytest.raises(UserError, match="--overwrite"):
        manifest.write(tmp_path / "split.csv")
    manifest.write(tmp_path / "split.csv", overwrite=True)
    loaded = read_manifest(tmp_path / "split.csv")
    assert loaded.rows == manifest.rows and loaded.meta["manifest_sha256"] == manifest.sha256


def test_stratified_by_class(tmp_path):
    slides = {f"C{n}": {"Parasitized": 4 if n % 2 else 0, "Uninfected": 4} for n in range(1, 21)}
    cells = make_malaria_like(tmp_path, slides)
    manifest = make_split(scan_dataset(cells, MALARIA, workers=0, progress=False), method="kfold", folds=4)
    for fold in manifest.meta["counts"].values():
        assert fold["per_class"].get("Parasitized", 0) > 0 and fold["per_class"]["Uninfected"] > 0


def test_too_few_groups_and_single_class_are_user_errors(tmp_path):
    few = make_malaria_like(tmp_path / "few", {"C1": {"Parasitized": 2, "Uninfected": 2}, "C2": {"Parasitized": 2, "Uninfected": 2}})
    with pytest.raises(UserError, match="too few"):
        make_split(scan_dataset(few, MALARIA, workers=0, progress=False), method="kfold", folds=5)
    one = make_malaria_like(tmp_path / "one", {f"C{n}": {"Parasitized": 2} for n in range(5)})
    with pytest.raises(UserError, match="at least two classes"):
        make_split(scan_dataset(one, MALARIA, workers=0, progress=False))


def test_groups_from_duplicates_are_flagged(tmp_path):
    for c, label in enumerate(("Benign", "Early", "Pre", "Pro")):
        for n in range(6):
            write_cell(tmp_path / label / f"{label}-{n}.jpg", seed=100 * c + n)
    index = scan_dataset(tmp_path, get_profile("taleqani-binary"), workers=0, progress=False)
    manifest = make_split(index, val=0.2, test=0.2)
    assert {row["label"] for row in manifest.rows} == {"Benign", "ALL"}
    assert any("not patient-disjoint" in note for note in manifest.meta["notes"])


def test_too_few_cells_per_class_is_a_user_error():
    """Ten groups but five cells a class cannot make seven stratified parts: said in words, not by scikit-learn."""
    import numpy as np

    from cellscreen.data.splits import group_folds

    labels, units = np.repeat([0, 1], 5), np.arange(10)
    with pytest.raises(UserError, match="only 5 cells in the largest class"):
        group_folds(labels, units, 7, seed=0)
    assert sorted(set(group_folds(labels, units, 5, seed=0))) == [0, 1, 2, 3, 4]
