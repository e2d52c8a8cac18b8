"""bench/serve_memory.py against a real ``cellscreen serve`` of the bundled model, with a few small 16-bit images
from a few clients: every request answered, and the memory figures read and related as they must be."""

from __future__ import annotations

import os

from tests.benchscripts import BENCH, bench, lines


def test_serve_memory_reports_start_peak_and_idle_memory():
    done = bench("serve_memory.py", "--clients", 3, "--files", 6, "--side", 300, "--idle", 0.5,
                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    (row,) = lines(done)  # the server's own start-up line shares stdout
    assert (row["clients"], row["files_per_request"], row["answers"]) == (3, 6, {"200": 3})
    assert 0 < row["start_rss_mb"] <= row["peak_rss_mb"] <= row["peak_hwm_mb"] + 1
    assert row["idle_rss_mb"] <= row["peak_rss_mb"]
    assert row["idle_minus_start_mb"] == row["idle_rss_mb"] - row["start_rss_mb"]
    assert "| 3 x 6 of 300x300 gray16/rgb16/rgba16 |" in done.stdout  # the Markdown row


def test_the_bench_images_are_16_bit_and_as_large_as_asked():
    import importlib.util
    import io

    from PIL import Image

    spec = importlib.util.spec_from_file_location("serve_memory", BENCH / "serve_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind, mode in (("gray16", "I;16"), ("rgb16", "RGB"), ("rgba16", "RGBA")):
        data = module.constant_png(500, module.KINDS[kind])
        image = Image.open(io.BytesIO(data))
        assert image.size == (500, 500) and image.mode.startswith(mode) and data[24] == 16  # IHDR bit depth
        image.load()
