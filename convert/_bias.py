"""Bias correction: cancel the mean output shift that weight quantization causes.

Quantizing a layer's weights W to W_q = W + eps moves its output by eps . x, on
average by eps . E[x]: rounding errors do not cancel over a layer's inputs when
those are mostly positive (as after a ReLU). Subtracting that shift from the
layer's float bias before quantizing again leaves the same int8 weights and
an unbiased output (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", sec. 4.2; E[x] is measured here on the
calibration photos, their "empirical" variant, rather than derived from
BatchNorm statistics).

    means = input_means(float_model, images)            # once per float model
    dynamic = corrected_dynamic_range(float_model, means, float_blocks=..., float_ops=...)
    # = dynamic_range(bias_corrected(float_model, dynamic_range(float_model, ...), means), ...)

For each operator with int8 weights in the quantized model (CONV_2D,
FULLY_CONNECTED; DEPTHWISE_CONV_2D when quantized), eps is read from the two
flatbuffers (dequantized int8 weights minus the float ones), and the shift is
eps . E[x] per output channel, with E[x] the operator input's per-channel mean
over the photos and positions (a convolution's taps share their channel's
mean: padding at the borders aside). The dynamic variant's recipe can use it
(`QuantRecipe.bias_correction`, `--dynamic-bias-correction yes`; off by default:
README "Bias correction").
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from convert._errors import ConvertError
from convert._quantize import dynamic_range

_WAY_OUT = "Pass --dynamic-bias-correction no (QuantRecipe(bias_correction=False))."

# Operators whose weights (input 1) the quantizers store as int8, and bias as input 2.
_CORRECTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _interpreter(model_content: bytes, *, keep_tensors: bool = False) -> Any:
    """A TensorFlow Lite interpreter without XNNPACK, which would repack the weights."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=model_content,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=keep_tensors,
        num_threads=2,
    )
    interpreter.allocate_tensors()
    return interpreter


def _ops(interpreter: Any) -> list[dict[str, Any]]:
    """The interpreter's operators with a weight and a bias input, of the corrected kinds."""
    return [
        op
        for op in interpreter._get_ops_details()  # no public API lists a model's operators
        if op["op_name"] in _CORRECTED and len(op["inputs"]) >= 3 and op["inputs"][2] >= 0
    ]


