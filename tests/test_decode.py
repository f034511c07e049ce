"""Decoding real-world photos: golden files from tests/images/generate.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference import (
    CorruptImageError,
    ImageTooLargeError,
    InferenceError,
    UnsupportedFormatError,
    decode_image,
    load_image,
    to_rgb,
)

IMAGES = Path(__file__).parent / "images"


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("rgba.png", 1),  # Pillow's integer alpha compositing rounds
        ("la.png", 1),
        ("palette_transparent.png", 0),
        ("palette_transparent.gif", 0),
        ("grey.png", 0),
        ("grey16.png", 0),
        ("exif_rotated.png", 0),
        ("animated.gif", 0),
        ("animated.webp", 0),
        ("animated.png", 0),
        ("rgb.bmp", 0),
        ("rgb.webp", 0),
        ("png_named.jpg", 0),  # format from the bytes, not the name
    ],
)
def test_golden_images_decode_to_documented_rgb(name: str, tolerance: int) -> None:
    expected = np.load(IMAGES / f"{name}.expected.npy")
    img = load_image(IMAGES / name)
    assert img.mode == "RGB"
    actual = np.asarray(img).astype(np.int16)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= tolerance


def test_cmyk_is_converted_like_pillow() -> None:
    with Image.open(IMAGES / "cmyk.jpg") as raw:
        assert raw.mode == "CMYK"
        expected = np.asarray(raw.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(IMAGES / "cmyk.jpg")), expected)


@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("bomb_100000.png", ImageTooLargeError, "IMAGE_TOO_LARGE"),
        ("bomb_9000.png", ImageTooLargeError, "IMAGE_TOO_LARGE"),
        ("truncated.jpg", CorruptImageError, "CORRUPT_IMAGE"),
        ("not_an_image.jpg", UnsupportedFormatError, "UNSUPPORTED_FORMAT"),
        ("tiff_named.jpg", UnsupportedFormatError, "UNSUPPORTED_FORMAT"),
        ("empty.jpg", CorruptImageError, "CORRUPT_IMAGE"),
    ],
)
def test_bad_files_raise_typed_errors(name: str, error: type[InferenceError], code: str) -> None:
    with pytest.raises(error) as info:
        load_image(IMAGES / name)
    assert info.value.code == code


def test_pixel_cap_is_configurable() -> None:
    data = (IMAGES / "rgb.bmp").read_bytes()  # 12 x 8 = 96 pixels
    assert decode_image(data, max_pixels=96).size == (12, 8)
    with pytest.raises(ImageTooLargeError, match=r"over the limit of 95"):
        decode_image(data, max_pixels=95)


def test_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append("load"))
    with pytest.raises(ImageTooLargeError):
        load_image(IMAGES / "bomb_9000.png")
    assert loaded == []


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    # the product's message, not the OS's bare "[Errno 2] No such file or directory: ..."
    with pytest.raises(FileNotFoundError, match=r"^Cannot read image '.*nope\.jpg': No such file"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    ("array", "mode", "expected_grey"),
    [
        (np.array([[0.0, 127.6, 300.0, -5.0]], dtype=np.float32), "F", [0, 128, 255, 0]),
        (np.array([[0, 257, 65535, 70000]], dtype=np.int32), "I", [0, 1, 255, 255]),
    ],
)
def test_float_and_int_modes(array: np.ndarray, mode: str, expected_grey: list[int]) -> None:
    rgb = np.asarray(to_rgb(Image.fromarray(array, mode)))
    assert rgb[0, :, 0].tolist() == expected_grey
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_jpeg_draft_mode_is_not_used(tmp_path: Path) -> None:
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 1000, 3), dtype=np.uint8))
    big.save(tmp_path / "big.jpg", quality=90)
    with Image.open(tmp_path / "big.jpg") as raw:
        full = np.asarray(raw.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(tmp_path / "big.jpg")), full)


# ---------------------------------------------------------------------------
# Real-world inputs (issue 11); the corpus itself runs in tests/test_inputs.py.


@pytest.mark.parametrize(
    "error",
    [
        __import__("struct").error("argument out of range"),
        ZeroDivisionError("division by zero"),
        KeyError(274),
        RuntimeError("plugin failed"),
        OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c9d80>"),
    ],
)
def test_whatever_pillow_raises_is_corrupt_image(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def load(self: Image.Image) -> None:
        raise error

    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    with pytest.raises(CorruptImageError) as info:
        load_image(IMAGES / "rgb.bmp")
    assert info.value.code == "CORRUPT_IMAGE"
    assert "0x7f" not in str(info.value) and "object at" not in str(info.value)


def test_unreadable_exif_keeps_the_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    def getexif(self: Image.Image) -> None:
        raise __import__("struct").error("bad tag")

    monkeypatch.setattr(Image.Image, "getexif", getexif)
    expected = np.load(IMAGES / "exif_rotated.png.expected.npy")
    img = np.asarray(load_image(IMAGES / "exif_rotated.png"))
    assert img.shape == np.rot90(expected, k=1).shape  # stored orientation: not rotated


@pytest.mark.parametrize(("copies", "ok"), [(90, True), (91, False)])  # 10 scans + copies
def test_jpeg_scan_count_limit(copies: int, ok: bool) -> None:
    from tests.images.corpus import progressive_scan_bomb

    data = progressive_scan_bomb(64, copies)
    if ok:
        assert decode_image(data).size == (64, 64)
    else:
        with pytest.raises(CorruptImageError, match=r"101 scans; at most 100"):
            decode_image(data)


@pytest.mark.parametrize(
    ("size", "limit"),
    [((64, 64), 100), ((4000, 3000), 66), ((7000, 7000), 16), ((7071, 7071), 16)],
)
def test_jpeg_scan_budget_scales_with_pixels(size: tuple[int, int], limit: int) -> None:
    from inference._decode import _check_scans

    _check_scans(limit, size)
    with pytest.raises(CorruptImageError, match=f"at most {limit} are decoded"):
        _check_scans(limit + 1, size)


@pytest.mark.parametrize(
    ("data", "available", "words"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heif_available", ["HEIC", "heic"]),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heic", "heif_available", ["HEIC"]),
        (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1", "avif_available", ["AVIF"]),
    ],
)
def test_missing_phone_formats_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, data: bytes, available: str, words: list[str]
) -> None:
    monkeypatch.setattr(f"inference._sniff.{available}", lambda: False)
    with pytest.raises(UnsupportedFormatError) as info:
        decode_image(data + bytes(64))
    message = str(info.value)
    assert all(word in message for word in words)
    assert "\\x" not in message and "ftyp" not in message  # no magic bytes


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"II*\x00" + bytes(64), "TIFF"),
        (b"%PDF-1.7\n", "PDF"),
        (b"\xff\x0a" + bytes(16), "JPEG XL"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"\x00\x00\x00\x18ftypqt  \x00\x00\x00\x00qt  " + bytes(16), "video"),
        (b"\x13\x37 random bytes", "not an image"),
    ],
)
def test_unsupported_formats_are_named(data: bytes, word: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=word):
        decode_image(data)


def _jpeg_with_segments(n: int) -> bytes:
    from tests.images.corpus import jpeg, pixels, with_segments

    return with_segments(jpeg(pixels()), [(0xE3, b"")] * n)


def _png_with_chunks(n: int) -> bytes:
    from tests.images.corpus import chunk, pixels, png, png_with

    return png_with(png(pixels()), [chunk(b"tEXt", b"")] * n)


def _gif_with_blocks(n: int) -> bytes:
    from tests.images.corpus import gif_one_frame

    gif = gif_one_frame()
    at = gif.index(b"\x2c", 13)
    return gif[:at] + b"\x21\xfe" + b"\x01a" * n + b"\x00" + gif[at:]


@pytest.mark.parametrize(
    ("make", "ok_n", "bad_n", "words"),
    [
        (_jpeg_with_segments, 500, 2000, "header segments"),
        (_png_with_chunks, 1000, 60_000, "chunks"),
        (_gif_with_blocks, 1000, 20_000, "blocks"),
    ],
)
def test_structure_floods_are_refused_before_decoding(
    make: Any, ok_n: int, bad_n: int, words: str
) -> None:
    assert decode_image(make(ok_n)).size == (40, 24)
    with pytest.raises(CorruptImageError, match=words):
        decode_image(make(bad_n))


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((20_000, 20_000), "BMP"), ((16_000, 16_000), "WEBP"), ((8_000, 7_000), "BMP")],
)
def test_too_large_quotes_the_configured_limit(size: tuple[int, int], fmt: str) -> None:
    """Whichever check fires (ours, or Pillow's bomb guard past ~179 MP), the
    message quotes MAX_IMAGE_PIXELS, not Pillow's limit."""
    import struct

    width, height = size
    if fmt == "BMP":  # a header only: BITMAPINFOHEADER claiming width x height, 24 bit
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
        data = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info
    else:  # a lossless WebP header (VP8L) claiming width x height
        bits = (width - 1) | ((height - 1) << 14)
        vp8l = b"\x2f" + struct.pack("<I", bits) + bytes(16)
        chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
        data = b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    assert "over the limit of 50000000 (MAX_IMAGE_PIXELS)" in str(info.value)
    assert "178956970" not in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "HEIF"])
def test_exif_orientation_in_every_format(fmt: str) -> None:
    """Orientation 6 (display rotated 90 degrees clockwise): the same upright
    photo from each format (AVIF's irot/imir boxes and HEIF's too)."""
    from inference._sniff import accepted_formats, register_heif

    if fmt not in accepted_formats():  # then its corpus file must name it in a 415
        name = {"HEIF": "photo.heic", "AVIF": "photo.avif"}[fmt]
        with pytest.raises(UnsupportedFormatError, match=fmt[:3]):
            load_image(IMAGES / "corpus" / name)
        return
    if fmt == "HEIF":
        register_heif()
    rgb = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, exif=exif.tobytes())
    assert decode_image(buf.getvalue()).size == (24, 40)
