"""Walk a JPEG's, PNG's or GIF's structure before Pillow decodes it; keep what pixels need.

The model never uses metadata, so metadata must never cost a classification or
unbounded time. Pillow refuses some files every browser shows because of
their metadata (a PNG text or ICC chunk that inflates past
`PngImagePlugin.MAX_TEXT_CHUNK`, 1 MB; an MPO index or EXIF tag that raises
while parsed) and spends Python-level work per chunk or segment. This pass, in
linear time, hands Pillow a copy holding only the pixel data and the one
metadata item we use (EXIF, for the orientation):

JPEG (ITU-T T.81 Annex B): segments up to the first SOS are walked by their
    lengths. Kept: APP0 (JFIF), the first APP1 that is EXIF, APP14 (Adobe: it
    says how CMYK/YCCK is stored), tables and frame headers. Left out: every
    other APPn (XMP, ICC, MPO index, maker notes) and COM. Everything after the
    first image's EOI (an MPO's second image, trailing garbage) is left out.
    Scans (SOS markers) are counted: each one is a full pass over the
    coefficients (libjpeg-turbo's "progressive JPEG scan" advisory,
    CVE-2018-11813-style inputs), so `_decode` bounds them.
PNG (ISO/IEC 15948): chunks are walked by their lengths. Kept: IHDR, PLTE,
    tRNS (transparency changes the pixels we produce) and the first eXIf.
    Consecutive IDAT chunks are checked against their CRC and merged into one
    (a file of a million 1-byte IDATs costs Pillow a Python loop each). Left
    out: text (tEXt, zTXt, iTXt: XMP packets), iCCP, APNG frames after the
    first (acTL, fcTL, fdAT: the first frame is the IDAT image), everything
    else, and anything after IEND. Ancillary chunks are not CRC-checked, as
    libpng discards a bad one with a warning.

GIF (GIF89a spec): the blocks before the first image are walked, only to
    bound them; Pillow gets the data unchanged.

Each walk is a Python loop, so each is capped (MAX_JPEG_SEGMENTS,
MAX_PNG_CHUNKS, MAX_GIF_BLOCKS, far above what encoders write): a 10 MB file
of tiny segments, chunks or sub-blocks is refused in milliseconds instead of
costing seconds. Truncation inside the pixel data stays an error (a file cut
in the middle).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from inference._errors import CorruptImageError


@dataclass(frozen=True)
class Prescan:
    """What Pillow gets, and what the walk learned from the headers."""

    data: bytes
    size: tuple[int, int] | None  # (width, height) from the frame header / IHDR
    scans: int = 0  # JPEG only: SOS markers in the first image


# ---------------------------------------------------------------------------
# JPEG

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG, DAC are not frames
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7 (T.81 Table B.1)
_SOS, _EOI, _COM, _APP0, _APP1, _APP14 = 0xDA, 0xD9, 0xFE, 0xE0, 0xE1, 0xEE
_FILL = re.compile(rb"\xff+")
# Segments (and stray markers) before the first scan. A camera JPEG has under
# 20; an ICC profile split over the most APP2 chunks ICC.1 allows is 255. Each
# costs a Python step here and in Pillow, so a file of a million 4-byte
# segments would cost seconds: refused past this.
MAX_JPEG_SEGMENTS = 1000


def prescan_jpeg(data: bytes) -> Prescan:
    """-> the JPEG without the segments pixels do not need, its size and scan count.

    Raises CorruptImageError when a segment length runs past the end or no
    scan starts (a file cut in the middle of its headers).
    """
    out = [b"\xff\xd8"]
    size: tuple[int, int] | None = None
    have_exif = False
    pos = 2
    n = len(data)
    for _ in range(MAX_JPEG_SEGMENTS):
        # libjpeg skips junk before a marker with a warning; so do we.
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise CorruptImageError("JPEG data ends before its image data (file cut short).")
        pos = _FILL.match(data, pos).end()  # type: ignore[union-attr]  # fill bytes, T.81 B.1.1.2
        if pos >= n:
            raise CorruptImageError("JPEG data ends before its image data (file cut short).")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE or marker == 0x00:
            continue
        if marker == _EOI:
            raise CorruptImageError("JPEG data has no image data (end marker before any scan).")
        if pos + 2 > n:
            raise CorruptImageError("JPEG data ends inside a header (file cut short).")
        length = int.from_bytes(data[pos : pos + 2], "big")
        end = pos + length
        if length < 2 or end > n:
            raise CorruptImageError(
                f"JPEG segment 0xFF{marker:02X} has a bad length ({length}) or is cut short."
            )
        payload = data[pos + 2 : end]
        if marker == _SOS:
            return _jpeg_scans(data, pos - 2, out, size)
        if marker in _SOF_MARKERS and size is None and len(payload) >= 5:
            height, width = struct.unpack(">HH", payload[1:5])
            size = (width, height)
        keep = _keep_jpeg_segment(marker, payload, have_exif)
        if keep:
            have_exif = have_exif or marker == _APP1
            out.append(data[pos - 2 : end])
        pos = end
    raise CorruptImageError(
        f"JPEG has over {MAX_JPEG_SEGMENTS} header segments before its image data."
    )


def _keep_jpeg_segment(marker: int, payload: bytes, have_exif: bool) -> bool:
    if marker == _COM:
        return False
    if 0xE0 <= marker <= 0xEF:
        if marker == _APP1:
            return not have_exif and payload.startswith(b"Exif\x00")
        return marker in (_APP0, _APP14)
    return True


def _jpeg_scans(data: bytes, sos: int, out: list[bytes], size: tuple[int, int] | None) -> Prescan:
    # Inside entropy-coded data a 0xFF byte is always followed by 0x00 or RSTn
    # (T.81 B.1.1.5), so the first FFD9 is the first image's end and each FFDA
    # before it a real scan header.
    eoi = data.find(b"\xff\xd9", sos)
    end = len(data) if eoi < 0 else eoi + 2
    scans = data.count(b"\xff\xda", sos, end)
    out.append(data[sos:end])
    return Prescan(b"".join(out), size, scans)


# ---------------------------------------------------------------------------
# PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = frozenset({b"IHDR", b"PLTE", b"tRNS"})
_MAX_CHUNK = 2**31 - 1  # PNG spec 5.3: lengths are at most 2^31 - 1
# Encoders write IDAT in 8-64 kB chunks (libpng: 8 kB), so a 10 MB photo has
# about 1,300; each chunk is a Python step (~2.5 us here), so a file of a
# million tiny chunks would cost seconds: refused past this.
MAX_PNG_CHUNKS = 50_000


def prescan_png(data: bytes) -> Prescan:
    """-> the PNG reduced to IHDR, PLTE, tRNS, one eXIf, one merged IDAT and IEND.

    Raises CorruptImageError for a missing IHDR, a bad IDAT checksum, no image
    data, or data cut short inside the image data.
    """
    pos = len(PNG_SIGNATURE)
    n = len(data)
    kept: list[bytes] = []
    idat: list[bytes] = []
    idat_at: int | None = None
    size: tuple[int, int] | None = None
    have_exif = False
    chunks = 0
    while pos + 8 <= n:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise CorruptImageError(f"PNG has over {MAX_PNG_CHUNKS} chunks.")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body_end = pos + 8 + length
        if length > _MAX_CHUNK:
            raise CorruptImageError(f"PNG chunk has an impossible length ({length}).")
        if size is None and kind != b"IHDR":
            raise CorruptImageError("PNG data does not start with its header chunk (IHDR).")
        if kind == b"IEND":
            break
        if body_end + 4 > n:
            if kind == b"IDAT" or size is None:
                raise CorruptImageError("PNG data is cut short inside the image data.")
            break  # a cut-off ancillary chunk after the image data: the pixels are whole
        body = data[pos + 8 : body_end]
        if kind == b"IDAT":
            _check_crc(data, pos, length)
            idat_at = len(kept) if idat_at is None else idat_at
            idat.append(body)
        elif kind in _PNG_KEEP or (kind == b"eXIf" and not have_exif):
            if kind == b"IHDR":
                if size is not None or length != 13:
                    raise CorruptImageError("PNG header chunk (IHDR) is malformed.")
                size = struct.unpack(">II", body[:8])
            have_exif = have_exif or kind == b"eXIf"
            kept.append(data[pos : body_end + 4])
        pos = body_end + 4
    if size is None:
        raise CorruptImageError("PNG data is cut short before its header chunk (IHDR).")
    if idat_at is None:
        raise CorruptImageError("PNG data has no image data (IDAT).")
    kept.insert(idat_at, _chunk(b"IDAT", b"".join(idat)))
    return Prescan(PNG_SIGNATURE + b"".join(kept) + _chunk(b"IEND", b""), size)


def _check_crc(data: bytes, pos: int, length: int) -> None:
    expected = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
    if zlib.crc32(data[pos + 4 : pos + 8 + length]) != expected:
        raise CorruptImageError("PNG image data (IDAT) fails its checksum: the file is damaged.")


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


# ---------------------------------------------------------------------------
# GIF

# Blocks before the first image (extensions and their sub-blocks of at most
# 255 bytes): a comment of 64 kB is 257. Pillow walks them one Python step
# each; a file of millions of 1-byte sub-blocks would cost seconds.
MAX_GIF_BLOCKS = 10_000


def prescan_gif(data: bytes) -> Prescan:
    """-> the GIF unchanged and its logical screen size, once the blocks before
    the first image are walked (GIF89a spec, sections 17-24).

    Raises CorruptImageError for data cut short before the first image, no
    image, or more than MAX_GIF_BLOCKS blocks before it.
    """
    n = len(data)
    if n < 13:
        raise CorruptImageError("GIF data is cut short inside its header.")
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    in_extension = False
    for _ in range(MAX_GIF_BLOCKS):
        if pos >= n:
            raise CorruptImageError("GIF data ends before its first image (file cut short).")
        if in_extension:  # a sub-block: its size byte, then that many bytes; 0 ends it
            size = data[pos]
            pos += 1 + size
            in_extension = size != 0
            continue
        kind = data[pos]
        if kind == 0x2C:  # image descriptor
            return Prescan(data, (width, height))
        if kind == 0x3B:  # trailer
            raise CorruptImageError("GIF data has no image.")
        # An extension (introducer 0x21 + label) opens sub-blocks; any other
        # byte is skipped, as Pillow does.
        in_extension = kind == 0x21
        pos += 2 if in_extension else 1
    raise CorruptImageError(f"GIF has over {MAX_GIF_BLOCKS} blocks before its first image.")
