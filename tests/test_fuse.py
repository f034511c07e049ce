"""convert/_fuse.py: the rewired residual sums keep the function, leave the original
model alone, and let the TFLite converter fuse each ReLU after a sum into an ADD."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from convert._fuse import fused_relus, is_relu
from convert._quantize import QuantRecipe, block_of
from tests.conftest import TINY_SIZE, build_tiny_keras_model, unit_logit_spread


def _residual_model(kind: str) -> Any:
    """Small residual networks shaped like Xception's blocks (8x8x4 input)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    if kind == "conv-residual":  # blocks 3, 4: a 1x1 convolution and a ReLU read the sum
        y = layers.SeparableConv2D(8, 3, padding="same")(layers.ReLU()(x))
        x = layers.Add()([y, layers.Conv2D(8, 1)(x)])
        y = layers.SeparableConv2D(8, 3, padding="same")(layers.Activation("relu")(x))
        x = layers.Add()([y, layers.Conv2D(8, 1)(x)])
    for _ in range(3 if kind in ("middle-flow", "middle-then-conv") else 0):
        y = layers.SeparableConv2D(8, 3, padding="same")(layers.Activation("relu")(x))
        x = layers.Add()([y, x])  # blocks 5-12: the next ReLU and the next add read the sum
    if kind == "middle-then-conv":  # block 13: a residual convolution reads the sum too
        y = layers.SeparableConv2D(8, 3, strides=2, padding="same")(layers.ReLU()(x))
        x = layers.Add()([y, layers.Conv2D(8, 1, strides=2)(x)])
    if kind == "relu6":  # not a plain ReLU: left alone
        y = layers.SeparableConv2D(8, 3, padding="same")(layers.ReLU(max_value=6.0)(x))
        x = layers.Add()([y, x])
        y = layers.SeparableConv2D(8, 3, padding="same")(layers.ReLU(max_value=6.0)(x))
        x = layers.Add()([y, x])
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(layers.ReLU()(x)))
    return keras.Model(inputs, outputs)


def _int8_ops(model: Any) -> Counter[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from convert._export import tflite_bytes

    rng = np.random.default_rng(0)
    content = tflite_bytes(
        model,
        variant="int8",
        representative_dataset=lambda: (
            [rng.normal(size=(1, 8, 8, 4)).astype(np.float32)] for _ in range(8)
        ),
    )
    interpreter = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return Counter(op["op_name"] for op in interpreter._get_ops_details())


@pytest.mark.parametrize(
    ("kind", "relus_before", "relus_after", "adds_after"),
    [
        # The first ReLU reads a convolution that the residual reads too (not a sum),
        # and stays; the last one (before pooling) reads a sum only: fused either way.
        ("middle-flow", 3, 1, 5),  # 2 ReLUs after sums -> ADDs of their own
        ("middle-then-conv", 4, 1, 8),  # + the sum formed whole for the convolution
        ("conv-residual", 2, 2, 2),  # only whole sums there: nothing to gain, unchanged
        ("relu6", 2, 2, 2),  # RELU6 is not rewired
    ],
)
def test_fused_relus_keeps_the_function_and_fuses_into_adds(
    kind: str, relus_before: int, relus_after: int, adds_after: int
) -> None:
    model = _residual_model(kind)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 4)).astype(np.float32)
    logits = model.predict_on_batch(x)
    layers_before = [layer.name for layer in model.layers]
    fused = fused_relus(model)
    np.testing.assert_allclose(fused.predict_on_batch(x), logits, rtol=1e-5, atol=1e-5)
    assert [layer.name for layer in model.layers] == layers_before  # the original is kept
    np.testing.assert_allclose(model.predict_on_batch(x), logits)
    before, after = _int8_ops(model), _int8_ops(fused)
    relu_op = "RELU6" if kind == "relu6" else "RELU"
    assert (before[relu_op], after[relu_op]) == (relus_before, relus_after)
    assert after["ADD"] == adds_after


