"""The seed recipe's networks: frozen Xception base, small dense head.

image (S, S, 3) in [-1, 1]
  -> Xception(include_top=False), frozen, called with training=False
  -> GlobalAveragePooling2D            (2048 features: what the cache holds)
  -> Dense(size_inner, relu) -> Dropout(droprate) -> Dense(n_classes) logits

An ensemble of N heads (`ensemble=N`, N > 1) shares the base: N such heads
on the same pooled features, their logits averaged (`Average`), so the
exported model still maps an image to (n_classes,) logits and convert/inference
need no change. For training, the N heads' logits are stacked to
(batch, N, n_classes) and each is fitted to the same one-hot target in one
`fit` (one pass over the cached features trains all N).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import keras
import numpy as np

from train.config import XCEPTION_BLOCKS

FEATURES = 2048  # Xception's last block has 2048 channels (Chollet 2017, fig. 5)


class WeightsError(ValueError):
    """The base weights are missing or do not fit Xception."""


def build_base(*, image_size: int, base_weights: str | None) -> keras.Model:
    """Xception(include_top=False) with 'imagenet', a weights file, or 'none'.

    'none' (random weights) exists for fast tests; it learns nothing useful.
    """
    if base_weights == "none":
        base_weights = None
    weights: str | None = base_weights
    if base_weights not in (None, "imagenet"):
        path = Path(str(base_weights)).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"`base_weights` must be 'imagenet' or an existing weights file. "
                f"Received: base_weights={base_weights!r} (no such file). "
                "Set XCEPTION_WEIGHTS or pass --base-weights."
            )
        weights = None  # build empty, then load, so we can word the error
    try:
        base = keras.applications.Xception(
            weights=weights, include_top=False, input_shape=(image_size, image_size, 3)
        )
    except Exception as exc:  # download failures surface as many types
        raise WeightsError(
            f"Could not get the ImageNet weights for Xception ({type(exc).__name__}: {exc}). "
            "Without internet, pass --base-weights PATH (or XCEPTION_WEIGHTS) to a "
            "xception_imagenet_notop .weights.h5 file."
        ) from None
    if weights is None and base_weights is not None:
        _load_weights_file(base, Path(str(base_weights)).expanduser())
    return base


def _load_weights_file(base: keras.Model, path: Path) -> None:
    try:
        base.load_weights(str(path))
    except Exception as exc:  # h5py/keras raise ValueError, OSError, KeyError...
        raise WeightsError(
            f"`base_weights` file does not fit Xception(include_top=False). "
            f"Received: base_weights={str(path)!r} ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def weights_fingerprint(base: keras.Model) -> str:
    """sha256 over every weight tensor: identifies the base whatever its source."""
    digest = hashlib.sha256()
    for w in base.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        digest.update(w.path.encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def feature_extractor(base: keras.Model) -> keras.Model:
    """`base` + global average pooling: (batch, H, W, 3) in [-1, 1] -> (batch, 2048) float32."""
    inputs = keras.Input(shape=base.input_shape[1:])
    x = base(inputs, training=False)
    outputs = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    return keras.Model(inputs, outputs, name="xception_features")


def _head_layer_names(ensemble: int) -> list[tuple[str, str, str]]:
    if ensemble == 1:  # the seed recipe's layer names
        return [("inner", "dropout", "logits")]
    return [(f"inner_{i}", f"dropout_{i}", f"logits_{i}") for i in range(ensemble)]


def build_head(
    *, n_classes: int, size_inner: int, droprate: float, ensemble: int = 1
) -> keras.Model:
    """(batch, 2048) features -> (batch, n_classes) logits, or (batch, N, n_classes) for N > 1.

    Raises ValueError for ensemble < 1.
    """
    if ensemble < 1:
        raise ValueError(f"`ensemble` must be >= 1. Received: ensemble={ensemble!r}")
    inputs = keras.Input(shape=(FEATURES,), name="features")
    branches = []
    for inner, dropout, logits in _head_layer_names(ensemble):
        x = keras.layers.Dense(size_inner, activation="relu", name=inner)(inputs)
        x = keras.layers.Dropout(droprate, name=dropout)(x)
        branches.append(keras.layers.Dense(n_classes, name=logits)(x))
    if ensemble == 1:
        return keras.Model(inputs, branches[0], name="head")
    stacked = [
        keras.layers.Reshape((1, n_classes), name=f"row_{i}")(b) for i, b in enumerate(branches)
    ]
    outputs = keras.layers.Concatenate(axis=1, name="heads")(stacked)
    return keras.Model(inputs, outputs, name="head")


def ensemble_size(head: keras.Model) -> int:
    """How many heads `build_head` stacked: 1 for a (batch, n_classes) output, else N."""
    shape = head.output_shape
    return 1 if len(shape) == 2 else int(shape[1])


def head_logits(head: keras.Model, features: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(n, 2048) float32 features -> (n, n_classes) float32 logits, the mean over the heads."""
    out = np.asarray(head.predict(features, batch_size=batch_size, verbose=0), dtype=np.float32)
    return out if out.ndim == 2 else out.mean(axis=1)


