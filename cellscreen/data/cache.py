"""A preprocessed image cache: decode, crop and resize once, reuse forever.

Only deterministic work is cached (decode, the optional border crop,
pad-to-square and resize); random augmentation happens on tensors after
loading, so cached pixels never freeze one random draw.  Each distinct file
content is stored once as ``size x size x 3`` uint8 in a memory-mapped array.

The cache folder's name is a hash of every file's sha256 and the
preprocessing parameters: a changed file or parameter gives a new key and a
new build; the same inputs find the finished cache and load it instantly.
A build that is interrupted keeps what it finished and resumes there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from cellscreen import __version__
from cellscreen.data.images import DEFAULT_INTERPOLATION, ImageReadError, check_interpolation, load_prepared
from cellscreen.data.index import ImageRecord, Skipped
from cellscreen.data.parallel import parallel_map
from cellscreen.data.sources import default_cache_dir
from cellscreen.errors import UserError

__all__ = ["CacheSpec", "ImageCache", "build_cache", "default_cache_dir", "describe_cache"]

CACHE_FORMAT = 1
_CHUNK = 512  # images decoded between two progress checkpoints


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    """The deterministic preprocessing a cache holds."""

    size: int
    border_crop: int = 0
    interpolation: str = DEFAULT_INTERPOLATION  # one of images.INTERPOLATIONS

    def __post_init__(self):
        if self.size < 8 or self.size > 2048:
            raise UserError(f"image size must be between 8 and 2048 pixels, got {self.size}")
        check_interpolation(self.interpolation)


def cache_key(digests: Sequence[str], spec: CacheSpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, **dataclasses.asdict(spec)}, sort_keys=True).encode())
    for digest in digests:
        h.update(bytes.fromhex(digest))
    return h.hexdigest()[:24]


@dataclasses.dataclass
class ImageCache:
    """A finished cache: ``images[row_of[sha256]]`` is one preprocessed image."""

    folder: Path
    spec: CacheSpec
    images: np.ndarray  # (N, size, size, 3) uint8, memory-mapped read-only
    row_of: dict[str, int]
    skipped: list[Skipped]  # files that could not be decoded when the cache was built
    built: bool  # True if this call built it (or finished it), False if reused
    seconds: float

    def get(self, sha256: str) -> np.ndarray:
        return self.images[self.row_of[sha256]]

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self.row_of


_open_arrays: dict[str, np.ndarray] = {}


def _preprocess_into(item: tuple[int, str], data_path: str, spec: CacheSpec) -> str | None:
    """Decode one file and write it straight into row ``i`` of the cache array
    (workers write in place rather than sending pixels back); return the reason
    if it cannot be read."""
    i, path = item
    try:
        array = load_prepared(path, size=spec.size, crop=spec.border_crop, interpolation=spec.interpolation)
    except ImageReadError as exc:
        return str(exc)
    images = _open_arrays.get(data_path)
    if images is None:
        images = _open_arrays[data_path] = np.load(data_path, mmap_mode="r+")
    images[i] = array
    return None


def build_cache(
    root: str | Path,
    records: Sequence[ImageRecord],
    spec: CacheSpec,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache:
    """Return the cache for these images and settings, building what is missing."""
    start = time.perf_counter()
    root = Path(root)
    unique: dict[str, ImageRecord] = {}
    for record in sorted(records, key=lambda r: r.path):
        unique.setdefault(record.sha256, record)
    digests = sorted(unique)
    folder = Path(cache_dir or default_cache_dir()) / cache_key(digests, spec)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        return _load(folder, spec, built=False, start=start)

    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / ".lock"):  # a second process building the same cache waits, then reuses it
        if meta_path.is_file():
            return _load(folder, spec, built=False, start=start)
        return _build(root, unique, digests, spec, folder, workers=workers, progress=progress, start=start)


@contextlib.contextmanager
def _exclusive(path: Path):
    """An advisory lock held while the body runs (POSIX; elsewhere no locking)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(root: Path, unique: dict[str, ImageRecord], digests: list[str], spec: CacheSpec, folder: Path, *,
           workers: int | None, progress: bool, start: float) -> ImageCache:
    meta_path = folder / "meta.json"
    shape = (len(digests), spec.size, spec.size, 3)
    data_path, done_path = folder / "images.npy", folder / "done.npy"
    resuming = data_path.is_file() and done_path.is_file()
    images = np.lib.format.open_memmap(data_path, mode="r+" if resuming else "w+", dtype=np.uint8, shape=shape)
    done = np.load(done_path) if resuming else np.zeros(len(digests), dtype=bool)
    if not resuming:
        _save_atomic(done_path, done)
    del images  # workers open the file themselves
    failures: dict[str, str] = {}
    todo = [(i, str(root / unique[digests[i]].path)) for i in range(len(digests)) if not done[i]]
    write = partial(_preprocess_into, data_path=str(data_path), spec=spec)
    results = parallel_map(write, todo, workers=workers, desc="caching", progress=progress)
    for n, ((i, _), reason) in enumerate(zip(todo, results), start=1):
        if reason is None:
            done[i] = True
        else:
            failures[digests[i]] = reason
        if n % _CHUNK == 0:  # checkpoint: an interrupted build resumes from here
            _save_atomic(done_path, done)
    _open_arrays.pop(str(data_path), None)
    skipped = [Skipped(unique[d].path, failures[d]) for d in digests if d in failures]
    row_of = {d: i for i, d in enumerate(digests) if d not in failures}
    meta = {
        "format": CACHE_FORMAT,
        "cellscreen": __version__,
        "spec": dataclasses.asdict(spec),
        "root": str(root),
        "rows": row_of,
        "skipped": [dataclasses.asdict(s) for s in skipped],
    }
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)  # the cache is complete once meta.json exists
    done_path.unlink(missing_ok=True)
    return _load(folder, spec, built=True, start=start)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _load(folder: Path, spec: CacheSpec, *, built: bool, start: float) -> ImageCache:
    meta = json.loads((folder / "meta.json").read_text())
    images = np.load(folder / "images.npy", mmap_mode="r")
    return ImageCache(
        folder=folder,
        spec=spec,
        images=images,
        row_of=meta["rows"],
        skipped=[Skipped(**s) for s in meta["skipped"]],
        built=built,
        seconds=time.perf_counter() - start,
    )


def describe_cache(cache: ImageCache, *, images: int) -> str:
    """One line on a cache just built or reused for ``images`` files: where, what and how fast."""
    state = "built" if cache.built else "reused"
    rate = f", {images / cache.seconds:,.0f} images/s" if cache.built and cache.seconds > 0 else ""
    size = cache.spec.size
    return (f"{state} cache {cache.folder}: {len(cache.row_of):,} distinct images at {size}x{size}, "
            f"border crop {cache.spec.border_crop} px, in {cache.seconds:.1f} s{rate}")
