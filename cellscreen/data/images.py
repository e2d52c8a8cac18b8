"""Reading one cell image, whatever the lab's scanner wrote.

``load_rgb`` turns any image Pillow can read (PNG, JPEG, BMP, TIFF; grayscale,
palette, RGBA, 16-bit, CMYK; EXIF-rotated) into an 8-bit RGB array, and turns
everything it cannot read into an ``ImageReadError`` whose message says why in
words a user understands.  Callers list those files as skipped; they never
crash on them.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cellscreen.errors import UserError

# libspng: 8-bit RGB PNGs (the usual cell crop) to Pillow's pixels, 1.5x faster
# (BENCHMARKS.md, "8-bit prediction, libspng decoding, the fused optimiser step")
try:
    import pyspng
except ImportError:  # pragma: no cover - an optional speed-up; Pillow reads everything
    pyspng = None

__all__ = [
    "IMAGE_SUFFIXES",
    "IGNORED_NAMES",
    "MAX_PIXELS",
    "MAX_FILE_BYTES",
    "ImageReadError",
    "ImageInfo",
    "read_file",
    "decode_image",
    "load_rgb",
    "probe_image",
    "border_crop",
    "INTERPOLATIONS",
    "DEFAULT_INTERPOLATION",
    "UNRECORDED_INTERPOLATION",
    "check_interpolation",
    "resize_square",
    "prepare_bytes",
    "load_prepared",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
# Files operating systems leave in folders; listed as skipped, never read.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
# No single cell comes close: the largest C-NMC cell is 450x450.  Anything
# above this is refused before decoding, so a decompression bomb costs nothing.
MAX_PIXELS = 40_000_000
# A single cell image is kilobytes; even an uncompressed 40-megapixel TIFF is 160 MB.
MAX_FILE_BYTES = 512 * 2**20
# Padding to a square first would allocate side x side pixels: a 1 x 100,000 strip would ask for 30 GB.
# Images longer than this are shrunk (keeping their aspect ratio) before they are padded.
_MAX_PAD_SIDE = 4096
# How a cell is shrunk to a model's input size, by the name a checkpoint records (``data_config.interpolation``),
# as Pillow's ``reducing_gap``.  "bicubic" filters the whole image at once.  "reduce-bicubic" first averages
# blocks of whole pixels (2x2 for a 133 px malaria cell going to 64 px), then filters what is left; it takes
# about 70% of the time (0.163 against 0.230 ms per cell at 64 px; BENCHMARKS.md, "Prediction: a cheaper
# resize, ...") and stays within a grey level or so of "bicubic" on average.
# Without any shrinking by a factor of 2 or more, the two give the same pixels.
INTERPOLATIONS = {"bicubic": None, "reduce-bicubic": 1.0}
DEFAULT_INTERPOLATION = "reduce-bicubic"  # what new models train on
UNRECORDED_INTERPOLATION = "bicubic"  # what a model, run or description that does not say was resized by


class ImageReadError(Exception):
    """A file that cannot be used as an image, with the reason in plain words."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What decoding a file revealed, for audits."""

    width: int
    height: int
    mode: str  # Pillow mode before conversion, e.g. "RGB", "P", "I;16"
    format: str  # "PNG", "JPEG", ...


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def read_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, or an ``ImageReadError`` saying why they cannot be read.

    Only regular files are opened: a named pipe would block forever and a
    device (a link to ``/dev/zero``) never ends.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(f"not a regular file ({_kind_of(info.st_mode)})")
        if info.st_size > max_bytes:
            raise ImageReadError(f"file too large ({info.st_size / 2**20:,.0f} MB; an image may have at most "
                                 f"{max_bytes / 2**20:,.0f} MB)")
        return path.read_bytes()
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and path.is_symlink():
            raise ImageReadError(f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)") \
                from None
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"image too large (over {max_pixels:,} pixels)") from None
    except Exception as exc:  # Pillow raises many types on malformed headers
        raise ImageReadError(f"corrupt image header ({type(exc).__name__}: {exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError(
            f"image too large: {width}x{height} px is over the {max_pixels:,}-pixel limit "
            "(a decompression bomb or not a single-cell crop)"
        )
    if width == 0 or height == 0:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    return image


