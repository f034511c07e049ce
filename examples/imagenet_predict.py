"""Classify an image with the full ImageNet Xception, and see why it is not enough.

The lesson's second step: before training anything, ask a pretrained model.
Xception with its ImageNet top (`include_top=True`) knows 1000 classes, and
`decode_predictions` names the top 5. There is no "t-shirt" among them: a
t-shirt photo comes back as "jersey" or "sweatshirt", and our other nine
clothing classes fare no better. Hence the toolchain keeps Xception's
convolutional base and trains a new top on our 10 classes (transfer learning,
`python -m train`).

Usage:

    python -m examples.imagenet_predict tshirt.jpg                    # downloads ~88 MB once
    python -m examples.imagenet_predict tshirt.jpg --weights PATH     # full Xception weights file
    python -m examples.imagenet_predict tshirt.jpg --weights none     # random weights, offline

It prints five lines: rank, probability, class name and WordNet id, e.g.
" 1  0.xxxx  jersey (n03595614)" for a t-shirt photo.

The ImageNet weights and the class names (imagenet_class_index.json) are
downloaded by Keras on first use and cached in ~/.keras/models. Without
internet the example says so on stderr and exits 1. With `--weights none` the
scores mean nothing and the class names are not fetched: it prints class
indices, so that the code path runs anywhere (the tests use it).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

IMAGE_SIZE = 299  # Xception's input size with its ImageNet top
TOP = 5


class DownloadError(Exception):
    """A file Keras downloads on first use could not be fetched."""


def is_download_failure(exc: BaseException) -> bool:
    # keras.utils.get_file re-raises urllib's URLError and HTTPError as a bare
    # Exception("URL fetch failure on ..."); a timeout or a read-only cache folder
    # comes through as an OSError (URLError is one too).
    return isinstance(exc, OSError) or str(exc).startswith("URL fetch failure")


def parse_weights(weights: str) -> str | None:
    """'imagenet' -> 'imagenet'; 'none' -> None; else an existing file's path."""
    if weights in ("imagenet", "none"):
        return None if weights == "none" else weights
    if not Path(weights).expanduser().is_file():
        raise ValueError(
            "`weights` must be 'imagenet', 'none' or the path of a weights file of "
            f"Xception(include_top=True). Received: weights={weights!r} (no such file)"
        )
    return str(Path(weights).expanduser())


def load_model(weights: str | None) -> Any:
    """Xception with its ImageNet top; `weights` is 'imagenet', a file path or None."""
    import keras

    try:
        return keras.applications.Xception(include_top=True, weights=weights)
    except Exception as exc:
        if weights == "imagenet" and is_download_failure(exc):
            raise DownloadError(
                f"Cannot download the ImageNet weights of Xception ({exc})."
            ) from exc
        if weights not in (None, "imagenet"):
            raise ValueError(
                "`weights` file does not fit Xception(include_top=True). "
                f"Received: weights={weights!r} ({type(exc).__name__}: {_squeeze(exc)})"
            ) from exc
        raise


def _squeeze(exc: BaseException, *, limit: int = 300) -> str:
    # Keras' load errors run to many lines; one line of their start says enough.
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preprocess(image_path: Path) -> NDArray[np.float32]:
    """The product's decoder and Xception preprocessing (NEAREST resize, x / 127.5 - 1)."""
    from inference import preprocess_file

    return preprocess_file(image_path, image_size=IMAGE_SIZE)


def top_predictions(
    probabilities: NDArray[np.float32], *, top: int = TOP, decode: bool = True
) -> list[tuple[str, float]]:
    """The `top` classes as (name, probability), best first.

    decode=True names them with Keras' `decode_predictions` ("jersey (n03595614)"),
    which downloads the ImageNet class index on first use; decode=False gives
    "class 610", offline.
    """
    if not decode:
        best = np.argsort(probabilities)[::-1][:top]
        return [(f"class {i}", float(probabilities[i])) for i in best]
    import keras

    try:
        decoded = keras.applications.xception.decode_predictions(probabilities[np.newaxis], top=top)
    except Exception as exc:
        if is_download_failure(exc):
            raise DownloadError(f"Cannot download the ImageNet class names ({exc}).") from exc
        raise
    return [(f"{name} ({wnid})", float(score)) for wnid, name, score in decoded[0]]


def offline_message(exc: DownloadError) -> str:
    return textwrap.fill(
        f"{exc} This example needs internet access once: Keras downloads the ImageNet "
        "weights (~88 MB) and class names and caches them in ~/.keras/models. Offline, "
        "pass --weights PATH (a saved Xception(include_top=True) weights file) or "
        "--weights none (random weights, class indices instead of names). The clothing "
        "classifier does not need any of this: transfer learning (`python -m train`, "
        "see README) uses only Xception's convolutional base, whose weights it can read "
        "from a local file (--base-weights PATH or XCEPTION_WEIGHTS, e.g. "
        "../shared/models/xception_imagenet_notop.weights.h5).",
        width=88,
        break_long_words=False,
        break_on_hyphens=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.imagenet_predict",
        description="Top-5 ImageNet classes of an image, by the full Xception.",
    )
    parser.add_argument("image", type=Path, help="a JPEG, PNG, WebP, GIF or BMP file")
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="'imagenet' (download, default), 'none' (random, offline) or a weights file",
    )
    args = parser.parse_args(argv)

    from inference import InferenceError

    try:
        weights = parse_weights(args.weights)
        x = preprocess(args.image)
        model = load_model(weights)
        probabilities = model.predict(x[np.newaxis], verbose=0)[0]
        # Random weights give meaningless classes; skipping the names keeps that path offline.
        predictions = top_predictions(probabilities, top=TOP, decode=weights is not None)
    except DownloadError as exc:
        print(offline_message(exc), file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, InferenceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if weights is None:
        print("weights=none: random weights, so these classes mean nothing.", file=sys.stderr)
    for rank, (name, probability) in enumerate(predictions, start=1):
        print(f"{rank:2d}  {probability:.4f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
