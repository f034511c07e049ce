"""The X/O toy CNN: a convolutional network small enough to check by hand.

6x6 black-and-white images of the letters X and O (1 = black ink, 0 = white)
go through

    3x3 filter + bias, stride 1     6x6 -> 4x4 feature map
    ReLU                            4x4
    2x2 max-pooling                 4x4 -> 2x2 (non-overlapping windows)
    flatten                         2x2 -> 4
    dense, 1 node, ReLU             4 -> 1 (hidden)
    dense, 2 nodes                  1 -> 2 (outputs: logits for O, X)

The weights are set by hand, not trained, and are small integers: every
intermediate is an integer you can check on paper, and float32 arithmetic on
them is exact, so numpy, Keras and TFLite agree bit for bit.

- The filter is a small X: +1 where an X has ink, -1 where it has none. A
  window on the crossing of an X scores 5 (five ink cells, no stray ink), one
  on an arm of an X 3, and any window on an O at most 1.
- The bias -3 is a threshold: after ReLU only windows that match better than
  an arm are left, so the feature map says "the crossing of an X is here".
- Max-pooling keeps the strongest match of each 2x2 region, and the hidden
  node adds up the four with equal weights: it says how much X there is, not
  where. So an X shifted one pixel to the right is still an X: the filter
  slides over every position, so its 5 moves one column to the right, and
  pooling plus the equal weights forget the move.
- Outputs: O = 1 - hidden, X = hidden - 1; X wins when hidden > 1.

Usage:

    python -m examples.xo_cnn                    # every intermediate; numpy vs Keras
    python -m examples.xo_cnn --toolchain DIR    # also convert, then predict with inference

`--toolchain DIR` runs the product's own chain on this model: it writes
DIR/train/ (model.keras, metrics.json with labels O, X and image_size 6) and
DIR/images/<label>/*.png, runs

    python -m convert DIR/train --out DIR/bundles --variants float32 --images DIR/images --force

(convert, then check the bundle against the Keras model on those PNGs), then
`inference.Classifier` predicts each PNG. A bundle takes an RGB image with
Xception preprocessing (x / 127.5 - 1: black -1, white +1), so the converted
model starts with a fixed 1x1 convolution that turns the red channel back into
ink: ink = 0.5 - 0.5 * x.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

if TYPE_CHECKING:
    from inference import Prediction

REPO = Path(__file__).resolve().parents[1]
LABELS = ("O", "X")  # the order of the two output nodes
IMAGE_SIZE = 6
STEPS = ("feature map", "after ReLU", "pooled", "hidden", "outputs")

# -----------------------------------------------------------------------------
# The images


def letter(drawing: str) -> NDArray[np.float32]:
    """A 6x6 image from a drawing: '#' is black ink (1), '.' is white (0)."""
    rows = [line.split() for line in drawing.strip().splitlines()]
    image = np.array([[1.0 if cell == "#" else 0.0 for cell in row] for row in rows], np.float32)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"`drawing` must be {IMAGE_SIZE} rows of {IMAGE_SIZE} cells. "
            f"Received: shape={image.shape}"
        )
    return image


def shift(image: NDArray[np.float32], *, right: int = 0, down: int = 0) -> NDArray[np.float32]:
    """Move the ink; refuse to push any of it off the image (np.roll would wrap it round)."""
    if right < 0 or down < 0:
        raise ValueError(f"`right` and `down` must be >= 0. Received: right={right}, down={down}")
    height, width = image.shape
    if image[height - down :, :].any() or image[:, width - right :].any():
        raise ValueError(f"Shifting by right={right}, down={down} would push ink off the image.")
    moved = np.zeros_like(image)
    moved[down:, right:] = image[: height - down, : width - right]
    return moved


# Drawn in the top-left 5x5, so that a one-pixel shift keeps the whole letter.
X_IMAGE = letter("""
    # . . . # .
    . # . # . .
    . . # . . .
    . # . # . .
    # . . . # .
    . . . . . .
""")
O_IMAGE = letter("""
    . # # # . .
    # . . . # .
    # . . . # .
    # . . . # .
    . # # # . .
    . . . . . .
