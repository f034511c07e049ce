"""convert/_equalize.py: activation equalization keeps the function, equalizes the
ranges, bounds silent channels, and refuses what it cannot equalize (tiny model)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from convert._equalize import FLOOR, depthwise_ranges, equalized, separable_convs
from tests.conftest import TINY_SIZE, build_tiny_keras_model

CLASSES = ("hat", "pants", "shoes")


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, np.ndarray]:
    model = build_tiny_keras_model(n_classes=len(CLASSES))
    images = np.random.default_rng(0).uniform(-1, 1, (6, TINY_SIZE, TINY_SIZE, 3))
    return model, images.astype(np.float32)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_equalization_keeps_the_answers_and_the_original(
    tiny: tuple[Any, np.ndarray], alpha: float
) -> None:
    model, images = tiny
    before = [w.copy() for w in model.get_weights()]
    logits = model.predict_on_batch(images)
    copy = equalized(model, depthwise_ranges(model, images), alpha=alpha)
    np.testing.assert_allclose(copy.predict_on_batch(images), logits, rtol=1e-3, atol=1e-4)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before, strict=True))
    moved = [
        not np.allclose(a.pointwise_kernel.numpy(), b.pointwise_kernel.numpy())
        for a, b in zip(separable_convs(copy), separable_convs(model), strict=True)
    ]
    assert all(moved)


def test_alpha_one_gives_every_channel_the_same_range(tiny: tuple[Any, np.ndarray]) -> None:
    model, images = tiny
    ranges = depthwise_ranges(model, images)
    assert len(ranges) == 34  # Xception's separable convolutions
    assert max(float(r.max() / np.median(r[r > 0])) for r in ranges) > 1.5  # unequal before
    after = depthwise_ranges(equalized(model, ranges, alpha=1.0), images)
    for before, layer in zip(ranges, after, strict=True):
        active = layer[before >= FLOOR * before.max()]  # the rest are floored: see equalized
        np.testing.assert_allclose(active, np.median(active), rtol=1e-3)


def test_silent_channels_get_bounded_scales_and_silent_layers_stay(
    tiny: tuple[Any, np.ndarray],
) -> None:
    model, images = tiny
    ranges = depthwise_ranges(model, images)
    ranges[0] = np.zeros_like(ranges[0])  # a layer silent on the calibration photos
    ranges[1] = ranges[1].copy()
    ranges[1][0] = 0.0  # one silent channel
    copy = equalized(model, ranges, alpha=0.5)
    (before0, before1), (after0, after1) = separable_convs(model)[:2], separable_convs(copy)[:2]
    np.testing.assert_array_equal(after0.depthwise_kernel.numpy(), before0.depthwise_kernel.numpy())
    growth = (
        np.abs(after1.depthwise_kernel.numpy()[..., 0, 0]).max()
        / np.abs(before1.depthwise_kernel.numpy()[..., 0, 0]).max()
    )
    # floored at 1e-3 of the layer's range: growth about sqrt(1e3) at alpha 0.5;
    # a floor at 1e-6 gives about 1e3, none at all makes the scales inf or nan
    assert growth < 300
    np.testing.assert_allclose(
        copy.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize(
    ("alpha", "ranges_fix", "message"),
    [
        (0.0, None, "`alpha` must be in (0, 1]. Received: alpha=0.0"),
        (1.5, None, "`alpha` must be in (0, 1]. Received: alpha=1.5"),
        (0.5, "short", "`ranges` must give one value per channel"),
        (0.5, "wrong_channels", "`ranges` must give one value per channel"),
    ],
)
def test_bad_equalization_arguments_are_value_errors(
    tiny: tuple[Any, np.ndarray], alpha: float, ranges_fix: str | None, message: str
) -> None:
    model, _ = tiny
    ranges = [np.ones(layer.depthwise_kernel.shape[2]) for layer in separable_convs(model)]
    if ranges_fix == "short":
        ranges = ranges[:-1]
    elif ranges_fix == "wrong_channels":
        ranges[0] = np.ones(3)
    with pytest.raises(ValueError, match=re.escape(message)):
        equalized(model, ranges, alpha=alpha)


def _one_layer_model(layer: Any) -> Any:
    import keras

    inputs = keras.Input(shape=(TINY_SIZE, TINY_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x))


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            "conv",
            "`model` must have a SeparableConv2D layer (an Xception base). "
            "Received: a model of 4 layers",
        ),
        ("multiplier", "Received: depth_multiplier=2, data_format='channels_last'"),
    ],
)
def test_depthwise_ranges_refuses_what_it_cannot_equalize(layer: str, message: str) -> None:
    import keras

    made = (
        keras.layers.Conv2D(4, 3)
        if layer == "conv"
        else keras.layers.SeparableConv2D(4, 3, depth_multiplier=2)
    )
    images = np.zeros((2, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape(message)):
        depthwise_ranges(_one_layer_model(made), images)


def test_one_separable_layer_and_dilation_are_measured() -> None:
    import keras

    layer = keras.layers.SeparableConv2D(4, 3, dilation_rate=2, padding="same")
    model = _one_layer_model(layer)
    images = np.random.default_rng(1).uniform(-1, 1, (3, TINY_SIZE, TINY_SIZE, 3))
    (ranges,) = depthwise_ranges(model, images.astype(np.float32))
    expected = keras.ops.depthwise_conv(
        images.astype(np.float32), layer.depthwise_kernel, padding="same", dilation_rate=2
    )
    np.testing.assert_allclose(
        ranges, np.abs(keras.ops.convert_to_numpy(expected)).max(axis=(0, 1, 2)), rtol=1e-5
    )
