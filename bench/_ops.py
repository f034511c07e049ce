"""Where a TFLite model's time goes, op by op, measured without a profiler.

    ops = graph_ops(Path("bundles/float32/model.tflite"))    # the served graph's ops
    models = single_op_models(ops, variant="int8")           # one tiny .tflite per distinct op
    seconds = time_models(models, threads=1, rounds=5, log=print)

ai-edge-litert has no Python profiler API (no `benchmark_model` binary either,
and `experimental_force_delegate_node_profiling` only feeds a C++ profiler the
Python wrapper cannot install). So each op of the served graph is rebuilt as a
one-op Keras model of the same shapes (kernel, strides and padding inferred
from the tensor shapes), converted like the bundle (float32, `dynamic`
weights, or full `int8` with int8 in/out so no QUANTIZE/DEQUANTIZE is timed),
and timed alone under the same runtime and thread count. An op's time is
its median invoke minus the median invoke of a one-element model (the call's
own overhead). Limits, stated in the report: ops run cold-cached one at a
time, not in the model's sequence (no producer-consumer cache reuse), fused
activations are left out (BatchNormalization is folded into the convolutions
by the converter and costs nothing; ReLUs fused into a convolution cost next
to nothing), and MAX_POOL_2D's window is taken as Xception's 3x3. The sum
of the parts is reported beside the whole model's latency so the gap shows.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference import interpreter_class

VARIANTS = ("float32", "dynamic", "int8")
_POOL_WINDOW = 3  # Xception's MaxPooling2D(3, strides=2, padding="same") (Chollet 2017, fig. 5)


@dataclass(frozen=True)
class OpSpec:
    """One op of a TFLite graph: its builtin name and the shapes that fix its cost."""

    op: str  # TFLite builtin name: CONV_2D, DEPTHWISE_CONV_2D, ADD, ...
    inputs: tuple[tuple[int, ...], ...]  # activation inputs, batch axis included
    output: tuple[int, ...]
    kernel: tuple[int, ...] = ()  # weight shape as TFLite stores it ([O, kh, kw, I] for convs)

    @property
    def group(self) -> str:
        """The name the report groups by: CONV_2D split into pointwise and full."""
        if self.op == "CONV_2D":
            kh, kw = self.kernel[1:3]
            stride = self.inputs[0][1] // self.output[1]
            if (kh, kw) == (1, 1):
                return "CONV_2D 1x1 (pointwise)" if stride == 1 else "CONV_2D 1x1 stride 2"
            return f"CONV_2D {kh}x{kw}"
        if self.op == "DEPTHWISE_CONV_2D":
            return f"DEPTHWISE_CONV_2D {self.kernel[1]}x{self.kernel[2]}"
        return self.op

    @property
    def macs(self) -> int:
        """Multiply-adds of one image (bench/_flops.py's formulas); 0 for elementwise ops."""
        positions = math.prod(self.output[1:-1])
        if self.op == "CONV_2D":
            return positions * math.prod(self.kernel)
        if self.op == "DEPTHWISE_CONV_2D":
            return positions * math.prod(self.kernel[1:])
        if self.op == "FULLY_CONNECTED":
            return math.prod(self.kernel)
        return 0


def graph_ops(model_path: Path) -> list[OpSpec]:
    """The ops of a TFLite model, in graph order, with their tensor shapes.

    The float32 bundle is the one to read: the quantized bundles hold the same
    ops with the same shapes (plus QUANTIZE/DEQUANTIZE at the edges for int8).
    """
    cls, _ = interpreter_class("ai-edge-litert")
    interpreter = cls(model_content=model_path.read_bytes())
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    specs = []
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        if name == "DELEGATE":  # the node XNNPACK's delegate adds over the ops it took
            continue
        shapes = [tuple(int(d) for d in tensors[int(i)]["shape"]) for i in op["inputs"] if i >= 0]
        # TFLite builtin operand order: the activation first, then weights, bias,
        # axes or a scalar; ADD's second operand is an activation when it is one too.
        n_activations = 2 if name == "ADD" and len(shapes) > 1 and shapes[1] == shapes[0] else 1
        specs.append(
            OpSpec(
                op=name,
                inputs=tuple(shapes[:n_activations]),
                output=tuple(int(d) for d in tensors[int(op["outputs"][0])]["shape"]),
                kernel=shapes[1] if name in _WEIGHTED else (),
            )
        )
    return specs


_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def keras_op(spec: OpSpec) -> Any:
    """A one-op Keras model with `spec`'s shapes (random weights: shapes fix the cost)."""
    import keras

    shape = spec.inputs[0][1:]
    x = keras.Input(shape=shape, batch_size=1)
    if spec.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw = spec.kernel[1:3]
        stride = max(1, round(spec.inputs[0][1] / spec.output[1]))
        padding = "same" if spec.output[1] == math.ceil(spec.inputs[0][1] / stride) else "valid"
        if spec.op == "CONV_2D":
            y = keras.layers.Conv2D(spec.output[-1], (kh, kw), strides=stride, padding=padding)(x)
        else:
            y = keras.layers.DepthwiseConv2D((kh, kw), strides=stride, padding=padding)(x)
        return keras.Model(x, y)
    if spec.op == "MAX_POOL_2D":
        stride = max(1, round(spec.inputs[0][1] / spec.output[1]))
        y = keras.layers.MaxPooling2D(_POOL_WINDOW, strides=stride, padding="same")(x)
        return keras.Model(x, y)
    if spec.op == "ADD":
        second = spec.inputs[1] if len(spec.inputs) > 1 else spec.inputs[0]
        other = keras.Input(shape=second[1:], batch_size=1)
        return keras.Model([x, other], keras.layers.Add()([x, other]))
    if spec.op == "RELU":
        return keras.Model(x, keras.layers.ReLU()(x))
    if spec.op == "MEAN":
        return keras.Model(x, keras.layers.GlobalAveragePooling2D()(x))
    if spec.op == "FULLY_CONNECTED":
        return keras.Model(x, keras.layers.Dense(spec.output[-1])(x))
    if spec.op == "MUL":
        return keras.Model(x, keras.layers.Rescaling(0.2)(x))
    raise ValueError(f"`spec.op` {spec.op!r} has no one-op rebuild. Received: spec={spec}")


def tflite_bytes(model: Any, *, variant: str) -> bytes:
    """Convert as `python -m convert` does; int8 with int8 in/out (only the op is timed)."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "int8":
        shapes = [tuple(d or 1 for d in t.shape) for t in model.inputs]

        def representative() -> Iterator[list[np.ndarray]]:
            rng = np.random.default_rng(0)
            for _ in range(8):
                yield [rng.normal(size=s).astype(np.float32) for s in shapes]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # Keras' export prints "Saved artifact at ..." and the converter warns per model:
    # the same silencing as convert/_export.py.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        content: bytes = converter.convert()
    return content


def single_op_models(
    ops: list[OpSpec], *, variant: str, log: Callable[[str], None]
) -> dict[OpSpec, bytes]:
    """One converted model per distinct op (ops of the same shapes share it)."""
    distinct = list(dict.fromkeys(ops))
    models = {}
    for i, spec in enumerate(distinct, 1):
        if i % 10 == 0 or i == len(distinct):
            log(f"  {variant}: converted {i}/{len(distinct)} one-op models")
        models[spec] = tflite_bytes(keras_op(spec), variant=variant)
    return models


class _Timed:
    """An interpreter on one model with its inputs set once; `run(n)` -> seconds per invoke."""

    def __init__(self, content: bytes, *, threads: int) -> None:
        cls, _ = interpreter_class("ai-edge-litert")
        self.interpreter = cls(model_content=content, num_threads=threads)
        self.interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for detail in self.interpreter.get_input_details():
            dtype = detail["dtype"]
            data = rng.integers(-100, 100, size=detail["shape"]) if dtype == np.int8 else None
            if data is None:
                data = rng.normal(size=detail["shape"])
            self.interpreter.set_tensor(detail["index"], data.astype(dtype))
        for _ in range(3):  # warm-up: XNNPACK packs weights at the first invoke
            self.interpreter.invoke()

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - start)
        return times


def overhead_model() -> bytes:
    """A one-element RELU: what one invoke costs with (almost) no work."""
    import keras

    x = keras.Input(shape=(1,), batch_size=1)
    return tflite_bytes(keras.Model(x, keras.layers.ReLU()(x)), variant="float32")


def time_models(
    models: dict[Any, bytes],
    *,
    threads: int,
    rounds: int,
    budget_s: float = 0.05,
    each_round: Callable[[], None] | None = None,
) -> dict[Any, float]:
    """Median seconds per invoke of each model, interleaved over `rounds` rounds.

    Each model gets about `budget_s` of invokes per round (at least 3);
    `each_round` (e.g. the GEMM peak's turn) runs once per round, between models.
    """
    timed = {key: _Timed(content, threads=threads) for key, content in models.items()}
    first = {key: statistics.median(t.run(3)) for key, t in timed.items()}
    runs = {key: max(3, int(budget_s / max(s, 1e-6))) for key, s in first.items()}
    samples: dict[Any, list[float]] = {key: [] for key in timed}
    keys = list(timed)
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            samples[key].extend(timed[key].run(runs[key]))
            if each_round is not None and key == keys[0]:
                each_round()
    return {key: statistics.median(s) for key, s in samples.items()}
