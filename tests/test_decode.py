"""Decoding real-world photos: golden files from tests/images/generate.py."""

from __future__ import annotations

from pathlib import Path

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
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
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
