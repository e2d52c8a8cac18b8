"""Known datasets, described as data.

Every fact cellscreen knows about a public cell-image set lives in the
``PROFILES`` table below: where its class folders are, which class is the
positive finding, how the patient/slide/subject id is read from a file name,
how the images should be pre-processed, and where the official archive is.
Code elsewhere reads these records; it never special-cases a dataset by name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from cellscreen.errors import UserError

__all__ = [
    "Download",
    "FieldLabels",
    "DatasetProfile",
    "PROFILES",
    "get_profile",
    "folder_profile",
    "default_cache_dir",
    "resolve_data_root",
    "resolve_dataset_dir",
    "resolve_fields_dir",
    "describe_profile",
]


@dataclasses.dataclass(frozen=True)
class Download:
    """An official archive: where it is, what it must hash to, what it unpacks to.

    ``sha256`` and ``size`` are None where nobody has published them (a GitHub
    archive of a repository, made on request): the download is then taken as it
    comes and its measured hash printed, to be recorded here or passed with
    ``--sha256`` next time.
    """

    url: str
    sha256: str | None
    size: int | None
    archive_root: str  # top folder inside the archive, e.g. "cell_images"; "": its one top folder, whatever its name
    checksum_source: str = ""
    unpack_as: str = ""  # the name that folder is given under the profile's folder (default: archive_root)

    @property
    def folder_name(self) -> str:
        """What the unpacked dataset folder is called under the profile's folder."""
        return self.unpack_as or self.archive_root


@dataclasses.dataclass(frozen=True)
class FieldLabels:
    """Where a set of whole smear fields keeps its images and cell annotations, and how to read them.

    Paths are relative to the dataset folder.  A field ``images/NAME.jpg`` is
    labelled by ``labels/NAME.txt``: with ``format="chula"`` one ``x y class``
    line per red cell (Chula RBC-12's points), with ``"yolo"`` one
    ``class cx cy w h`` line per cell whose class ids name ``kinds`` in order.
    ``border`` is how found cells cut by the image border are scored, to
    follow what the annotators did (``cellscreen.screen.score.BORDER_RULES``).
    ``complete`` names the fields (file names without extension) whose every
    cell is labelled, where a set labels most fields only in part: precision
    and count error mean something only there (empty: every field is whole).
    """

    images: str
    labels: str
    format: str  # "chula" or "yolo"
    kinds: tuple[str, ...] = ("red",)
    border: str = "keep"
    complete: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetProfile:
    """How to read one dataset laid out as a folder of class folders.

    ``folder`` is where the dataset sits under the data root, ``layout`` the
    path from there to the folder that holds the class folders.  ``group_regex``
    is searched in each file's path relative to its class folder (the file name,
    for flat folders) and its first capture group is the patient/slide/subject
    id.  Without it, groups of byte-identical files are the unit of splitting.
    ``class_map`` renames class folders into labels (several folders can share
    a label, which is how binary views of multi-class sets are made).
    """

    name: str
    description: str
    folder: str = ""
    layout: str = ""
    class_folders: tuple[str, ...] = ()  # empty: every sub-folder is a class
    positive_class: str | None = None
    group_kind: str = "group"  # what a group is: slide, subject, patient
    group_regex: str | None = None
    class_map: dict[str, str] | None = None
    border_crop: int = 0  # pixels removed from every side before resizing
    native_size: int | None = None  # typical image side, a hint for model input size
    download: Download | None = None
    notes: str = ""
    citation: str = ""
    fields: FieldLabels | None = None  # a set of whole smear fields with cell annotations, not of single cells

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels after ``class_map``, in a stable order."""
        if self.class_map:
            return tuple(dict.fromkeys(self.class_map[c] for c in self.class_folders))
        return self.class_folders

    def label_of(self, class_folder: str) -> str:
        return self.class_map[class_folder] if self.class_map else class_folder

    def group_of(self, relative_path: str) -> str | None:
        """Group id from a file's path inside its class folder, or None if absent."""
        if self.group_regex is None:
            return None
        match = re.search(self.group_regex, relative_path)
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TALEQANI_CLASSES = ("Benign", "Early", "Pre", "Pro")
_TALEQANI_NOTE = (
    "File names carry no patient id: groups of byte-identical files are the unit "
    "of splitting, so no split of this set is truly patient-disjoint."
)
_TALEQANI_CITATION = (
    "Aria M, Ghaderzadeh M, Bashash D, et al. Acute lymphoblastic leukemia (ALL) "
    "image dataset. Kaggle, 2021. doi:10.34740/KAGGLE/DSV/2175623"
)

