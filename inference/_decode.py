"""Bytes -> RGB `PIL.Image`, safely, for photos from strangers.

The one decoder used by training, conversion checks and serving, so that the
pixels a model is trained on are the pixels it is served.

Conversions to RGB (the documented contract, tested in tests/test_decode.py):

| mode               | conversion                                               |
|--------------------|----------------------------------------------------------|
| RGB                | unchanged                                                |
| 1, L, CMYK, YCbCr… | Pillow's `convert("RGB")` (what Keras `load_img` does)   |
| RGBA, LA, PA, P+transparency | alpha composited on white                      |
| I;16*, I           | 16-bit range scaled to 8 bits (round(v / 257)), grey     |
| F                  | clipped to [0, 255], rounded, grey                       |

EXIF orientation is applied first; animated images give their first frame.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from inference._errors import CorruptImageError, ImageTooLargeError, UnsupportedFormatError

# 50 MP: a 12 MP phone photo fits four times over; a 100000x100000 "bomb" does not.
DEFAULT_MAX_PIXELS = 50_000_000

# Magic numbers from each format's specification (JPEG SOI, PNG signature,
# GIF87a/89a, RIFF....WEBP, BMP "BM").
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("GIF", b"GIF87a", 0),
    ("GIF", b"GIF89a", 0),
    ("WEBP", b"WEBP", 8),
    ("BMP", b"BM", 0),
)
ALLOWED_FORMATS = frozenset(name for name, _, _ in _SIGNATURES)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def sniff_format(data: bytes) -> str:
    """Return the image format named by the leading bytes, or raise."""
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if name == "WEBP" and data[:4] != b"RIFF":
                continue
            return name
    raise UnsupportedFormatError(
        f"Image format is not one of {sorted(ALLOWED_FORMATS)} "
        f"(detected from the first bytes: {data[:8]!r})."
    )


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to an RGB image; raise a typed error on bad input."""
    if max_pixels < 1:
        raise ValueError(f"`max_pixels` must be >= 1. Received: max_pixels={max_pixels}")
    if not data:
        raise CorruptImageError("Image data is empty.")
    fmt = sniff_format(data)
    img = _open_checked(data, fmt=fmt, max_pixels=max_pixels)
    try:
        img.seek(0)  # animated GIF/WebP/PNG: the first frame only
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImageError(f"{fmt} data could not be decoded: {exc}") from None


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file (format from its bytes, not its name)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"Cannot read image {str(path)!r}: {exc.strerror}") from None
    return decode_image(data, max_pixels=max_pixels)


def _open_checked(data: bytes, *, fmt: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse oversized images before decoding."""
    try:
        with warnings.catch_warnings():
            # We enforce our own cap below; Pillow's bomb guard only warns up to
            # 2 * Image.MAX_IMAGE_PIXELS (~179 MP) and raises past it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"Image is too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise CorruptImageError(f"{fmt} header could not be read: {exc}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise CorruptImageError(f"Image has no pixels: size={width}x{height}.")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"Image has {width}x{height} = {width * height} pixels, over the limit of {max_pixels}."
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB as documented in the module docstring."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        return _on_white(img.convert("RGBA"))
    if mode in _ALPHA_MODES:
        return _on_white(img.convert("RGBA"))
    if mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(img, dtype=np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        grey = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return img.convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    """Composite an RGBA image on an opaque white background."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
