"""The dataset index: every file under a dataset folder, used or skipped.

``scan_dataset`` walks a folder of class folders and returns one
``ImageRecord`` (relative path, label, group id, sha256, decoded size) per
usable image and one ``Skipped`` (relative path, reason) per file it cannot
use, so that ``len(records) + len(skipped)`` is always the number of files
found.  Every image is fully decoded once here, so truncated files are caught
before they reach a split or a training run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from cellscreen.data.images import (
    IGNORED_NAMES,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageReadError,
    decode_image,
    read_file,
)
from cellscreen.data.parallel import parallel_map
from cellscreen.data.sources import DatasetProfile, default_cache_dir, folder_profile
from cellscreen.errors import UserError

_MEMO_FORMAT = 1

__all__ = ["ImageRecord", "Skipped", "DatasetIndex", "scan_dataset"]


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One usable image."""

    path: str  # relative to the dataset folder, with "/" separators
    label: str
    group: str  # slide / subject / patient id, or a duplicate-cluster id
    sha256: str
    width: int
    height: int
    mode: str
    format: str


@dataclasses.dataclass(frozen=True)
class Skipped:
    """One file that was not used, and why."""

    path: str
    reason: str


@dataclasses.dataclass
class DatasetIndex:
    root: Path
    profile: DatasetProfile
    records: list[ImageRecord]
    skipped: list[Skipped]
    warnings: list[str]
    relabels: dict | None = None  # the relabel files applied (cellscreen.labels.applied); None: the folder's labels

    @property
    def n_files(self) -> int:
        return len(self.records) + len(self.skipped)

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels that have at least one image, in the profile's order."""
        present = {r.label for r in self.records}
        return tuple(label for label in self.profile.labels if label in present)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(r.label for r in self.records)
        return {label: counts.get(label, 0) for label in self.profile.labels}

    @property
    def groups_from_duplicates(self) -> bool:
        """True when file names carry no group id and identical files stand in."""
        return self.profile.group_regex is None


def _probe(path: Path, max_pixels: int) -> tuple[str | None, tuple | None, str | None]:
    """(sha256, (width, height, mode, format), None) or (sha256 or None, None, reason)."""
    try:
        data = read_file(path)
    except ImageReadError as exc:
        return None, None, str(exc)
    digest = hashlib.sha256(data).hexdigest()
    try:
        _, info = decode_image(data, max_pixels=max_pixels)
    except ImageReadError as exc:
        return digest, None, str(exc)
    return digest, (info.width, info.height, info.mode, info.format), None


