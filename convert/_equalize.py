"""Activation equalization: move each separable convolution's per-channel activation
range into its pointwise weights before quantizing.

Keras' SeparableConv2D is a depthwise convolution then a 1x1 (pointwise) one,
with nothing between them; TFLite stores the depthwise output as its own tensor,
and every quantized variant quantizes it per tensor (int8 statically, dynamic
on the fly), so its channels with a small range lose the most to rounding.
Dividing depthwise channel c by s_c and multiplying pointwise row c by s_c
leaves the function unchanged, and the weights are quantized per channel:

    s_c = a_c^alpha / w_c^(1 - alpha)

with a_c the channel's largest |depthwise output| on calibration photos and w_c
the row's largest |weight| (SmoothQuant, Xiao et al. 2023, eq. 4; cross-layer
equalization for depthwise-separable networks, Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction").

The dynamic variant's recipe uses it (`QuantRecipe.equalize_alpha`, chosen on
validation: README "Activation equalization"); `python -m bench.quant_levers`
measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

# Of a layer's largest channel range: a channel silent on the calibration photos
# would get a scale near 0 (a huge depthwise kernel: one photo that wakes it would
# set the whole tensor's range). Floored, s spreads at most 1000^alpha from the
# activation side. Raised from 1e-6 after a first measurement, where the floor
# left the dynamic variant's RMS logit difference 57% higher at alpha 0.5; 1e-3 is
# the first and only value tried since, not a tuned one (README).
FLOOR = 1e-3


def separable_convs(model: Any) -> list[Any]:
    """Every SeparableConv2D of `model` and of the models nested in it, in layer order."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += separable_convs(layer)
    return found


def base_of(model: Any) -> Any:
    """The (sub)model that owns the separable convolutions, called on the model's input."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model) and separable_convs(layer):
            return layer
    return model


def depthwise_ranges(model: Any, images: np.ndarray, *, batch_size: int = 8) -> list[np.ndarray]:
    """Per separable convolution, the largest |depthwise output| of each channel.

    Args:
        model: a model as `python -m train` builds it (the base called on its input).
        images: (n, H, W, 3) float32, preprocessed.

    Returns:
        One (channels,) float64 array per `separable_convs(model)` layer.

    Raises:
        ValueError: the model has no separable convolution, or one with a depth
            multiplier other than 1 or channels-first data.
    """
    import keras

    layers = separable_convs(model)
    if not layers:
        raise ValueError(
            "`model` must have a SeparableConv2D layer (an Xception base). "
            f"Received: a model of {len(model.layers)} layers, none of them separable"
        )
    for layer in layers:
        multiplier = layer.depthwise_kernel.shape[3]
        if multiplier != 1 or layer.data_format != "channels_last":
            raise ValueError(
                f"`{layer.name}` must have depth multiplier 1 and channels_last data. "
                f"Received: depth_multiplier={multiplier}, data_format={layer.data_format!r}"
            )
    base = base_of(model)
    probe = keras.Model(base.inputs, [layer.input for layer in layers])
    ranges = [np.zeros(layer.depthwise_kernel.shape[2]) for layer in layers]
    for start in range(0, len(images), batch_size):
        inputs = probe.predict_on_batch(images[start : start + batch_size])
        if len(layers) == 1:
            inputs = [inputs]  # a one-output model returns the array itself
        for i, layer in enumerate(layers):
            out = keras.ops.depthwise_conv(
                inputs[i],
                layer.depthwise_kernel,
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
            )
            peak = np.abs(keras.ops.convert_to_numpy(out)).max(axis=(0, 1, 2))
            ranges[i] = np.maximum(ranges[i], peak)
    return ranges


def equalized(model: Any, ranges: Sequence[np.ndarray], *, alpha: float) -> Any:
    """A copy of `model` with each separable convolution's activation range moved
    into its pointwise weights; `model` is left as it is.

    Channel c: depthwise kernel / s_c, pointwise row c * s_c, with
    s_c = a_c^alpha / w_c^(1 - alpha) over its geometric mean (SmoothQuant,
    Xiao et al. 2023, eq. 4); a_c from `ranges`, w_c the row's largest |weight|.
    Exact in real arithmetic (no bias or nonlinearity between the two kernels).

    Raises:
        ValueError: `alpha` outside (0, 1], or `ranges` not one per separable
            convolution with its channel count, or a depth multiplier other than 1.
    """
    import numbers

    import keras

    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha <= 1:
        raise ValueError(f"`alpha` must be in (0, 1]. Received: alpha={alpha!r}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = separable_convs(copy)
    shapes = [layer.depthwise_kernel.shape[2] for layer in layers]
    if [len(r) for r in ranges] != shapes:
        raise ValueError(
            f"`ranges` must give one value per channel of each separable convolution "
            f"({shapes}). Received: channel counts {[len(r) for r in ranges]}"
        )
    for layer, activation in zip(layers, ranges, strict=True):
        depthwise = keras.ops.convert_to_numpy(layer.depthwise_kernel)
        pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel)
        if depthwise.shape[3] != 1:
            raise ValueError(
                f"`{layer.name}` must have depth multiplier 1. "
                f"Received: depth_multiplier={depthwise.shape[3]}"
            )
        if float(np.max(activation)) <= 0:
            continue  # no activation range to move (a layer dead on the calibration photos)
        active = np.maximum(activation, FLOOR * float(np.max(activation)))
        weight = np.maximum(np.abs(pointwise).max(axis=(0, 1, 3)), 1e-12)
        scale = active**alpha / weight ** (1 - alpha)
        scale = scale / np.exp(np.mean(np.log(scale)))
        layer.depthwise_kernel.assign(depthwise / scale[None, None, :, None])
        layer.pointwise_kernel.assign(pointwise * scale[None, None, :, None])
    return copy


def equalized_on(
    model: Any, representative_dataset: Callable[[], Iterable[list[np.ndarray]]], *, alpha: float
) -> Any:
    """`equalized` with the ranges of `representative_dataset`'s images (the int8
    calibration generator: lists holding one (1, H, W, 3) float32 batch each).

    Raises:
        ValueError: the generator yields no image, or as `depthwise_ranges` and
            `equalized`.
    """
    batches = [np.asarray(item[0], dtype=np.float32) for item in representative_dataset()]
    if not batches:
        raise ValueError("`representative_dataset` must yield at least one image. Received: none")
    images = np.concatenate(batches)
    return equalized(model, depthwise_ranges(model, images), alpha=alpha)