def input_means(float_model: bytes, images: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel mean of every corrected operator's input over `images`.

    Args:
        float_model: a float32 TFLite flatbuffer.
        images: preprocessed photos, each (1, H, W, 3) float32, as the model takes them.

    Returns:
        {input tensor name: (channels,) float64 mean over photos and positions}.

    Raises:
        ConvertError: `images` is empty, or the interpreter failed on them.
    """
    try:
        return _input_means(float_model, images)
    except (RuntimeError, ValueError) as exc:
        raise ConvertError(
            f"Bias correction could not run the float model: {exc} {_WAY_OUT}"
        ) from None


def corrected_dynamic_range(
    float_model: bytes,
    means: Mapping[str, np.ndarray],
    *,
    float_blocks: Sequence[str] = (),
    float_ops: Sequence[str] = (),
) -> bytes:
    """`dynamic_range` of `float_model` with its quantized operators' biases corrected:
    quantize, correct the float biases (`bias_corrected`), quantize again.

    Args:
        float_model: a float32 flatbuffer.
        means: `input_means(float_model, ...)`.
        float_blocks, float_ops: as `dynamic_range` takes them.

    Raises:
        ConvertError: as `dynamic_range` and `bias_corrected`.
    """
    quantized = dynamic_range(float_model, float_blocks=float_blocks, float_ops=float_ops)
    fixed = bias_corrected(float_model, quantized, means)
    return dynamic_range(fixed, float_blocks=float_blocks, float_ops=float_ops)


def _input_means(float_model: bytes, images: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    interpreter = _interpreter(float_model, keep_tensors=True)
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    inputs = sorted({op["inputs"][0] for op in _ops(interpreter)})
    feed = interpreter.get_input_details()[0]["index"]
    sums: dict[int, np.ndarray] = {}
    count = 0
    for image in images:
        interpreter.set_tensor(feed, image)
        interpreter.invoke()
        for index in inputs:
            values = interpreter.get_tensor(index)
            mean = values.reshape(-1, values.shape[-1]).mean(axis=0, dtype=np.float64)
            sums[index] = sums.get(index, 0.0) + mean
        count += 1
    if count == 0:
        raise ValueError("`images` must hold at least one photo. Received: none")
    return {names[index]: total / count for index, total in sums.items()}


def bias_corrected(float_model: bytes, quantized: bytes, means: Mapping[str, np.ndarray]) -> bytes:
    """`float_model` with each of `quantized`'s int8-weight operators' bias corrected.

    Args:
        float_model: the float32 flatbuffer `quantized` was made from (same tensor names).
        quantized: its quantized flatbuffer (int8 weights with per-channel or
            per-tensor scales); operators it keeps float are left alone.
        means: `input_means(float_model, ...)`.

    Returns:
        A float32 flatbuffer, the same but for those biases; quantize it with the
        same recipe. A bias tensor shared by several operators is copied first,
        so each gets its own correction.

    Raises:
        ConvertError: a layout this correction does not know (a grouped convolution,
            a fully connected layer over a flattened input), or flatbuffers that do
            not match; the message names the way out.
    """
    try:
        return _bias_corrected(float_model, quantized, means)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ConvertError(f"Bias correction failed on this model: {exc!r}. {_WAY_OUT}") from None


def _bias_corrected(float_model: bytes, quantized: bytes, means: Mapping[str, np.ndarray]) -> bytes:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    floats, ints = _interpreter(float_model), _interpreter(quantized)
    float_names = {d["index"]: d["name"] for d in floats.get_tensor_details()}
    float_ops = {float_names[op["outputs"][0]]: op for op in _ops(floats)}
    details = {d["index"]: d for d in ints.get_tensor_details()}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model))
    graph = model.subgraphs[0]
    # A bias is shared when other operators read its tensor, or other tensors its buffer.
    readers = Counter(i for op in graph.operators for i in op.inputs if i >= 0)
    holders = Counter(tensor.buffer for tensor in graph.tensors)
    for op in _ops(ints):
        weights = details[op["inputs"][1]]
        if weights["dtype"] != np.int8:
            continue  # kept float by the recipe
        float_op = float_ops[details[op["outputs"][0]]["name"]]
        shift = _output_shift(
            op["op_name"],
            eps=_dequantized(ints.get_tensor(op["inputs"][1]), weights)
            - floats.get_tensor(float_op["inputs"][1]),
            mean=means[float_names[float_op["inputs"][0]]],
        )
        bias = float_op["inputs"][2]
        shared = readers[bias] > 1 or holders[graph.tensors[bias].buffer] > 1
        _subtract_from_bias(model, graph, float_op, shift, schema, shared=shared)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _dequantized(values: np.ndarray, details: Mapping[str, Any]) -> np.ndarray:
    quantization = details["quantization_parameters"]
    scales = np.asarray(quantization["scales"], dtype=np.float64)
    shape = [1] * values.ndim
    shape[quantization["quantized_dimension"]] = -1
    zero_points = np.asarray(quantization["zero_points"], dtype=np.float64).reshape(shape)
    return (values.astype(np.float64) - zero_points) * scales.reshape(shape)


def _output_shift(kind: str, *, eps: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """eps . E[x] per output channel; weight layouts are TFLite's.

    Raises:
        ValueError: the weights' input axis does not match the input's channels.
    """
    if kind == "DEPTHWISE_CONV_2D":  # (1, kh, kw, channels * multiplier)
        channels = eps.shape[-1]
        if channels % len(mean):
            raise ValueError(f"depthwise weights {eps.shape} for {len(mean)} input channels")
        # Output channel c reads input channel c // multiplier (TFLite's layout).
        return np.asarray(np.einsum("hwc,c->c", eps[0], np.repeat(mean, channels // len(mean))))
    inputs = eps.shape[-1]  # CONV_2D (out, kh, kw, in), FULLY_CONNECTED (out, in)
    if inputs != len(mean):
        raise ValueError(f"{kind} weights {eps.shape} for an input of {len(mean)} channels")
    return np.asarray(eps.reshape(eps.shape[0], -1, inputs).sum(axis=1) @ mean)


def _subtract_from_bias(
    model: Any, graph: Any, op: Mapping[str, Any], shift: np.ndarray, schema: Any, *, shared: bool
) -> None:
    """Store bias - shift as `op`'s bias: in place, or, when `shared` (the converter
    shares equal constants), in a tensor and buffer of its own."""
    bias = graph.tensors[op["inputs"][2]]
    values = np.frombuffer(bytes(model.buffers[bias.buffer].data), dtype=np.float32)
    corrected = np.frombuffer((values - shift).astype(np.float32).tobytes(), dtype=np.uint8)
    if not shared:
        model.buffers[bias.buffer].data = corrected
        return
    bias = copy.deepcopy(bias)
    buffer = schema.BufferT()
    buffer.data = corrected
    model.buffers.append(buffer)
    bias.buffer = len(model.buffers) - 1
    name = bias.name.decode() if isinstance(bias.name, bytes) else str(bias.name)
    bias.name = f"{name}/bias_corrected_{op['index']}"
    graph.tensors.append(bias)
    inputs = list(graph.operators[op["index"]].inputs)
    inputs[2] = len(graph.tensors) - 1
    graph.operators[op["index"]].inputs = np.asarray(inputs, dtype=np.int32)
