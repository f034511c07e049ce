"""Bytes -> RGB `PIL.Image`, safely, for photos from strangers.

The one decoder used by training, conversion checks and serving, so that the
pixels a model is trained on are the pixels it is served.

Steps (README "Real-world inputs"):

1. Sniff the format from the bytes (`inference._sniff`): JPEG, PNG, GIF, WebP,
   BMP, and AVIF / HEIC where this installation decodes them; anything else is
   `UNSUPPORTED_FORMAT` with a message naming it.
2. JPEG, PNG and GIF: walk the structure (`inference._prescan`), leave
   metadata out, read the size from the header, count JPEG scans and bound
   the segments, chunks and blocks, so that pixel bombs, scan bombs and
   chunk floods are refused before any decoding.
3. Pillow opens the rest (header only) and the pixel cap is checked again.
4. Decode the first frame, apply the EXIF orientation when it can be read
   (broken metadata is ignored, never an error), convert to RGB.

Whatever Pillow or a plugin raises on the way becomes `CorruptImageError`
(`ImageTooLargeError` for its size guards): only `InferenceError`s leave
`decode_image`, with messages free of object reprs and paths.

Conversions to RGB (the documented contract, tested in tests/test_decode.py):

| mode               | conversion                                               |
|--------------------|----------------------------------------------------------|
| RGB                | unchanged                                                |
| 1, L, CMYK, YCbCr… | Pillow's `convert("RGB")` (what Keras `load_img` does)   |
| RGBA, LA, PA, P+transparency | alpha composited on white                      |
| I;16*, I           | 16-bit range scaled to 8 bits (round(v / 257)), grey     |
| F                  | clipped to [0, 255], rounded, grey                       |
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from inference._errors import (
    CorruptImageError,
    ImageTooLargeError,
    InferenceError,
    PayloadTooLargeError,
)
from inference._prescan import Prescan, prescan_gif, prescan_jpeg, prescan_png
from inference._sniff import accepted_formats, register_heif, sniff_format

# 50 MP: a 12 MP phone photo fits four times over; a 100000x100000 "bomb" does not.
DEFAULT_MAX_PIXELS = 50_000_000
# Formats this installation decodes (AVIF and HEIF depend on what is installed).
ALLOWED_FORMATS = accepted_formats()
# File names that folder readers (convert's check images, training's not-sure
# photos) pick up: every format the decoder may accept; the decoder answers for
# AVIF and HEIC where they are not installed.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif", ".heic", ".heif"}
)

# A progressive JPEG from libjpeg, mozjpeg or a camera has 6-12 scans (libjpeg's
# jpeg_simple_progression writes 10 for colour). Every scan is a pass over all
# coefficients, so a file of thousands of tiny scans keeps the decoder busy for
# minutes (libjpeg-turbo's TJPARAM_SCANLIMIT and djpeg -maxscans exist for this;
# their advice is 500). We bound both the count and the work: scans x pixels at
# most 16 full scans of a 50 MP image (measured with `python -m bench.inputs`,
# README "Real-world inputs": under 2 s on a 2-core machine).
MAX_JPEG_SCANS = 100
JPEG_SCAN_PIXEL_BUDGET = 16 * DEFAULT_MAX_PIXELS

_NAMES = {"HEIF": "HEIC/HEIF"}
_EXIF_ORIENTATION = 0x0112  # EXIF 2.3, section 4.6.4
# ImageOps.exif_transpose's table, applied without rewriting the EXIF block
# (that rewrite raises struct.error on a malformed tag).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to an RGB image (the first frame, upright).

    Args:
        data: the file's bytes; the format is read from them.
        max_pixels: refuse images with more pixels (width x height), checked
            from the header before decoding (env MAX_IMAGE_PIXELS in serving).

    Returns: a loaded `PIL.Image` in mode "RGB".

    Raises: UnsupportedFormatError (not an accepted format, or one this
        installation lacks: the message says which and what to do),
        ImageTooLargeError (over `max_pixels`), CorruptImageError (anything
        else the decoder refuses: truncated, damaged, too many JPEG scans).
        ValueError for a bad `max_pixels`. Nothing else.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"`max_pixels` must be an int >= 1. Received: max_pixels={max_pixels!r}")
    if not data:
        raise CorruptImageError("Image data is empty.")
    fmt = sniff_format(data)
    name = _NAMES.get(fmt, fmt)
    try:
        with warnings.catch_warnings():
            # Pillow warns about bad metadata and large images; we check our own
            # limits and answer with typed errors instead.
            warnings.simplefilter("ignore")
            return _decode(bytes(data), fmt=fmt, max_pixels=max_pixels)
    except InferenceError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_large_message(None, max_pixels, exc)) from exc
    except MemoryError as exc:
        raise ImageTooLargeError(f"{name} image needs more memory than is available.") from exc
    except Exception as exc:  # whatever Pillow or a plugin raises (issue 11): a bad file
        raise CorruptImageError(f"{name} data could not be decoded ({_clean(exc)}).") from exc


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The most bytes `load_image` reads: 8 bytes per pixel x `max_pixels` + 1 MiB.

    No accepted format within the pixel cap needs more: the widest pixel is
    16-bit RGBA (PNG, 8 B/px), stored uncompressed; the MiB covers headers,
    metadata and a palette. A bigger file is refused unread.
    """
    return 8 * max_pixels + 2**20