class _ProbeMemo:
    """Probe results of one folder from earlier scans, keyed by path, size and mtime."""

    def __init__(self, root: Path, max_pixels: int):
        key = hashlib.sha256(f"{root.resolve()}|{max_pixels}|{_MEMO_FORMAT}".encode()).hexdigest()[:24]
        self.path = default_cache_dir() / "index" / f"{key}.json"
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def stamp(path: Path) -> list[int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def get(self, path: Path, stamp: list[int] | None):
        entry = self.entries.get(str(path))
        if stamp is None or entry is None or entry[0] != stamp:
            return None
        digest, info, reason = entry[1]
        return digest, (tuple(info) if info else None), reason

    def save(self, results: dict[str, list]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(results))
            os.replace(tmp, self.path)
        except OSError:  # a read-only cache only costs speed next time
            pass


def _probe_all(paths, memo, max_pixels, workers, progress, name):
    """Probe results for ``paths``, in order, reusing the memo where files are unchanged."""
    stamps = [_ProbeMemo.stamp(p) for p in paths] if memo else [None] * len(paths)
    results = [memo.get(p, s) if memo else None for p, s in zip(paths, stamps)]
    todo = [i for i, r in enumerate(results) if r is None]
    fresh = parallel_map(
        partial(_probe, max_pixels=max_pixels), [paths[i] for i in todo],
        workers=workers, desc=f"reading {name}", progress=progress,
    )
    for i, result in zip(todo, fresh):
        results[i] = result
    if memo is not None and (todo or len(memo.entries) != len(paths)):
        # only files that could be read are remembered: a permission fix must be seen next time
        memo.save({str(p): [s, list(r)] for p, s, r in zip(paths, stamps, results) if s and r[0] is not None})
    return results


def walk_tree(folder: Path, reason: str | None = None) -> Iterator[tuple[Path, str | None]]:
    """Every file below ``folder``, lazily and in sorted order: ``(file, None)``, and ``(entry, why)`` for
    what is not walked.

    Symlinked folders are not followed (one pointing at its own parent would
    never end), files in hidden folders are not used, and folders that cannot
    be listed are reported; all are listed, never dropped in silence.  With
    ``reason`` every entry is reported with that reason instead (a hidden
    folder's contents).
    """
    errors: list[tuple[Path, str]] = []

    def unlistable(error: OSError) -> None:
        why = "permission denied" if isinstance(error, PermissionError) else (error.strerror or str(error))
        errors.append((Path(error.filename) if error.filename else folder, f"cannot list folder: {why}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlistable):
        yield from errors
        errors.clear()
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            path = here / name
            if path.is_symlink():
                yield path, reason or "symbolic link to a folder (not followed)"
            elif name.startswith(".") and reason is None:
                yield from walk_tree(path, "hidden folder")
            else:
                keep.append(name)
        dirnames[:] = keep
        yield from ((here / name, reason) for name in sorted(filenames))
    yield from errors


def _walk_files(folder: Path, root: Path) -> tuple[list[Path], list[Skipped]]:
    """Every file below ``folder``, sorted, and the entries that are not walked, with the reason."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for path, reason in walk_tree(folder):
        if reason is None:
            found.append(path)
        else:
            skipped.append(Skipped(_rel(path, root), reason))
    return found, skipped


def _walk_all(folder: Path, root: Path, reason: str) -> list[Skipped]:
    """Every file (and symlinked folder) below ``folder``, not following links, skipped for ``reason``."""
    return [Skipped(_rel(path, root), why) for path, why in walk_tree(folder, reason)]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def printable_path(relative: str) -> str:
    """A path that can be printed and written as UTF-8: undecodable bytes become ``\\xe9``."""
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def valid_utf8_name(relative: str) -> bool:
    """False for names that are not valid UTF-8 (Latin-1 bytes from an old archive, say)."""
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _list_candidates(root: Path, profile: DatasetProfile):
    """Split the folder's files into (file, class folder) candidates and skipped files."""
    candidates: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    warnings: list[str] = []
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    subfolders = [p for p in entries if p.is_dir() and not p.name.startswith(".") and not p.is_symlink()]
    if not profile.class_folders:
        profile = folder_profile(profile, tuple(p.name for p in subfolders))
    known = set(profile.class_folders)

    def rel(path: Path) -> str:
        return _rel(path, root)

    for entry in entries:
        if entry.name in known and entry.is_dir():
            continue  # a class folder (a link to one elsewhere is followed)
        if entry.name in known:
            kind = "a file" if entry.is_file() else "not a folder"
            skipped.append(Skipped(rel(entry), f"class folder {entry.name!r} is {kind}, not a folder"))
        elif entry.is_dir() and entry.is_symlink():
            skipped.append(Skipped(rel(entry), "symbolic link to a folder (not followed)"))
        elif entry.is_dir():
            why = "hidden folder" if entry.name.startswith(".") else (
                f"unknown class folder {entry.name!r} (this dataset's classes: {', '.join(profile.class_folders)})"
            )
            skipped.extend(_walk_all(entry, root, why))
        else:  # a file, a broken link, a pipe ...
            skipped.append(Skipped(rel(entry), "not inside a class folder"))
    for class_folder in profile.class_folders:
        folder = root / class_folder
        if not folder.is_dir():
            if folder.exists() or folder.is_symlink():
                warnings.append(f"class folder {class_folder!r} in {root} is a file, not a folder")
            else:
                warnings.append(f"class folder {class_folder!r} is missing from {root}")
            continue
        files, unwalked = _walk_files(folder, root)
        skipped.extend(unwalked)
        for path in files:
            name = path.name
            if not valid_utf8_name(rel(path)):
                skipped.append(Skipped(rel(path), "file name is not valid UTF-8 (rename the file)"))
            elif name.startswith(".") or name.lower() in IGNORED_NAMES:
                skipped.append(Skipped(rel(path), "hidden or system file"))
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(Skipped(rel(path), f"not an image file type ({path.suffix or 'no extension'})"))
            else:
                candidates.append((path, class_folder))
    return profile, candidates, skipped, warnings


def scan_dataset(
    root: str | Path,
    profile: DatasetProfile,
    *,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = MAX_PIXELS,
    remember: bool = True,
) -> DatasetIndex:
    """Index every file under ``root`` (the folder holding the class folders).

    With ``remember`` (the default), what decoding found is kept in the cache
    folder keyed by each file's size and modification time, so the next scan
    of an unchanged folder reads only the directory listing.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    try:
        profile, candidates, skipped, warnings = _list_candidates(root, profile)
    except PermissionError:
        raise UserError(f"cannot list {root}: permission denied") from None
    skipped = [Skipped(printable_path(s.path), s.reason) for s in skipped]
    memo = _ProbeMemo(root, max_pixels) if remember else None
    probes = _probe_all([path for path, _ in candidates], memo, max_pixels, workers, progress, profile.name)
    records: list[ImageRecord] = []
    for (path, class_folder), (digest, info, reason) in zip(candidates, probes):
        relative = path.relative_to(root).as_posix()
        if reason is not None:
            skipped.append(Skipped(relative, reason))
            continue
        if profile.group_regex is None:
            group = f"dup-{digest[:12]}"  # identical files share a group
        else:
            group = profile.group_of(path.relative_to(root / class_folder).as_posix())
            if group is None:
                skipped.append(
                    Skipped(relative, f"no {profile.group_kind} id in the name (pattern {profile.group_regex!r})")
                )
                continue
        width, height, mode, fmt = info
        records.append(
            ImageRecord(relative, profile.label_of(class_folder), group, digest, width, height, mode, fmt)
        )
    records.sort(key=lambda r: r.path)
    skipped.sort(key=lambda s: s.path)
    counts = Counter(r.label for r in records)
    for label in profile.labels:
        if counts.get(label, 0) == 0:
            warnings.append(f"class {label!r} has no usable images")
    if len(counts) == 1:
        warnings.append(f"only one class has images ({next(iter(counts))}); a classifier needs two or more")
    return DatasetIndex(root=root, profile=profile, records=records, skipped=skipped, warnings=warnings)