# Rows of a 16- or 32-bit image turned into 8 bits at a time: about a megapixel, 8 MB as float64
_GRAY_BAND_PIXELS = 2**20
_SIXTEEN_TO_EIGHT_BITS = np.clip(np.rint(np.arange(65536) / 257.0), 0, 255).astype(np.uint8)


def _gray_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """8-bit gray from the pixels of a 16-bit (``I;16``), 32-bit integer (``I``) or float (``F``) image.

    16-bit values are scaled 0..65535 -> 0..255, and so are ``I`` values when any is over 255; a band of rows
    at a time, so a 16-megapixel image never has a float64 copy (128 MB) made of it whole."""
    if mode.startswith("I;16"):  # one look-up per pixel: the same values, several times faster
        return _SIXTEEN_TO_EIGHT_BITS[values]
    scaled = mode == "I" and values.max(initial=0) > 255
    gray = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, _GRAY_BAND_PIXELS // max(1, values.shape[1]))
    for start in range(0, values.shape[0], rows):
        band = values[start:start + rows].astype(np.float64)
        if scaled:
            band /= 257.0
        gray[start:start + rows] = np.clip(np.rint(band, out=band), 0, 255, out=band)
    return gray


def _to_rgb(image: Image.Image) -> np.ndarray:
    """8-bit RGB from any Pillow mode; transparency is composited onto black,
    the background of segmented cell crops."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _gray_to_8bit(np.asarray(image), mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _png_chunks(data: bytes):
    """``(kind, checksum right)`` of each whole chunk of a PNG, up to ``IEND``; a chunk cut short ends
    the walk (the decoder judges the truncation)."""
    view, pos = memoryview(data), 8
    while pos + 12 <= len(data):
        length = int.from_bytes(view[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return
        kind = bytes(view[pos + 4:pos + 8])
        yield kind, zlib.crc32(view[pos + 4:end - 4]) == int.from_bytes(view[end - 4:end], "big")
        if kind == b"IEND":
            return
        pos = end


def _png_checksum_error(data: bytes) -> str | None:
    """The first PNG chunk whose CRC does not match its bytes, or None.

    Pillow checks the header chunks but not the image data: a flipped bit in
    ``IDAT`` decodes into silently wrong pixels.
    """
    return next((kind.decode("latin-1") for kind, right in _png_chunks(data) if not right), None)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plain_png(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG that libspng can decode straight into what Pillow would give, or None.

    That is an 8-bit RGB image, not interlaced, within ``max_pixels``, whole (up to ``IEND``), every
    chunk's checksum right and no EXIF chunk (which could ask for a rotation).  Anything else goes to
    Pillow, which also says what is wrong with a damaged file.
    """
    if pyspng is None or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    if depth != 8 or colour != 2 or interlace != 0 or not 0 < width * height <= max_pixels:
        return None
    kind = None
    for kind, right in _png_chunks(data):
        if not right or kind == b"eXIf":
            return None
    return (width, height) if kind == b"IEND" else None


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, ImageInfo]:
    """Decode file bytes into an upright ``(H, W, 3)`` uint8 RGB array and its description."""
    size = _plain_png(data, max_pixels)
    if size is not None:
        try:
            array = pyspng.load(data)
        except Exception:  # Pillow will say what is wrong
            array = None
        if array is not None and array.shape == (size[1], size[0], 3) and array.dtype == np.uint8:
            return array, ImageInfo(width=size[0], height=size[1], mode="RGB", format="PNG")
    # Pillow warns about damaged metadata and large images; a damaged file
    # either decodes or becomes a skip reason, so its warnings are noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _decode_quietly(data, max_pixels)