# Chula RBC-12 fields with (nearly) every red cell marked, as bench/screen_detection.py chose them: labelled
# cells >= 0.85 times the cells the first cell finder found (the ratio is bimodal), the fields between 0.45 and
# 0.9 looked at by eye. The other fields are labelled in part (3 of 60 cells, say).
_CHULA_COMPLETE = tuple(str(n) for n in (
    1, 4, 6, 10, 12, 13, 17, 20, 22, 26, 27, 29, 30, 32, 34, 36, 38, 39, 41, 43, 83, 94, 97, 98, 100, 102, 103,
    105, 106, 198, 232, 238, 241, 242, 246, 253, 254, 255, 263, 271, 272, 275, 276, 280, 284, 285, 297, 300,
    301, 303, 305, 312, 313, 320, 322, 326, 330, 333, 385, 386, 389))

PROFILES: dict[str, DatasetProfile] = {
    p.name: p
    for p in [
        DatasetProfile(
            name="malaria-nih",
            description="NIH/NLM thin-smear red cells: Parasitized vs Uninfected",
            folder="malaria-nih",
            layout="cell_images",
            class_folders=("Parasitized", "Uninfected"),
            positive_class="Parasitized",
            group_kind="slide",
            # C100P61ThinF_IMG_..._cell_162.png -> C100; C1_thinF_... -> C1
            group_regex=r"^(C\d+)",
            native_size=130,
            download=Download(
                url="https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip",
                sha256="0a949556b2414159b5100192609805376654c4266d8d187be9b1922fad43c668",
                size=353452851,
                archive_root="cell_images",
                checksum_source="TensorFlow Datasets url_checksums/malaria.txt",
            ),
            notes="Group by the C<number> slide prefix, never by P<number>.",
            citation=(
                "Rajaraman S, Antani SK, Poostchi M, et al. Pre-trained convolutional "
                "neural networks as feature extractors toward improved malaria parasite "
                "detection in thin blood smear images. PeerJ 6:e4568, 2018."
            ),
        ),
        DatasetProfile(
            name="taleqani",
            description="Taleqani Hospital ALL set: Benign hematogones and 3 B-ALL subtypes",
            folder="leukemia-taleqani",
            class_folders=_TALEQANI_CLASSES,
            group_kind="duplicate cluster",
            native_size=224,
            notes=_TALEQANI_NOTE,
            citation=_TALEQANI_CITATION,
        ),
        DatasetProfile(
            name="taleqani-binary",
            description="Taleqani ALL set as Benign vs ALL (Early, Pre, Pro merged)",
            folder="leukemia-taleqani",
            class_folders=_TALEQANI_CLASSES,
            positive_class="ALL",
            group_kind="duplicate cluster",
            class_map={"Benign": "Benign", "Early": "ALL", "Pre": "ALL", "Pro": "ALL"},
            native_size=224,
            notes=_TALEQANI_NOTE,
            citation=_TALEQANI_CITATION,
        ),
        DatasetProfile(
            name="cnmc",
            description="C-NMC 2019 (ISBI): ALL blasts vs normal B cells (hem)",
            folder="cnmc-sample",
            class_folders=("all", "hem"),
            positive_class="all",
            group_kind="subject",
            # UID_11_1_1_all.bmp -> 11; UID_H10_1_1_hem.bmp -> H10 (and the official "h3")
            group_regex=r"^UID_([Hh]?\d+)_",
            border_crop=25,  # 450 -> 400, as the seed study did
            native_size=450,
            notes="Official protocol is subject-disjoint and ranks by weighted F1.",
            citation=(
                "Gupta A, Gupta R. ALL Challenge dataset of ISBI 2019. "
                "The Cancer Imaging Archive, 2019. doi:10.7937/tcia.2019.dc64i46r"
            ),
        ),
        DatasetProfile(
            name="chula-rbc12",
            description="Chula RBC-12: 640x480 smear fields, red cells marked by their centre (13 morphologies)",
            folder="smears",
            layout="chula-rbc12",
            fields=FieldLabels(images="Dataset", labels="Label", format="chula", border="spare",
                               complete=_CHULA_COMPLETE),
            download=Download(
                url="https://github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset/archive/HEAD.zip",
                sha256=None,  # GitHub makes the archive on request and publishes no checksum
                size=None,
                archive_root="",
                unpack_as="chula-rbc12",
                checksum_source="none published; the download's sha256 is printed",
            ),
            notes=("No malaria: for scoring cell finding (`cellscreen cells score`) and specificity. Cells cut by "
                   "the border are mostly not marked; most fields are marked only in part, so precision and count "
                   "error are scored on the 61 fields marked whole."),
            citation=(
                "Naruenatthanaset K, Chalidabhongse TH, Palasuwan D, et al. Red blood cell segmentation with "
                "overlapping cell separation and classification on imbalanced dataset. arXiv:2012.01321, 2021."
            ),
        ),
        DatasetProfile(
            name="txl-pbc",
            description="TXL-PBC: smear fields with YOLO boxes for white cells, red cells and platelets",
            folder="smears",
            layout="txl-pbc",
            fields=FieldLabels(images="TXL_PBC/images/train", labels="TXL_PBC/labels/train", format="yolo",
                               kinds=("white", "red", "platelet"), border="keep"),
            download=Download(
                url="https://github.com/lugan113/TXL-PBC_Dataset/archive/HEAD.zip",
                sha256=None,  # GitHub makes the archive on request and publishes no checksum
                size=None,
                archive_root="",
                unpack_as="txl-pbc",
                checksum_source="none published; the download's sha256 is printed",
            ),
            notes=("No malaria. BCCD, BCD, PBC and Raabin-WBC fields re-annotated (data.yaml: 0 WBC, 1 RBC, "
                   "2 Platelets); cells cut by the border are labelled. The train split is scored by default."),
            citation="Gan L, Li X. TXL-PBC: a freely accessible labeled peripheral blood cell dataset. arXiv:2407.13214, 2024.",
        ),
        DatasetProfile(
            name="folder",
            description="Your own cells: a folder of class folders (--group-regex for patient ids)",
        ),
    ]
}


