"""The one preprocessing implementation: Xception's, via keras-image-helper.

`keras_image_helper`'s Xception preprocessor resizes with PIL NEAREST and maps
[0, 255] to [-1, 1] (x / 127.5 - 1, float32), which equals Keras
`load_img(..., interpolation="nearest")` + `xception.preprocess_input` bit for
bit (tests/test_parity.py). Training, conversion checks and serving all call
`preprocess_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from keras_image_helper import create_preprocessor
from PIL import Image

from inference._decode import DEFAULT_MAX_PIXELS, load_image

PREPROCESSING = "xception"
RESIZE = "nearest"
# Xception's smallest input: keras.applications.Xception refuses < 71.
MIN_IMAGE_SIZE = 71


def check_image_size(image_size: int) -> int:
    """Return `image_size` (pixels, square side) if an Xception model can take it.

    Raises:
        ValueError: not an int, or below `MIN_IMAGE_SIZE` (71, Keras' minimum).
    """
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"`image_size` must be an int >= {MIN_IMAGE_SIZE}. Received: image_size={image_size!r}"
        )
    return image_size


def preprocess_image(img: Image.Image, *, image_size: int) -> np.ndarray:
    """RGB image -> float32 array of shape (image_size, image_size, 3) in [-1, 1].

    Any size >= 1 works here (the X/O toy in examples/ uses 6); Xception models
    need >= 71, which `check_image_size` enforces where models are built.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"`image_size` must be an int >= 1. Received: image_size={image_size!r}")
    if img.mode != "RGB":
        raise ValueError(
            f"`img` must be an RGB image (see decode_image). Received: mode={img.mode}"
        )
    preprocessor = create_preprocessor(PREPROCESSING, target_size=(image_size, image_size))
    batch = np.asarray(preprocessor.convert_to_tensor(img), dtype=np.float32)
    single: np.ndarray = batch[0]
    return single


def preprocess_file(
    path: str | Path, *, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a file with `load_image` and preprocess it."""
    return preprocess_image(load_image(path, max_pixels=max_pixels), image_size=image_size)
