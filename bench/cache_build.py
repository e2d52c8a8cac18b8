"""How fast the preprocessed cache builds: prints one JSON line per run.

    python bench/cache_build.py --dataset malaria-nih --size 128 --repeat 3

Each run indexes the folder (read, hash, full decode) and then builds the
cache from scratch into a fresh temporary folder, so nothing is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from cellscreen.data.cache import CacheSpec, build_cache
from cellscreen.data.index import scan_dataset
from cellscreen.data.parallel import default_workers
from cellscreen.data.sources import get_profile, resolve_dataset_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--data", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    profile = get_profile(args.dataset)
    root = resolve_dataset_dir(profile, None, data=args.data)
    workers = default_workers() if args.workers is None else args.workers
    for run in range(args.repeat):
        start = time.perf_counter()
        index = scan_dataset(root, profile, workers=workers, progress=False, remember=False)
        index_seconds = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as cache_dir:
            cache = build_cache(
                root, index.records, CacheSpec(size=args.size, border_crop=profile.border_crop),
                cache_dir=cache_dir, workers=workers, progress=False,
            )
            n = len(cache.row_of)
            print(json.dumps({
                "bench": "cache_build",
                "run": run,
                "dataset": args.dataset,
                "images": n,
                "size": args.size,
                "workers": workers,
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "index_seconds": round(index_seconds, 2),
                "index_images_per_s": round(len(index.records) / index_seconds, 1),
                "cache_seconds": round(cache.seconds, 2),
                "cache_images_per_s": round(n / cache.seconds, 1),
            }), flush=True)


if __name__ == "__main__":
    main()