def get_profile(
    name: str,
    *,
    group_regex: str | None = None,
    positive_class: str | None = None,
) -> DatasetProfile:
    """Look up a profile by name, applying the user's optional overrides."""
    try:
        profile = PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UserError(f"unknown dataset {name!r}; known datasets: {known}") from None
    changes = {}
    if group_regex is not None and group_regex != profile.group_regex:  # the profile's own keeps its group kind
        try:
            re.compile(group_regex)
        except re.error as exc:
            raise UserError(f"--group-regex {group_regex!r} is not a valid regular expression: {exc}") from None
        changes.update(group_regex=group_regex, group_kind="patient")  # what a lab's own pattern reads
    if positive_class is not None:
        changes["positive_class"] = positive_class
    return dataclasses.replace(profile, **changes) if changes else profile


def folder_profile(profile: DatasetProfile, class_folders: tuple[str, ...]) -> DatasetProfile:
    """Fill in the classes of a generic profile from the folders found on disk."""
    if profile.class_folders:
        return profile
    if profile.positive_class is not None and profile.positive_class not in class_folders:
        raise UserError(
            f"positive class {profile.positive_class!r} is not one of the class folders "
            f"found: {', '.join(class_folders) or '(none)'}"
        )
    return dataclasses.replace(profile, class_folders=class_folders)


