import pytest

from cellscreen.data.sources import PROFILES, get_profile, resolve_data_root, resolve_dataset_dir
from cellscreen.errors import UserError
from tests.conftest import make_malaria_like


@pytest.mark.parametrize(
    "name, file_name, group",
    [
        ("malaria-nih", "C100P61ThinF_IMG_20150918_144104_cell_162.png", "C100"),
        ("malaria-nih", "C1_thinF_IMG_20150604_104722_cell_9.png", "C1"),
        ("malaria-nih", "C47P8thin_Original_IMG_20150621_112116_cell_204.png", "C47"),
        ("cnmc", "UID_11_1_1_all.bmp", "11"),
        ("cnmc", "UID_H10_47_2_hem.bmp", "H10"),
        ("cnmc", "UID_h3_1_1_hem.bmp", "h3"),
        ("cnmc", "not_a_uid.bmp", None),
        ("taleqani", "WBC-Benign-001.jpg", None),
    ],
)
def test_group_ids_from_names(name, file_name, group):
    assert PROFILES[name].group_of(file_name) == group


def test_profiles_are_consistent():
    for profile in PROFILES.values():
        if profile.positive_class is not None:
            assert profile.positive_class in profile.labels, profile.name
        if profile.class_map:
            assert set(profile.class_map) == set(profile.class_folders)
    assert PROFILES["taleqani-binary"].labels == ("Benign", "ALL")
    assert PROFILES["taleqani"].labels == ("Benign", "Early", "Pre", "Pro")
    assert PROFILES["cnmc"].border_crop == 25


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UserError, match="malaria-nih"):
        get_profile("malaria")


def test_bad_group_regex_is_a_user_error():
    with pytest.raises(UserError, match="not a valid regular expression"):
        get_profile("folder", group_regex="(unclosed")


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLSCREEN_DATA", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("CELLSCREEN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "cellscreen" / "data"


def test_dataset_dir_found_from_any_level(tmp_path):
    cells = make_malaria_like(tmp_path / "malaria-nih", {"C1": {"Parasitized": 1, "Uninfected": 1}})
    profile = PROFILES["malaria-nih"]
    assert resolve_dataset_dir(profile, cells) == cells
    assert resolve_dataset_dir(profile, tmp_path / "malaria-nih") == cells
    assert resolve_dataset_dir(profile, tmp_path) == cells
    assert resolve_dataset_dir(profile, None, data=str(tmp_path)) == cells


def test_missing_dataset_suggests_fetch(tmp_path):
    with pytest.raises(UserError, match="cellscreen data fetch malaria-nih"):
        resolve_dataset_dir(PROFILES["malaria-nih"], None, data=str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no folder with Parasitized, Uninfected"):
        resolve_dataset_dir(PROFILES["malaria-nih"], tmp_path / "empty")
