"""Which image format are these bytes, and can this installation decode it?

`sniff_format(data)` names the format from the leading bytes (never from a
file name or a Content-Type, which strangers get wrong). Accepted formats:

| format | needs                                                               |
|--------|---------------------------------------------------------------------|
| JPEG, PNG, GIF, WEBP, BMP | Pillow (always)                                  |
| AVIF   | a Pillow built with libavif (`PIL.features.check("avif")`, wheels >= 11.2) |
| HEIF   | the `heic` extra (`pillow-heif`; its wheels bundle GPL code, README)  |

A format we recognise but do not accept (TIFF, PDF, a web page, a video...) or
one this installation lacks is refused with `UnsupportedFormatError` whose
message names the format and says what to send instead, never raw bytes.
"""

from __future__ import annotations

import functools
import importlib.util

from PIL import features

from inference._errors import UnsupportedFormatError

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
BASE_FORMATS = frozenset(name for name, _, _ in _SIGNATURES)

# ISO-BMFF `ftyp` brands (ISO/IEC 23008-12 for HEIF, AV1 Image File Format
# spec section 9 for AVIF). `mif1`/`msf1` are generic HEIF brands: the
# compatible brands then tell AVIF (`avif`, `avis`) from HEVC-coded HEIC.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"miaf"})
_VIDEO_BRANDS = frozenset(
    {b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"3g2a", b"avc1"}
)

# Formats people send that we name in the refusal (first bytes -> name).
_OTHER_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("TIFF", b"II*\x00", 0),
    ("TIFF", b"MM\x00*", 0),
    ("JPEG XL", b"\xff\x0a", 0),
    ("JPEG XL", b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0),
    ("JPEG 2000", b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0),
    ("PDF", b"%PDF", 0),
    ("Photoshop (PSD)", b"8BPS", 0),
    ("ICO", b"\x00\x00\x01\x00", 0),
    ("ZIP archive", b"PK\x03\x04", 0),
)

_SEND_INSTEAD = "send a JPEG, PNG or WebP photo instead"


def sniff_format(data: bytes) -> str:
    """Return the accepted format named by the leading bytes, or raise.

    Returns one of `accepted_formats()`. Raises UnsupportedFormatError, whose
    message names what the bytes are (e.g. "HEIC", "TIFF", "a web page") and
    what to do.
    """
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if name == "WEBP" and data[:4] != b"RIFF":
                continue
            return name
    if data[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    raise UnsupportedFormatError(_unknown_message(data))


def accepted_formats() -> frozenset[str]:
    """The formats this installation decodes (BASE_FORMATS, plus AVIF and HEIF when available)."""
    extra = {"AVIF"} if avif_available() else set()
    if heif_available():
        extra.add("HEIF")
    return BASE_FORMATS | extra


@functools.cache
def avif_available() -> bool:
    """Pillow built with libavif (its wheels are from 11.2 on)."""
    return bool(features.check("avif"))


@functools.cache
def heif_available() -> bool:
    """`pillow-heif` is installed (the `heic` extra); its opener is registered lazily."""
    return importlib.util.find_spec("pillow_heif") is not None


@functools.cache
def register_heif() -> None:
    """Register pillow-heif's Pillow plugin (format name "HEIF"), once per process."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def _sniff_isobmff(data: bytes) -> str:
    box_size = int.from_bytes(data[:4], "big")
    major = data[8:12]
    # Compatible brands: 4-byte entries after the minor version, up to the box end.
    end = min(max(box_size, 16), len(data), 16 + 4 * 64)
    brands = {major} | {data[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        if avif_available():
            return "AVIF"
        raise UnsupportedFormatError(
            "AVIF images need a Pillow built with libavif (pip install -U 'pillow>=11.2'); "
            f"or {_SEND_INSTEAD}."
        )
    if brands & (_HEIF_BRANDS | _GENERIC_HEIF_BRANDS):
        if heif_available():
            return "HEIF"
        raise UnsupportedFormatError(
            "HEIC photos (the iPhone camera's default) need the `heic` extra "
            "(pip install 'clothing-classifier[heic]'); or set the camera to "
            f"'Most Compatible' and {_SEND_INSTEAD}."
        )
    if brands & _VIDEO_BRANDS:
        raise UnsupportedFormatError(
            f"The data is a video (MP4/MOV), not a photo; {_SEND_INSTEAD}."
        )
    brand = major.decode("ascii", "replace").strip() or "unknown"
    raise UnsupportedFormatError(
        f"The data is an ISO media file (brand {brand!r}), not a supported image; {_SEND_INSTEAD}."
    )


def _unknown_message(data: bytes) -> str:
    for name, magic, offset in _OTHER_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return f"{name} files are not accepted; {_SEND_INSTEAD}."
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return (
            "The data is a web page (HTML), not an image: if this came from a URL, "
            "use the address of the image itself (right-click it, 'Copy image address')."
        )
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return f"SVG/XML drawings are not accepted; {_SEND_INSTEAD}."
    if head[:1] in (b"{", b"["):
        return f"The data is JSON text, not an image; {_SEND_INSTEAD}."
    accepted = ", ".join(sorted(accepted_formats()))
    return f"The data is not an image in a supported format ({accepted}); {_SEND_INSTEAD}."