def default_data_root() -> Path:
    """The user cache folder used when neither --data nor CELLSCREEN_DATA is set."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cellscreen" / "data"


def default_cache_dir() -> Path:
    """Where decoded images and scan results are cached: ``$CELLSCREEN_CACHE``,
    else ``~/.cache/cellscreen/cache``.  Never inside a data folder."""
    env = os.environ.get("CELLSCREEN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cellscreen" / "cache"


def resolve_data_root(data: str | os.PathLike | None = None) -> Path:
    """``--data``, else ``$CELLSCREEN_DATA``, else the user cache folder."""
    if data:
        return Path(data).expanduser()
    env = os.environ.get("CELLSCREEN_DATA")
    return Path(env).expanduser() if env else default_data_root()


def resolve_dataset_dir(profile: DatasetProfile, path: str | os.PathLike | None, *, data: str | None = None) -> Path:
    """Find the folder holding the class folders.

    ``path`` may be that folder itself, the dataset's own folder (for the NIH
    set, the one holding ``cell_images``) or a data root holding several
    datasets; without ``path`` the data root is used.
    """
    if profile.fields is not None:
        raise UserError(f"{profile.name} is a set of whole smear fields, not of single cells: use it with "
                        f"`cellscreen cells score --dataset {profile.name}` or `cellscreen screen`")
    base = Path(path).expanduser() if path else resolve_data_root(data)
    candidates = [base]
    if profile.layout:
        candidates.append(base / profile.layout)
    if profile.folder:
        candidates.append(base / profile.folder / profile.layout if profile.layout else base / profile.folder)
    for candidate in candidates:
        if _holds_class_folders(candidate, profile):
            return candidate
    if not base.exists():
        hint = ""
        if profile.download is not None and not path:
            hint = f"; run `cellscreen data fetch {profile.name}` to download it"
        raise UserError(f"data folder {base} does not exist{hint}")
    if not base.is_dir():
        raise UserError(f"{base} is not a folder")
    expected = ", ".join(profile.class_folders) or "class sub-folders"
    tried = ", ".join(str(c) for c in candidates)
    hint = ""
    if profile.class_folders and path:  # a folder of the user's own classes, read with a known set's profile
        hint = (f"; for your own folder of class folders pass --dataset folder (or leave --dataset out), "
                f"or pass the {profile.name} folder")
    raise UserError(f"no folder with {expected} found (looked in {tried}){hint}")


def resolve_fields_dir(profile: DatasetProfile, path: str | os.PathLike | None = None, *,
                       data: str | None = None) -> Path:
    """Find the folder of a set of smear fields (the one holding ``profile.fields.images``).

    ``path`` may be that folder or a data root; without it the data root is
    used (``<data root>/smears/chula-rbc12`` for Chula RBC-12).
    """
    if profile.fields is None:
        raise UserError(f"{profile.name} is not a set of smear fields with cell annotations")
    base = Path(path).expanduser() if path else resolve_data_root(data)
    candidates = [base, base / profile.folder / profile.layout]
    for candidate in candidates:
        if (candidate / profile.fields.images).is_dir():
            return candidate
    hint = f"; run `cellscreen data fetch {profile.name}` to download it" if profile.download and not path else ""
    tried = ", ".join(str(c / profile.fields.images) for c in candidates)
    raise UserError(f"no {profile.name} field images found (looked for {tried}){hint}")


def _holds_class_folders(folder: Path, profile: DatasetProfile) -> bool:
    if not folder.is_dir():
        return False
    if not profile.class_folders:  # generic: any folder with a sub-folder will do
        return any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())
    return any((folder / c).is_dir() for c in profile.class_folders)


def describe_profile(profile: DatasetProfile) -> str:
    """A profile as ``cellscreen datasets`` lists it: name, description, then one fact a line."""
    if profile.fields is not None:
        return _describe_fields(profile)
    classes = ", ".join(profile.class_folders) or "(the sub-folders found)"
    lines = [profile.name, f"  {profile.description}",
             f"  folder     {profile.folder}/{profile.layout}".rstrip("/") if profile.folder else "  folder     DIR",
             f"  classes    {classes}"]
    if profile.class_map:
        lines.append(f"  labels     {', '.join(profile.labels)}")
    no_positive = "(none: multi-class)" if profile.class_folders else "(--positive CLASS for a binary task)"
    lines.append(f"  positive   {profile.positive_class or no_positive}")
    grouping = f"{profile.group_kind} from name, pattern {profile.group_regex}" if profile.group_regex else (
        "byte-identical files (no id in names)")
    lines.append(f"  groups     {grouping}")
    if profile.border_crop:
        lines.append(f"  crop       {profile.border_crop} px border")
    if profile.download:
        lines.append(f"  download   {profile.download.url} ({profile.download.size / 1e6:.0f} MB)")
    if profile.notes:
        lines.append(f"  note       {profile.notes}")
    return "\n".join(lines)


def _describe_fields(profile: DatasetProfile) -> str:
    fields = profile.fields
    kinds = f", classes {', '.join(f'{k} {kind}' for k, kind in enumerate(fields.kinds))}" if (
        fields.format == "yolo") else ""
    lines = [profile.name, f"  {profile.description}", f"  folder     {profile.folder}/{profile.layout}",
             f"  fields     {fields.images}/", f"  labels     {fields.labels}/ ({fields.format}{kinds})",
             f"  border     {fields.border} (how found cells cut by the border are scored)"]
    if fields.complete:
        lines.append(f"  complete   {len(fields.complete)} fields with every cell labelled (the others in part)")
    if profile.download:
        lines.append(f"  download   {profile.download.url}")
    if profile.notes:
        lines.append(f"  note       {profile.notes}")
    return "\n".join(lines)
