"""What the service lets a request take: its size, its files, the memory its images need, its time.

A request's body is counted as it arrives (``413`` past ``Limits.max_upload_bytes``) and each chunk must
arrive within ``Limits.read_timeout`` seconds (``408``).  The bodies held at once, across requests, stay
within ``Limits.upload_budget_bytes``: a request waits for room up to ``Limits.queue_timeout`` seconds,
then gets ``503`` with ``Retry-After``.  Images are decoded under a ``MemoryBudget``
shared by every request: an image's cost is read from its header (``decoding_cost``) and it waits until
that much of the budget is free, so sixteen clients each sending 256 sixteen-megapixel images decode a few
at a time instead of all at once.  When the budget falls idle after a burst, the memory the decoders freed
is handed back to the system (``return_freed_memory``): every ``cellscreen`` command asks glibc to keep
freed memory for reuse (``cellscreen.cpu``), which an idle server should not hold on to.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import dataclasses
import io
import warnings

from PIL import Image

__all__ = ["Limits", "MemoryBudget", "decoding_cost", "image_cost", "return_freed_memory"]

MB = 2**20
# Bytes per pixel decoding one image can hold at its peak: Pillow's own pixels (4 bytes for colour), the
# bytes NumPy reads them from, the 8-bit RGB array and Pillow's copy of it for the resize.  Transparent and
# palette images pass through RGBA and a composite on black first.
_BYTES_PER_PIXEL, _BYTES_PER_PIXEL_ALPHA = 16, 24
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "P", "PA"})


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may carry, and what all requests together may decode; anything over a request's
    limits is refused with a 4xx answer."""

    max_files: int = 256
    max_upload_bytes: int = 32 * 1024 * 1024  # the whole request body
    max_pixels: int = 16_000_000  # one image, checked from its header before decoding
    decode_budget_bytes: int = 512 * MB  # images being decoded at once, across requests (``decoding_cost``)
    upload_budget_bytes: int = 256 * MB  # request bodies held at once, across requests
    read_timeout: float = 30.0  # seconds the body may pause between two chunks before ``408``
    queue_timeout: float = 60.0  # seconds a request may wait for room in the upload budget before ``503``

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decoding_cost(width: int, height: int, mode: str) -> int:
    """Bytes decoding a ``width`` x ``height`` image of Pillow ``mode`` may hold at its peak (an upper bound)."""
    return width * height * (_BYTES_PER_PIXEL_ALPHA if mode in _ALPHA_MODES else _BYTES_PER_PIXEL)


def image_cost(data: bytes, *, max_pixels: int) -> int:
    """``decoding_cost`` of an encoded image, read from its header.  A file Pillow cannot open, or one over
    ``max_pixels``, costs its own size: the decoder refuses it from its header and says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged or huge header is judged by the decoder, not here
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > max_pixels:
                    return len(data)
                return max(len(data), decoding_cost(image.width, image.height, image.mode))
    except Exception:  # any header Pillow refuses: the decoder names the problem
        return len(data)


class MemoryBudget:
    """A number of bytes shared by the coroutines of one event loop: ``acquire`` waits, first come first
    served, until that many are free; ``release`` gives them back.  ``peak`` is the most ever held at once."""

    def __init__(self, total: int):
        self.total, self.in_use, self.peak = total, 0, 0
        self._waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    async def acquire(self, amount: int) -> None:
        if amount > self.total:
            raise ValueError(f"{amount:,} bytes asked of a budget of {self.total:,}")
        if not self._waiting and self.in_use + amount <= self.total:
            self._take(amount)
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append((amount, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(amount)  # granted just as it was cancelled
            else:
                self._waiting.remove((amount, granted))
                self._grant()
            raise

    def release(self, amount: int) -> None:
        self.in_use -= amount
        self._grant()

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.peak = max(self.peak, self.in_use)

    def _grant(self) -> None:
        while self._waiting and self.in_use + self._waiting[0][0] <= self.total:
            amount, granted = self._waiting.popleft()
            if not granted.done():
                self._take(amount)
                granted.set_result(None)


def return_freed_memory() -> bool:
    """Hand the memory ``malloc`` holds freed back to the system (glibc's ``malloc_trim``); True if it did.

    glibc keeps freed blocks in the heap of the thread that freed them; after a burst of large images the
    server would otherwise stay at its peak size while idle."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return False
