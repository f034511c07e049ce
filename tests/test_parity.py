"""Preprocessing parity: training, conversion checks and serving see the same arrays.

Reference: Keras `load_img(path, target_size, interpolation="nearest")` +
`img_to_array` + `xception.preprocess_input`, which is what the seed's
ImageDataGenerator pipeline computed. Equality is bitwise.
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from inference import decode_image, load_image, preprocess_file, preprocess_image
from train.features import load_preprocessed


def keras_reference(path: Path, image_size: int) -> np.ndarray:
    img = keras.utils.load_img(path, target_size=(image_size, image_size), interpolation="nearest")
    x = keras.utils.img_to_array(img, dtype="float32")
    return keras.applications.xception.preprocess_input(x)  # type: ignore[no-any-return]


def _real_images(data_dir: Path, per_class: int = 2) -> list[Path]:
    paths: list[Path] = []
    for split in ("train", "test"):
        for class_dir in sorted((data_dir / split).iterdir()):
            paths.extend(sorted(class_dir.glob("*.jpg"))[:per_class])
    return paths


@pytest.mark.integration
@pytest.mark.parametrize("image_size", [150, 299])
def test_real_images_match_keras_bitwise(shared_data_dir: Path, image_size: int) -> None:
    paths = _real_images(shared_data_dir)
    assert len(paths) == 40
    for path in paths:
        ours = preprocess_file(path, image_size=image_size)
        ref = keras_reference(path, image_size)
        assert ours.dtype == ref.dtype == np.float32
        assert ours.shape == (image_size, image_size, 3)
        assert np.array_equal(ours, ref), path
        # and training's own loader is the same function
        assert np.array_equal(load_preprocessed(path, image_size=image_size), ours)


def _save(img: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    img.save(path, format=fmt, **kw)
    return path


def _gradient(mode: str, size: tuple[int, int] = (37, 29)) -> Image.Image:
    rng = np.random.default_rng(7)
    channels = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


# Modes Keras also converts with Pillow's convert("RGB"): equal to Keras bitwise.
@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("P", "PNG"), ("P", "GIF"), ("RGB", "BMP"), ("CMYK", "JPEG"), ("RGB", "WEBP")],
)
def test_modes_without_alpha_match_keras(tmp_path: Path, mode: str, fmt: str) -> None:
    img = _gradient("RGB").convert(mode) if mode == "P" else _gradient(mode)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    path = _save(img, tmp_path / f"x.{fmt.lower()}", fmt, **kwargs)
    assert np.array_equal(preprocess_file(path, image_size=71), keras_reference(path, 71))


def _expected_on_white(rgba: np.ndarray) -> np.ndarray:
    """Documented conversion, computed independently: alpha-blend over white."""
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    return rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    rgba = np.asarray(_gradient(mode).convert("RGBA"))
    path = _save(_gradient(mode), tmp_path / "a.png", "PNG")
    rgb = np.asarray(load_image(path), dtype=np.float64)
    # Pillow's integer alpha_composite rounds; one level is the documented tolerance.
    assert np.abs(rgb - _expected_on_white(rgba)).max() <= 1.0
    fully_clear = rgba[..., 3] == 0
    assert (rgb[fully_clear] == 255).all()


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    path = _save(img, tmp_path / "p.png", "PNG", transparency=0)
    rgb = np.asarray(load_image(path))
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[4, 4]) == (255, 255, 255)  # transparent black -> white, not black


@pytest.mark.parametrize(
    ("mode", "fmt"), [("RGBA", "PNG"), ("L", "PNG"), ("P", "GIF"), ("CMYK", "JPEG")]
)
def test_training_and_serving_arrays_are_identical(tmp_path: Path, mode: str, fmt: str) -> None:
    img = _gradient("RGB").convert(mode) if mode == "P" else _gradient(mode)
    path = _save(img, tmp_path / f"x.{fmt.lower()}", fmt)
    served = preprocess_image(decode_image(path.read_bytes()), image_size=71)
    assert np.array_equal(load_preprocessed(path, image_size=71), served)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="PNG")
    rgb = np.asarray(decode_image(buf.getvalue()))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all()
