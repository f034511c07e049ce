"""Real-world input corpus (issue 11): one file per kind of fault, with its right answer.

    python tests/images/corpus.py            # rewrite tests/images/corpus/
    python -m bench.inputs                   # time every case (and heavier ones)

Each case is rebuilt from a public bug report's kind of input: broken EXIF,
huge metadata, split or damaged chunks, scan bombs, phone formats. Writes
`corpus/<name>` and `corpus/cases.json`: for each name, `code` (null: it must
be classified; else the error code), `contains` (words the message must
hold), `requires` (a format the answer depends on: where this installation
lacks it, the answer is UNSUPPORTED_FORMAT naming it) and, for classified
cases, `corpus/<name>.expected.npy`, the RGB pixels computed here from the
source pixels (Pillow decoding a clean copy of the same JPEG data, numpy for
rotation), not by inference's decoder.

`build_heavy(out)` writes the slow-to-decode cases used only for timing (a 49
MP deflate bomb, a scan bomb at the scan budget...): too big for the repo.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
W, H = 40, 24  # not square, so a missed rotation shows in the shape
ORIENTATION = 0x0112


def pixels(seed: int = 11) -> np.ndarray:
    """Smooth-ish RGB pixels (JPEG keeps them close), shape (H, W, 3) uint8."""
    y, x = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 6, y * 10, (x + y) * 4], axis=2) + rng.integers(0, 30, (H, W, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Builders


def tiff_ifd(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header + IFD0 (EXIF's layout, CIPA DC-008 4.6.2).

    entries: (tag, type, count, value bytes); values over 4 bytes go after the IFD.
    """
    out = b"II*\x00" + struct.pack("<I", 8)
    data_at = 8 + 2 + 12 * len(entries) + 4
    table, blob = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) > 4:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(blob))
            blob += value
        else:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
    return out + table + struct.pack("<I", 0) + blob


def bad_exif(orientation: int = 6) -> bytes:
    """Orientation plus XResolution stored as SRATIONAL -1/0: Pillow's
    `ImageOps.exif_transpose` raises struct.error re-writing it (issue 11)."""
    return tiff_ifd(
        [
            (ORIENTATION, 3, 1, struct.pack("<H", orientation)),
            (0x011A, 10, 1, struct.pack("<ii", -1, 0)),
        ]
    )