def build_full_model(base: keras.Model, head: keras.Model) -> keras.Model:
    """Image -> logits: the frozen base, pooling, and the head's layers (shared weights).

    An ensemble head's logits are averaged by an `Average` layer (built-in, so
    model.keras loads and converts without custom objects).
    """
    size = base.input_shape[1]
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = base(inputs, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    outputs = []
    for names in _head_layer_names(ensemble_size(head)):
        y = pooled
        for name in names:
            y = head.get_layer(name)(y)
        outputs.append(y)
    logits = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="mean_logits")(outputs)
    return keras.Model(inputs, logits, name="clothing_xception")


def compile_model(
    model: keras.Model,
    *,
    learning_rate: float,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    """Adam (the seed), or AdamW when weight_decay > 0 (decoupled decay, Loshchilov &
    Hutter 2019); cross-entropy on logits with optional label smoothing (Szegedy et
    al. 2016). The loss and accuracy work on (batch, C) and stacked (batch, N, C) logits.
    """
    optimizer = (
        keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        if weight_decay > 0
        else keras.optimizers.Adam(learning_rate=learning_rate)
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=["accuracy"],
    )


def split_base(base: keras.Model, *, n_blocks: int) -> tuple[keras.Model, keras.Model]:
    """Xception `base` cut before its last `n_blocks` blocks: (trunk, top).

    trunk: image (S, S, 3) -> the activations block 15 - n_blocks reads (at 299 px,
    (19, 19, 728) for n_blocks 2-3, (10, 10, 1024) for 1); top: those activations ->
    the base's output. Both reuse the base's layers (shared weights). The cut is
    the input of the first layer named `block{15 - n}_`, since Keras numbers the
    unnamed `add` layers per process; `top` also holds block 13's unnamed 1x1
    shortcut convolution and its BatchNorm.

    Raises:
        ValueError: `n_blocks` is not in [1, XCEPTION_BLOCKS - 1], or `base` has
            no layer of that block (not an Xception base).
    """
    if not 1 <= n_blocks < XCEPTION_BLOCKS:
        raise ValueError(
            f"`n_blocks` must be in [1, {XCEPTION_BLOCKS - 1}]. Received: n_blocks={n_blocks!r}"
        )
    prefix = f"block{XCEPTION_BLOCKS - n_blocks + 1}_"
    first = next((layer for layer in base.layers if layer.name.startswith(prefix)), None)
    if first is None:
        raise ValueError(
            f"`base` must be Xception, with layers named {prefix}*. "
            f"Received: a base named {base.name!r} without them"
        )
    cut = first.input
    return keras.Model(base.input, cut), keras.Model(cut, base.output)


def unfreeze_last_blocks(base: keras.Model, n_blocks: int) -> int:
    """Make the weighted layers of Xception's last `n_blocks` blocks trainable,
    BatchNorm excepted; return how many.

    BatchNorm stays frozen: in Keras 3 a frozen BatchNormalization layer runs in
    inference mode (its moving statistics), while a trainable one uses batch
    statistics whenever the model trains, whatever `training=False` its caller
    passed (Keras transfer-learning guide, "BatchNormalization layer"). The
    layers are those of `split_base(base, n_blocks=...)[1]`, so block 13's
    unnamed shortcut convolution is tuned with the rest of its block.
    """
    base.trainable = n_blocks > 0
    tuned: set[int] = set()
    if n_blocks >= XCEPTION_BLOCKS:  # the whole base: no cut to make
        tuned = {id(layer) for layer in base.layers}
    elif n_blocks > 0:
        tuned = {id(layer) for layer in split_base(base, n_blocks=n_blocks)[1].layers}
    count = 0
    for layer in base.layers:
        layer.trainable = (
            id(layer) in tuned
            and bool(layer.weights)
            and not isinstance(layer, keras.layers.BatchNormalization)
        )
        count += int(layer.trainable)
    return count


def augmenter(*, seed: int) -> keras.Sequential:
    """Flip, zoom and shear as in the seed's ImageDataGenerator study."""
    layers: list[Any] = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed),
        keras.layers.RandomShear(x_factor=0.1, y_factor=0.1, seed=seed),
    ]
    return keras.Sequential(layers, name="augment")
