"""Writers for every awkward file a lab's folder may hold.

``write_all(folder)`` returns ``{name: (path, expected)}`` where ``expected``
is ``None`` for files that must load (after conversion) or a phrase the skip
reason must contain.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG claiming huge dimensions: a decompression bomb's calling card."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write_all(folder: Path, seed: int = 0) -> dict[str, tuple[Path, str | None]]:
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(_rgb(64, 64, seed))
    rgba = np.dstack([_rgb(16, 16, seed + 1), np.full((16, 16), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    files = {
        "zero_bytes.png": (b"", "empty file"),
        "truncated.png": (_encoded(rgb, "PNG")[:300], "truncated"),
        "truncated.jpg": (_encoded(rgb, "JPEG", quality=95)[:700], "truncated"),
        "text_not_image.png": (b"this is a lab note, not a picture\n" * 4, "not an image"),
        "bomb.png": (png_header_only(100_000, 100_000), "too large"),
        "gray.png": (_encoded(Image.fromarray(_rgb(seed=seed + 2)[:, :, 0], "L"), "PNG"), None),
        "rgba.png": (_encoded(Image.fromarray(rgba, "RGBA"), "PNG"), None),
        "palette.png": (_encoded(Image.fromarray(_rgb(seed=seed + 3)).convert("P"), "PNG"), None),
        "gray16.png": (_encoded(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG"), None),
        "cmyk.jpg": (_encoded(Image.fromarray(_rgb(seed=seed + 4)).convert("CMYK"), "JPEG"), None),
        "exif_rotated.jpg": (_encoded(Image.fromarray(_rgb(10, 20, seed + 5)), "JPEG", exif=exif), None),
        "cell.bmp": (_encoded(Image.fromarray(_rgb(seed=seed + 6)), "BMP"), None),
        "cell.tiff": (_encoded(Image.fromarray(_rgb(seed=seed + 7)), "TIFF"), None),
        ".DS_Store": (b"\x00\x00\x00\x01Bud1", "hidden or system file"),
        "Thumbs.db": (b"\xd0\xcf\x11\xe0", "hidden or system file"),
    }
    written = {}
    for name, (data, expected) in files.items():
        path = folder / name
        path.write_bytes(data)
        written[name] = (path, expected)
    return written