def read_image_file(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of a regular file of at most `max_file_bytes(max_pixels)` bytes.

    Raises:
        FileNotFoundError: missing, unreadable, or not a regular file (a FIFO,
            a device such as /dev/zero, a folder): refused before reading.
        PayloadTooLargeError: over the byte cap (at most cap + 1 bytes are read).
    """
    name = str(path)
    not_regular = FileNotFoundError(f"Cannot read image {name!r}: not a regular file")
    try:
        # stat before open: opening a FIFO blocks, opening a device may act.
        regular = stat.S_ISREG(os.stat(name).st_mode)
        # O_NONBLOCK and fstat: a FIFO swapped in after the stat neither blocks nor passes.
        fd = (
            os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            if regular
            else -1
        )
    except OSError as exc:  # missing (FileNotFoundError too), no permission, ...
        raise FileNotFoundError(f"Cannot read image {name!r}: {exc.strerror}") from None
    if not regular:
        raise not_regular
    cap = max_file_bytes(max_pixels)
    with os.fdopen(fd, "rb") as f:
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            data = f.read(cap + 1) if regular else b""
        except OSError as exc:
            raise FileNotFoundError(f"Cannot read image {name!r}: {exc.strerror}") from None
    if not regular:
        raise not_regular
    if len(data) > cap:
        raise PayloadTooLargeError(
            f"Image file is over {cap} bytes, more than any image of at most {max_pixels} "
            "pixels (MAX_IMAGE_PIXELS) needs."
        )
    return data


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and decode an image file (format from its bytes, not its name).

    Raises: FileNotFoundError (missing, unreadable, not a regular file),
        PayloadTooLargeError (over `max_file_bytes(max_pixels)`), and what
        `decode_image` raises.
    """
    return decode_image(read_image_file(path, max_pixels=max_pixels), max_pixels=max_pixels)


def _decode(data: bytes, *, fmt: str, max_pixels: int) -> Image.Image:
    pre = _prescan(data, fmt=fmt)
    if pre.size is not None:
        _check_pixels(pre.size, max_pixels)
    if fmt == "JPEG" and pre.size is not None:
        _check_scans(pre.scans, pre.size)
    if fmt == "HEIF":
        register_heif()
    img = Image.open(io.BytesIO(pre.data), formats=[fmt])
    _check_pixels(img.size, max_pixels)
    img.seek(0)  # animated GIF/WebP/PNG/AVIF: the first frame only
    img.load()
    orientation = _orientation(img)
    rgb = to_rgb(img)
    return rgb.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else rgb


def _prescan(data: bytes, *, fmt: str) -> Prescan:
    if fmt == "JPEG":
        return prescan_jpeg(data)
    if fmt == "PNG":
        return prescan_png(data)
    if fmt == "GIF":
        return prescan_gif(data)
    return Prescan(data, None)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImageError(f"Image has no pixels: size={width}x{height}.")
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large_message(size, max_pixels))


def _too_large_message(
    size: tuple[int, int] | None, max_pixels: int, exc: Exception | None = None
) -> str:
    limit = f"over the limit of {max_pixels} (MAX_IMAGE_PIXELS); send a smaller photo."
    if size is not None:
        return f"Image has {size[0]}x{size[1]} = {size[0] * size[1]} pixels, {limit}"
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"Image has {found.group(1) if found else 'too many'} pixels, {limit}"


def _check_scans(scans: int, size: tuple[int, int]) -> None:
    pixels = max(size[0] * size[1], 1)
    limit = min(MAX_JPEG_SCANS, max(JPEG_SCAN_PIXEL_BUDGET // pixels, 1))
    if scans > limit:
        raise CorruptImageError(
            f"JPEG has {scans} scans; at most {limit} are decoded for a "
            f"{size[0]}x{size[1]} image (a photo has about 10). Re-save it as a standard JPEG."
        )


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8), or 1 when there is none or it cannot be read."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # broken metadata never costs a classification (issue 11)
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# Pillow's messages can hold an object repr ("<_io.BytesIO object at 0x7f...>").
_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _clean(exc: Exception) -> str:
    text = _REPR.sub("the data", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


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