def _decode_quietly(data: bytes, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    image = _open(data, max_pixels)
    info = ImageInfo(width=image.width, height=image.height, mode=image.mode, format=image.format or "")
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
        array = _to_rgb(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"image too large (over {max_pixels:,} pixels)") from None
    except Exception as exc:  # a damaged file can make any decoder step fail; report, never crash
        message = str(exc)
        if "truncated" in message or isinstance(exc, EOFError):
            raise ImageReadError(f"truncated or damaged image data ({message or 'unexpected end'})") from None
        raise ImageReadError(f"cannot decode image ({type(exc).__name__}: {message})") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageReadError(f"unexpected image shape {array.shape}")
    if info.format == "PNG":
        damaged = _png_checksum_error(data)
        if damaged:
            raise ImageReadError(f"damaged image data (PNG checksum mismatch in the {damaged} chunk)")
    # After EXIF rotation the displayed size is what matters.
    info = dataclasses.replace(info, width=array.shape[1], height=array.shape[0])
    return np.ascontiguousarray(array), info


def load_rgb(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` into an ``(H, W, 3)`` uint8 RGB array, upright per EXIF."""
    return decode_image(read_file(path), max_pixels=max_pixels)[0]


def probe_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Fully decode ``path`` (so truncation is caught) and describe it."""
    return decode_image(read_file(path), max_pixels=max_pixels)[1]


def border_crop(array: np.ndarray, pixels: int) -> np.ndarray:
    """Remove ``pixels`` from every side (C-NMC: 450 -> 400), if the image allows it."""
    if pixels <= 0:
        return array
    height, width = array.shape[:2]
    if height <= 2 * pixels or width <= 2 * pixels:
        return array
    return array[pixels : height - pixels, pixels : width - pixels]


def check_interpolation(name: str) -> str:
    """``name`` if it is one of ``INTERPOLATIONS``, else a ``UserError`` (a ``ValueError``) that lists them."""
    if not isinstance(name, str) or name not in INTERPOLATIONS:  # a damaged model.json may hold anything
        raise UserError(f"unknown interpolation {name!r}; this version of cellscreen knows "
                         f"{', '.join(INTERPOLATIONS)} (a checkpoint from a newer version needs that version)")
    return name


def resize_square(array: np.ndarray, size: int, interpolation: str = DEFAULT_INTERPOLATION) -> np.ndarray:
    """Pad to a square with black (the background of cell crops), centred, then
    resize to ``size`` x ``size`` with antialiasing, by one of ``INTERPOLATIONS``.
    Padding keeps a cell's shape: an oval cell stays oval instead of being
    stretched round."""
    gap = INTERPOLATIONS[check_interpolation(interpolation)]
    height, width = array.shape[:2]
    if max(height, width) > _MAX_PAD_SIDE:
        scale = size / max(height, width)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC, reducing_gap=gap)
        array = np.asarray(image, dtype=np.uint8)
    if height != width:
        side = max(height, width)
        padded = np.zeros((side, side, 3), dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        padded[top : top + height, left : left + width] = array
        array = padded
    if array.shape[0] == size:
        return array
    image = Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=gap)
    return np.asarray(image, dtype=np.uint8)


def prepare_bytes(data: bytes, *, size: int, crop: int = 0, interpolation: str = DEFAULT_INTERPOLATION,
                  max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode, border-crop and pad-resize an encoded image to ``size`` x ``size`` RGB uint8:
    the deterministic preprocessing the cache stores and prediction and the service apply."""
    return resize_square(border_crop(decode_image(data, max_pixels=max_pixels)[0], crop), size, interpolation)


def load_prepared(path: str | Path, *, size: int, crop: int = 0,
                  interpolation: str = DEFAULT_INTERPOLATION) -> np.ndarray:
    """``prepare_bytes`` of one file."""
    return prepare_bytes(read_file(path), size=size, crop=crop, interpolation=interpolation)