""")
IMAGES = {"X": X_IMAGE, "O": O_IMAGE, "X shifted right": shift(X_IMAGE, right=1)}
EXPECTED = {"X": "X", "O": "O", "X shifted right": "X"}

# -----------------------------------------------------------------------------
# The weights


@dataclass(frozen=True)
class Weights:
    conv_kernel: NDArray[np.float32]  # (3, 3)
    conv_bias: float
    hidden_kernel: NDArray[np.float32]  # (4,): one weight per pooled value
    hidden_bias: float
    output_kernel: NDArray[np.float32]  # (2,): hidden -> O, hidden -> X
    output_bias: NDArray[np.float32]  # (2,)


HAND_SET = Weights(
    conv_kernel=np.array([[1, -1, 1], [-1, 1, -1], [1, -1, 1]], np.float32),
    conv_bias=-3.0,
    hidden_kernel=np.array([1, 1, 1, 1], np.float32),
    hidden_bias=0.0,
    output_kernel=np.array([-1, 1], np.float32),
    output_bias=np.array([1, -1], np.float32),
)

# -----------------------------------------------------------------------------
# The network in plain numpy


def forward(
    image: NDArray[np.float32], weights: Weights = HAND_SET
) -> dict[str, NDArray[np.float32]]:
    """Run the network on one 6x6 ink image; return every intermediate, keyed by STEPS."""
    feature_map = np.zeros((4, 4), np.float32)
    for row in range(4):
        for col in range(4):
            # Stride 1, no padding: the window's top-left corner is (row, col).
            window = image[row : row + 3, col : col + 3]
            feature_map[row, col] = np.sum(window * weights.conv_kernel) + weights.conv_bias
    after_relu = np.maximum(feature_map, 0)
    pooled = np.zeros((2, 2), np.float32)
    for row in range(2):
        for col in range(2):
            pooled[row, col] = after_relu[2 * row : 2 * row + 2, 2 * col : 2 * col + 2].max()
    flat = pooled.reshape(4)  # row by row, as Keras' Flatten does
    hidden = np.maximum(flat @ weights.hidden_kernel + weights.hidden_bias, 0).reshape(1)
    outputs = hidden * weights.output_kernel + weights.output_bias
    return dict(zip(STEPS, (feature_map, after_relu, pooled, hidden, outputs), strict=True))


def classify(image: NDArray[np.float32], weights: Weights = HAND_SET) -> str:
    return LABELS[int(np.argmax(forward(image, weights)["outputs"]))]


# -----------------------------------------------------------------------------
# The same network in Keras


def keras_weights(weights: Weights = HAND_SET) -> list[NDArray[np.float32]]:
    """`weights` in the order and shapes of the Keras model's `get_weights()`."""
    return [
        weights.conv_kernel.reshape(3, 3, 1, 1),  # (height, width, in channels, filters)
        np.array([weights.conv_bias], np.float32),
        weights.hidden_kernel.reshape(4, 1),  # (inputs, units)
        np.array([weights.hidden_bias], np.float32),
        weights.output_kernel.reshape(1, 2),
        weights.output_bias,
    ]


