"""Relabel files: what is accepted, what is refused (one message each), and applying them to an index."""

from __future__ import annotations

import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.errors import UserError
from cellscreen.labels.relabel import EXCLUDE, apply_relabels, load_relabels, write_relabel_file

CLASSES = ("Parasitized", "Uninfected")


@pytest.fixture
def index(malaria_like):
    return scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)


def _paths(index, label, n):
    return [r.path for r in index.records if r.label == label][:n]


def _write(path, text):
    path.write_text(text)
    return path


def _load(index, *files, given=True):
    return load_relabels(files, dataset_root=index.root, classes=CLASSES,
                         given={r.path: r.label for r in index.records} if given else None)


def test_apply_changes_labels_and_excludes_without_touching_the_folder(index, tmp_path):
    flip, drop = _paths(index, "Parasitized", 2), _paths(index, "Uninfected", 1)
    before = sorted(p.relative_to(index.root).as_posix() for p in index.root.rglob("*") if p.is_file())
    file = write_relabel_file(tmp_path / "fix.csv", [(flip[0], "Uninfected"), (flip[1], "Parasitized"),
                                                     (drop[0], EXCLUDE)])
    relabels = _load(index, file)
    fixed = apply_relabels(index, relabels)
    label_of = {r.path: r.label for r in fixed.records}
    assert label_of[flip[0]] == "Uninfected" and label_of[flip[1]] == "Parasitized"
    assert drop[0] not in label_of
    assert any(s.path == drop[0] and "excluded by relabel file" in s.reason for s in fixed.skipped)
    assert fixed.n_files == index.n_files and len(fixed.records) == len(index.records) - 1
    assert {r.path: r.label for r in index.records}[flip[0]] == "Parasitized"  # the old index is unchanged
    after = sorted(p.relative_to(index.root).as_posix() for p in index.root.rglob("*") if p.is_file())
    assert before == after
    described = relabels.describe()
    assert described["changed"] == 1 and described["excluded"] == 1  # flip[1] already was Parasitized
    assert list(described["files"]) == [str(file)] and len(described["files"][str(file)]) == 64


def test_the_later_file_wins_and_both_are_recorded(index, tmp_path):
    cell = _paths(index, "Parasitized", 1)[0]
    first = _write(tmp_path / "a.csv", f"path,label\n{cell},exclude\n")
    second = _write(tmp_path / "b.csv", f"path,label\n{cell},Uninfected\n")
    relabels = _load(index, first, second)
    assert relabels.labels == {cell: "Uninfected"}
    assert list(relabels.describe()["files"]) == [str(first), str(second)]
    assert relabels.describe()["files"][str(first)] != relabels.describe()["files"][str(second)]
    assert _load(index, second, first).labels == {cell: EXCLUDE}
    one = load_relabels(str(second), dataset_root=index.root, classes=CLASSES)  # a single file, not in a list
    assert one.labels == {cell: "Uninfected"}


def test_fuhad_three_column_form_reads_the_relabelled_column(index, tmp_path):
    cell = _paths(index, "Uninfected", 1)[0]
    file = _write(tmp_path / "fuhad.csv", f"\ufeffpath,label,relabelled\n{cell},Uninfected,Parasitized\n\n")
    relabels = _load(index, file, given=False)  # the given label from the class folder
    assert relabels.labels == {cell: "Parasitized"} and relabels.changed == 1


@pytest.mark.parametrize("row, message", [
    ("Parasitized/C99P9ThinF_nothere.png,Uninfected", "is not a file of the dataset"),
    ("../malaria/cell_images/Parasitized/{cell},Uninfected", "is not a file of the dataset"),
    ("/etc/passwd,Uninfected", "is not a file of the dataset"),
    ("{cell},Ring", "the dataset has no class 'Ring'"),
    ("{cell},Uninfected,extra", "3 field(s) where the header has 2"),
    ("{cell},", "the label is empty"),
])
def test_refused_rows_name_the_file_and_line(index, tmp_path, row, message):
    cell = _paths(index, "Parasitized", 1)[0]
    file = _write(tmp_path / "bad.csv", "path,label\n" + row.format(cell=cell.split("/", 1)[1]
                                                                      if row.startswith("..") else cell) + "\n")
    with pytest.raises(UserError) as refused:
        _load(index, file)
    text = str(refused.value)
    assert message in text and f"{file}, line 2" in text and "\n" not in text


def test_the_same_path_twice_in_one_file_is_refused(index, tmp_path):
    cell = _paths(index, "Parasitized", 1)[0]
    file = _write(tmp_path / "twice.csv", f"path,label\n{cell},Uninfected\n{cell},exclude\n")
    with pytest.raises(UserError, match=r"twice.csv, line 3: .* named twice in one file \(first on line 2\)"):
        _load(index, file)


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("file,class\nx,y\n", "the header must name the columns path and label"),
])
def test_a_file_without_the_header_is_refused(index, tmp_path, text, message):
    file = _write(tmp_path / "nohead.csv", text)
    with pytest.raises(UserError, match=message):
        _load(index, file)


def test_a_missing_file_is_refused(index, tmp_path):
    with pytest.raises(UserError, match="cannot be read"):
        _load(index, tmp_path / "absent.csv")


def test_a_file_the_index_skips_is_refused_when_given_labels_are_known(index, tmp_path):
    broken = index.root / "Parasitized" / "C1P9ThinF_broken.png"
    broken.write_bytes(b"not a png")
    file = _write(tmp_path / "r.csv", "path,label\nParasitized/C1P9ThinF_broken.png,Uninfected\n")
    with pytest.raises(UserError, match="not a usable image"):
        _load(index, file)
    assert _load(index, file, given=False).labels  # on disk, so accepted when only the folder is known


@pytest.mark.real_data
def test_real_fuhad_file_loads_against_the_nih_folder(real_data):
    root = real_data / "malaria-nih" / "cell_images"
    relabels = load_relabels([real_data / "malaria-nih" / "relabelled-fuhad2020.csv"], dataset_root=root,
                             classes=CLASSES)
    assert relabels.describe()["changed"] == 555 and relabels.excluded == 0
    assert sum(label == "Uninfected" for label in relabels.labels.values()) == 230
