"""``bench cache``: images/s of indexing a dataset folder and building its cache from scratch."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from cellscreen.benchmarks._common import record, rounded
from cellscreen.errors import UserError

__all__ = ["cache_build"]


def _copy_spread(root: Path, limit: int, into: Path) -> int:
    """Copy ``limit`` files spread evenly over ``root``'s sorted files (so over its class folders)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    chosen = files[:: max(1, len(files) // limit)][:limit]
    for path in chosen:
        target = into / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return len(chosen)


def cache_build(dataset: str = "malaria-nih", *, data: str | None = None, size: int = 128, limit: int | None = None,
                workers: int | None = None, interpolation: str | None = None) -> dict:
    """Index the dataset folder (read, hash, full decode) and build its cache at ``size`` into a fresh
    temporary folder, so nothing is reused (the figures of BENCHMARKS.md, "Preprocessing cache build").  With
    ``limit``, a spread of that many files is first copied into a temporary folder (not timed) and only
    those are indexed and cached."""
    from cellscreen.data.cache import CacheSpec, build_cache  # keeps start-up fast
    from cellscreen.data.images import DEFAULT_INTERPOLATION
    from cellscreen.data.index import scan_dataset
    from cellscreen.data.parallel import default_workers
    from cellscreen.data.sources import get_profile, resolve_dataset_dir

    interpolation = interpolation or DEFAULT_INTERPOLATION
    profile = get_profile(dataset)
    root = resolve_dataset_dir(profile, data)
    workers = default_workers() if workers is None else workers
    with tempfile.TemporaryDirectory(prefix="cellscreen-bench-") as tmp:
        source = root
        if limit:
            source = Path(tmp) / "data"
            _copy_spread(root, limit, source)
        start = time.perf_counter()
        index = scan_dataset(source, profile, workers=workers, progress=False, remember=False)
        index_seconds = time.perf_counter() - start
        if not index.records:
            raise UserError(f"no readable images in {root}")
        spec = CacheSpec(size=size, border_crop=profile.border_crop, interpolation=interpolation)
        cache = build_cache(source, index.records, spec, cache_dir=Path(tmp) / "cache", workers=workers,
                            progress=False)
    files, images = len(index.records), len(cache.row_of)
    total = index_seconds + cache.seconds
    return record("cache", dataset=dataset, folder=str(root), limit=limit, files=files, images=images, size=size,
                  interpolation=interpolation, workers=workers,
                  index_seconds=rounded(index_seconds), index_images_per_s=rounded(files / index_seconds, 1),
                  cache_seconds=rounded(cache.seconds), cache_images_per_s=rounded(images / cache.seconds, 1),
                  seconds=rounded(total), images_per_s=rounded(files / total, 1))