def build_keras_model(weights: Weights = HAND_SET) -> Any:
    """Ink image (6, 6, 1) -> logits (O, X); one layer per step, named after it."""
    import keras

    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="ink")
    x = keras.layers.Conv2D(filters=1, kernel_size=3, strides=1, name="feature_map")(inputs)
    x = keras.layers.ReLU(name="after_relu")(x)
    x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name="pooled")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(units=1, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(units=2, name="outputs")(x)
    model = keras.Model(inputs, outputs, name="xo_cnn")
    model.set_weights(keras_weights(weights))
    return model


def keras_forward(model: Any, image: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """Every intermediate of the Keras model, in the shapes `forward` returns."""
    import keras

    layer_names = ("feature_map", "after_relu", "pooled", "hidden", "outputs")
    probe = keras.Model(model.input, [model.get_layer(name).output for name in layer_names])
    values = probe(image.reshape(1, IMAGE_SIZE, IMAGE_SIZE, 1))
    shapes = ((4, 4), (4, 4), (2, 2), (1,), (2,))
    return {
        step: keras.ops.convert_to_numpy(value).reshape(shape)
        for step, value, shape in zip(STEPS, values, shapes, strict=True)
    }


# -----------------------------------------------------------------------------
# Through the toolchain: convert to a TFLite bundle, predict with inference


def build_toolchain_model(weights: Weights = HAND_SET) -> Any:
    """The bundle's input contract: an RGB image (6, 6, 3) preprocessed to x / 127.5 - 1."""
    import keras

    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    # A fixed 1x1 convolution, ink = 0.5 - 0.5 * red: black (-1) -> 1, white (+1) -> 0,
    # exactly in float32. A Conv2D converts to one TFLite op; a Lambda would not save.
    to_ink = keras.layers.Conv2D(filters=1, kernel_size=1, name="to_ink")
    outputs = build_keras_model(weights)(to_ink(inputs))
    model = keras.Model(inputs, outputs, name="xo_cnn_rgb")
    to_ink.set_weights(
        [np.array([-0.5, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.array([0.5], np.float32)]
    )
    return model


def save_train_dir(train_dir: Path, weights: Weights = HAND_SET) -> Path:
    """Write what `python -m convert` reads: model.keras and metrics.json (train/output.py)."""
    from train.output import write_train_output

    metrics = {"labels": list(LABELS), "image_size": IMAGE_SIZE}
    write_train_output(train_dir, build_toolchain_model(weights), metrics)
    return train_dir


def save_png(image: NDArray[np.float32], path: Path) -> Path:
    """Ink 1 -> black, 0 -> white; RGB, as photos are."""
    grey = np.rint((1.0 - image) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([grey, grey, grey], axis=-1)).save(path, format="PNG")
    return path


def png_path(folder: Path, name: str) -> Path:
    """folder/<label>/<name>.png: the layout `python -m convert --images` reads labels from."""
    return folder / EXPECTED[name] / (name.replace(" ", "_") + ".png")


def run_toolchain(folder: Path) -> dict[str, Prediction]:
    """Save, convert and check with the CLI, load the bundle with inference, predict each PNG."""
    from inference import Classifier

    train_dir = save_train_dir(folder / "train")
    pngs = {
        name: save_png(image, png_path(folder / "images", name)) for name, image in IMAGES.items()
    }
    # Converts, then checks the bundle against the Keras model on the labelled PNGs
    # (agreement, logit difference, accuracy); --force so that a rerun replaces it.
    command = [sys.executable, "-m", "convert", str(train_dir), "--out", str(folder / "bundles")]
    command += ["--variants", "float32", "--images", str(folder / "images"), "--force"]
    # cwd=REPO: `-m convert` must find the repository's package, also from an uninstalled checkout.
    done = subprocess.run(command, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {done.returncode}.")
    classifier = Classifier.load(folder / "bundles" / "float32")
    return {name: classifier.predict_file(path) for name, path in pngs.items()}


# -----------------------------------------------------------------------------
# The command line


def format_grid(values: NDArray[np.float32], *, indent: str = "    ") -> str:
    # `+ 0.0` turns -0.0 into 0.0, so a zero never prints as "-0".
    rows = np.atleast_2d(values) + 0.0
    return "\n".join(indent + " ".join(f"{v:3g}" for v in row) for row in rows)


def format_row(values: NDArray[np.float32]) -> str:
    return " ".join(f"{v:g}" for v in values + 0.0)


def describe(name: str, image: NDArray[np.float32], weights: Weights = HAND_SET) -> str:
    steps = forward(image, weights)
    outputs = steps["outputs"]
    return "\n".join(
        [
            f"=== {name} ===",
            "image (1 = black ink):",
            format_grid(image),
            f"feature map (3x3 filter, bias {weights.conv_bias:g}, stride 1):",
            format_grid(steps["feature map"]),
            "after ReLU:",
            format_grid(steps["after ReLU"]),
            "pooled (2x2 max):",
            format_grid(steps["pooled"]),
            f"hidden (dense 4 -> 1, ReLU): {steps['hidden'][0] + 0.0:g}",
            f"outputs (O, X): {format_row(outputs)}  -> {LABELS[int(np.argmax(outputs))]}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.xo_cnn", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--toolchain",
        type=Path,
        metavar="DIR",
        help="also save the model, convert it to a TFLite bundle and predict PNGs, all in DIR",
    )
    args = parser.parse_args(argv)

    weights = HAND_SET
    print("Weights, set by hand (why: see the docstring of examples/xo_cnn.py):")
    print(f"filter, +1 where an X has ink, -1 where it has none; bias {weights.conv_bias:g}:")
    print(format_grid(weights.conv_kernel))
    print(f"hidden: weights {format_row(weights.hidden_kernel)}, bias {weights.hidden_bias:g}")
    print(
        f"outputs (O, X): weights {format_row(weights.output_kernel)}, "
        f"biases {format_row(weights.output_bias)}\n"
    )
    for name, image in IMAGES.items():
        print(describe(name, image, weights) + "\n")

    ok = all(classify(image, weights) == EXPECTED[name] for name, image in IMAGES.items())
    model = build_keras_model(weights)
    same = all(
        np.array_equal(forward(image, weights)[step], keras_forward(model, image)[step])
        for image in IMAGES.values()
        for step in STEPS
    )
    print(f"Keras model with the same weights: every intermediate equal to numpy's: {same}")

    if args.toolchain is not None:
        print(f"\nToolchain in {args.toolchain}: model.keras -> python -m convert -> inference")
        try:
            predictions = run_toolchain(args.toolchain)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for name, prediction in predictions.items():
            logits = ", ".join(f"{v:g}" for v in prediction.logits)
            print(f"  {name:16} logits (O, X): {logits}  -> {prediction.label}")
            ok = ok and prediction.label == EXPECTED[name]
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