def jpeg(rgb: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


def with_segments(data: bytes, segments: list[tuple[int, bytes]]) -> bytes:
    """Insert (marker, payload) segments right after a JPEG's SOI."""
    extra = b"".join(bytes([0xFF, m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + extra + data[2:]


def png(rgb: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with(data: bytes, extra: list[bytes], *, split_idat: int = 0) -> bytes:
    """Rebuild a PNG with `extra` raw chunks after IHDR; IDAT optionally split."""
    out = [data[:8]]
    for kind, body in png_chunks(data):
        if kind == b"IDAT" and split_idat:
            out += [
                chunk(b"IDAT", body[i : i + split_idat]) for i in range(0, len(body), split_idat)
            ]
        else:
            out.append(chunk(kind, body))
        if kind == b"IHDR":
            out += extra
    return b"".join(out)


def big_xmp(n_bytes: int = 2_000_000) -> bytes:
    """An XMP packet of repeated edit history, like photo editors write."""
    item = b"<rdf:li stEvt:action='saved' stEvt:softwareAgent='Editor 2026'/>\n"
    return b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + item * (n_bytes // len(item)) + b"</x:xmpmeta>"


def progressive_scan_bomb(size: int, copies: int) -> bytes:
    """A black progressive JPEG whose last scan is repeated `copies` times."""
    data = jpeg(np.zeros((size, size, 3), np.uint8), progressive=True)
    eoi = data.rfind(b"\xff\xd9")
    last = data[data.rfind(b"\xff\xda", 0, eoi) : eoi]
    return data[:eoi] + last * copies + b"\xff\xd9"


def encoded(rgb: np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


# ---------------------------------------------------------------------------
# The cases: name -> (bytes, answer, expected RGB or None)

Case = tuple[bytes, dict[str, Any], np.ndarray | None]


def cases() -> dict[str, Case]:
    rgb = pixels()
    clean = jpeg(rgb)
    clean_rgb = pillow_rgb(clean)  # Pillow on the same JPEG data, no metadata
    rot6 = np.rot90(clean_rgb, k=-1)  # orientation 6: displayed rotated 90 degrees clockwise
    exif6 = b"Exif\x00\x00" + bad_exif(6)
    out: dict[str, Case] = {}

    def ok(name: str, data: bytes, expected: np.ndarray, **extra: Any) -> None:
        out[name] = (data, {"code": None, **extra}, expected)

    def bad(name: str, data: bytes, code: str, *contains: str, **extra: Any) -> None:
        out[name] = (data, {"code": code, "contains": list(contains), **extra}, None)

    # 1. Broken metadata: the pixels are fine, so the photo is classified.
    ok("jpeg_exif_bad_rational.jpg", with_segments(clean, [(0xE1, exif6)]), rot6)
    broken_ifd = b"Exif\x00\x00II*\x00" + struct.pack("<I", 10_000)  # IFD0 past the end
    ok("jpeg_exif_broken_ifd.jpg", with_segments(clean, [(0xE1, broken_ifd)]), clean_rgb)
    exif9 = b"Exif\x00\x00" + tiff_ifd([(ORIENTATION, 3, 1, struct.pack("<H", 9))])
    ok("jpeg_exif_orientation_9.jpg", with_segments(clean, [(0xE1, exif9)]), clean_rgb)
    mpf = b"MPF\x00MM\x00*\x00\x00\x00\x08\x00\x03\xb0\x00\x00\x07\x00\x00\x00\x04\xff\xff\xff\xff"
    ok("jpeg_mpo_bad_index.jpg", with_segments(clean, [(0xE2, mpf)]) + clean, clean_rgb)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + big_xmp(60_000)
    icc = b"ICC_PROFILE\x00\x01\x01" + bytes(60_000)
    segments = [(0xE1, xmp)] * 2 + [(0xE2, icc)] * 2 + [(0xFE, b"comment " * 8000)]
    ok("jpeg_big_metadata.jpg", with_segments(clean, segments), clean_rgb)
    ok("jpeg_trailing_garbage.jpg", clean + b"\x00garbage after the end" * 100, clean_rgb)

    # 2. Metadata Pillow refuses by default but browsers show past: PNG text/ICC
    #    chunks inflating over PngImagePlugin.MAX_TEXT_CHUNK (1 MB).
    base = png(rgb)
    itxt = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(big_xmp())
    ok("png_big_itxt_xmp.png", png_with(base, [chunk(b"iTXt", itxt)]), rgb)
    ok(
        "png_big_ztxt.png",
        png_with(base, [chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(big_xmp()))]),
        rgb,
    )
    iccp = b"Photo profile\x00\x00" + zlib.compress(bytes(3_000_000))
    ok("png_big_iccp.png", png_with(base, [chunk(b"iCCP", iccp)]), rgb)
    ok("png_bad_text_crc.png", png_with(base, [chunk(b"tEXt", b"Title\x00pants", crc=1)]), rgb)
    ok("png_after_iend.png", base + b"trailing bytes after IEND" * 50, rgb)
    ok("png_split_idat.png", png_with(base, [], split_idat=1), rgb)
    ok(
        "png_exif_bad_rational.png",
        png_with(base, [chunk(b"eXIf", bad_exif(6))]),
        np.rot90(rgb, k=-1),
    )
    ok(
        "webp_exif_bad_rational.webp",
        encoded(rgb, "WEBP", lossless=True, exif=exif6),
        np.rot90(rgb, k=-1),
    )

    # Really broken data stays a typed error.
    bad("png_truncated.png", base[: len(base) // 2], "CORRUPT_IMAGE", "cut short")
    idat = base.index(b"IDAT")
    bad(
        "png_idat_bad_crc.png",
        base[: idat + 4] + bytes([base[idat + 4] ^ 1]) + base[idat + 5 :],
        "CORRUPT_IMAGE",
        "checksum",
    )
    bad("jpeg_cut_in_headers.jpg", clean[:100], "CORRUPT_IMAGE", "cut short")
    bad("jpeg_cut_in_scan.jpg", clean[: len(clean) - 200], "CORRUPT_IMAGE")

    # 3. Bounded work: refused from the structure, before decoding.
    bad("jpeg_scan_bomb.jpg", progressive_scan_bomb(256, 5000), "CORRUPT_IMAGE", "scans")
    frames = [Image.new("RGB", (W, H), (i % 256, 0, 0)) for i in range(300)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    ok("gif_300_frames.gif", buf.getvalue(), np.asarray(frames[0]))
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    ok("webp_300_frames.webp", buf.getvalue(), np.asarray(frames[0]))
    bomb = png_with(_png_header(9_000, 9_000), [])
    bad("png_9000x9000.png", bomb, "IMAGE_TOO_LARGE", "50000000 (MAX_IMAGE_PIXELS)")
    bad(
        "png_100000x100000.png",
        _png_header(100_000, 100_000),
        "IMAGE_TOO_LARGE",
        "50000000 (MAX_IMAGE_PIXELS)",
    )

    # 4. The formats phones send.
    avif = encoded(rgb, "AVIF", quality=90)
    ok("photo.avif", avif, pillow_rgb(avif), requires="AVIF")
    heic = _heic(rgb)
    if heic is not None:
        ok("photo.heic", heic[0], heic[1], requires="HEIF")
    bad("scan.tiff", encoded(rgb, "TIFF"), "UNSUPPORTED_FORMAT", "TIFF")
    video = struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2" + bytes(64)
    bad("clip.mp4", video, "UNSUPPORTED_FORMAT", "video")
    bad(
        "page.html",
        b"<!DOCTYPE html><html><body>404</body></html>",
        "UNSUPPORTED_FORMAT",
        "web page",
    )
    return out


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def _heic(rgb: np.ndarray) -> tuple[bytes, np.ndarray] | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    data = encoded(rgb, "HEIF", quality=90)
    return data, pillow_rgb(data)


# ---------------------------------------------------------------------------
# Heavy cases for timing only (python -m bench.inputs)


def build_heavy() -> dict[str, bytes]:
    """Worst cases near every limit, built in memory (several MB; not in the repo)."""
    side = 7000  # 49 MP, under the 50 MP cap
    zeros = np.zeros((side, side, 3), np.uint8)
    out = {
        "png_49mp_deflate_bomb.png": png(zeros, compress_level=9),
        "gif_49mp_one_colour.gif": encoded(np.zeros((side, side), np.uint8), "GIF"),
        "jpeg_49mp_baseline.jpg": jpeg(zeros),
        "jpeg_49mp_16_scans.jpg": progressive_scan_bomb(side, 6),
        "jpeg_49mp_20000_scans.jpg": progressive_scan_bomb(side, 20_000),
        "png_49mp_1byte_idat.png": png_with(png(zeros, compress_level=9), [], split_idat=1),
        "webp_16383x3000.webp": encoded(
            np.zeros((3000, 16383, 3), np.uint8), "WEBP", lossless=True
        ),
        "bmp_rle8_7000x7000.bmp": _bmp_rle8(side, side),
    }
    cap = 10 * 1024 * 1024  # the default byte cap (FETCH_MAX_BYTES)
    small_jpeg, small_png, small_gif = jpeg(pixels()), png(pixels()), gif_one_frame()
    n_segments = (cap - len(small_jpeg)) // 4
    out["jpeg_10mb_of_empty_segments.jpg"] = with_segments(small_jpeg, [(0xE3, b"")] * n_segments)
    n_chunks = (cap - len(small_png)) // 12
    out["png_10mb_of_empty_chunks.png"] = png_with(small_png, [chunk(b"tEXt", b"")] * n_chunks)
    i = small_gif.index(b"\x2c", 13)
    flood = b"\x21\xfe" + b"\x01a" * ((cap - len(small_gif)) // 2) + b"\x00"
    out["gif_10mb_of_1_byte_blocks.gif"] = small_gif[:i] + flood + small_gif[i:]
    out["jpeg_10mb_of_fill_bytes.jpg"] = small_jpeg[:2] + b"\xff" * cap + small_jpeg[2:]
    frames = [Image.new("RGB", (8, 8), (i % 256, 0, 0)) for i in range(20_000)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out["gif_20000_frames.gif"] = buf.getvalue()
    return out


def gif_one_frame() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels()).convert("P").save(buf, format="GIF")
    return buf.getvalue()


def _bmp_rle8(width: int, height: int) -> bytes:
    """An 8-bit RLE BMP (Microsoft BMP spec, BI_RLE8): runs of 255 pixels per row."""
    row = b"\xff\x01" * (width // 255) + bytes([width % 255, 1]) + b"\x00\x00"
    pixels_data = row * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    header_size = 14 + 40 + len(palette)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels_data), 2835, 2835, 256, 0
    )
    file_header = b"BM" + struct.pack("<IHHI", header_size + len(pixels_data), 0, 0, header_size)
    return file_header + info + palette + pixels_data


def write(out: Path = CORPUS, builders: Callable[[], dict[str, Case]] = cases) -> None:
    out.mkdir(parents=True, exist_ok=True)
    answers = {}
    for name, (data, answer, expected) in builders().items():
        (out / name).write_bytes(data)
        if expected is not None:
            np.save(out / f"{name}.expected.npy", expected.astype(np.uint8))
        answers[name] = answer
    (out / "cases.json").write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(answers)} cases to {out}")


if __name__ == "__main__":
    write()