def test_xception_sums_are_rewired_and_named_for_their_blocks() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (4, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    # logits of sd 1 (the untrained base's are ~1e-5, which any output would match)
    model = unit_logit_spread(build_tiny_keras_model(n_classes=3), x)
    fused = fused_relus(model)
    logits = model.predict_on_batch(x)
    assert np.std(logits) > 0.5
    np.testing.assert_allclose(fused.predict_on_batch(x), logits, rtol=1e-4, atol=1e-4)
    (base,) = [layer for layer in fused.layers if hasattr(layer, "layers")]
    new = [layer.name for layer in base.layers if layer.name.startswith("block")]
    new = [name for name in new if name.endswith(("_sum", "_whole", "_whole_part"))]
    # blocks 5-12's ReLUs read a sum the next add reads too; block 13's also a convolution
    assert new == [
        *(f"block{k}_sepconv1_act_sum" for k in range(5, 14)),
        "block13_sepconv1_act_whole_part",
        "block13_sepconv1_act_whole",
    ]
    assert {block_of(f"model/xception/{name}/Add") for name in new[-3:]} == {"block13"}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda k: k.layers.ReLU(), True),
        (lambda k: k.layers.Activation("relu"), True),
        (lambda k: k.layers.ReLU(max_value=6.0), False),
        (lambda k: k.layers.ReLU(negative_slope=0.1), False),
        (lambda k: k.layers.Activation("swish"), False),
        (lambda k: k.layers.Dense(3, activation="relu"), False),
    ],
)
def test_is_relu(make: Any, expected: bool) -> None:
    import keras

    assert is_relu(make(keras)) is expected


def test_fuse_relus_is_int8_only_and_a_bool() -> None:
    from convert._export import tflite_bytes

    message = r"`fuse_relus` must be True or False. Received: fuse_relus='yes'"
    with pytest.raises(ValueError, match=message):
        QuantRecipe(fuse_relus="yes")  # type: ignore[arg-type]
    model = _residual_model("middle-flow")
    for variant in ("float32", "dynamic"):
        with pytest.raises(ValueError, match=f"int8 variant only.*variant='{variant}'"):
            tflite_bytes(model, variant=variant, recipe=QuantRecipe(fuse_relus=True))


def test_a_model_rewired_twice_is_rewired_the_same() -> None:
    # The rewired model shares the original's layers, so those layers then carry
    # the new graph's calls too; a second rewiring must read the original graph only.
    model = _residual_model("middle-then-conv")
    names = [[layer.name for layer in fused_relus(model).layers] for _ in range(2)]
    assert names[0] == names[1]
    assert sum(name.endswith("_sum") for name in names[1]) == 4  # 2 middle, block 13, last


def _odd_model(kind: str) -> Any:
    """Graphs the rewiring must leave correct though Xception has none of them."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    if kind == "sequential":
        return keras.Sequential(
            [keras.Input((8, 8, 4)), layers.Conv2D(8, 3), layers.ReLU(), layers.Flatten()]
        )
    inputs = keras.Input((8, 8, 4))
    x0 = layers.Conv2D(8, 3, padding="same")(inputs)

    def sep(t: Any) -> Any:
        return layers.SeparableConv2D(8, 3, padding="same")(layers.ReLU()(t))

    x = layers.Add()([sep(x0), x0])
    x = layers.Add()([sep(x), x])
    if kind == "three-input-add":  # a sum read by a ReLU and by a three-input Add
        out = layers.Add()([sep(x), x, x0])
    elif kind == "keyword-calls":
        out = layers.ReLU()(inputs=layers.Add()(inputs=[sep(x), x]))
    elif kind == "output-is-a-sum":
        out = layers.Add()([sep(x), x])
    elif kind == "nested-sequential":
        out = layers.Add()([keras.Sequential([layers.Conv2D(8, 1)])(x), x])
    return keras.Model(inputs, out)


@pytest.mark.parametrize(
    "kind",
    ["three-input-add", "keyword-calls", "output-is-a-sum", "nested-sequential", "sequential"],
)
def test_other_graphs_keep_their_function(kind: str) -> None:
    model = _odd_model(kind)
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 4)).astype(np.float32)
    expected = model.predict_on_batch(x)
    np.testing.assert_allclose(fused_relus(model).predict_on_batch(x), expected, atol=1e-5)
    twice = fused_relus(fused_relus(model))  # a rewired model rewired again
    np.testing.assert_allclose(twice.predict_on_batch(x), expected, atol=1e-5)
