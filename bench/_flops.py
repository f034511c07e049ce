"""The compute floor: how much arithmetic one prediction needs, and the machine's peak.

    count = count_macs(model)          # walk a Keras model's layers
    count.macs                         # multiply-adds of one image
    peak = gemm_peak(seconds, threads=1)    # from gemm_worker(threads=1) timings
    fraction_of_peak(macs=count.macs, latency_ms=40.0, peak_gflops=peak.gflops)
    int8 = gemm_peak(seconds, threads=1, dtype="int8")  # from int8_gemm_worker(threads=1)

Two peaks, each measured the same way (a GEMM_SIZE^3 product, timed in the
latency rounds, median): float32 through numpy's BLAS (OpenBLAS sgemm), and int8
through onnxruntime's MatMulInteger (uint8 x int8 -> int32, MLAS: AVX512-VNNI
`vpdpbusd` kernels where the CPU has them, AMX where the OS exposes it). numpy
cannot give the int8 one: its integer matmul has no BLAS and runs scalar loops.
The int8 peak needs onnxruntime (the `onnx` extra); without it the integer
variants get no fraction, and the report says why.

Multiply-adds per layer (channels-last, one image; out_positions = product of
the output's spatial dims):

    Conv1D/2D/3D       out_positions * prod(kernel shape)   (kh*kw*C_in/groups*C_out)
    DepthwiseConv2D    out_positions * kh*kw*C_in*depth_multiplier
    SeparableConv2D    depthwise out_positions*kh*kw*C_in*dm + pointwise out_positions*C_in*dm*C_out
    Dense              leading positions * C_in * units

Bias adds, BatchNormalization, activations, Add and pooling are elementwise:
they are counted separately (`other_ops`, one op per output element, k*k per
pooled element) to show they are negligible, and left out of `macs`.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._worker import Worker

# Xception at 299x299: 8.4e9 multiply-adds ("FLOPs" counted as multiply-adds),
# Tan & Le 2019, "EfficientNet", Table 2, row "Xception (Chollet, 2017)".
PUBLISHED_XCEPTION_299_MACS = 8.4e9

# A square matrix product that runs at the kernel's peak: 512^3 (0.27 GFLOP,
# ~2 ms float32 / ~0.4 ms int8 on one core). Its operands (1 MiB each in
# float32) stay in one core's 2 MiB L2 as the model's pointwise weights mostly
# do (728x728: 2.1 MiB float32, 0.5 MiB int8), so the peak is the kernel's and
# not the shared L3's. Measured on this machine while other jobs ran, 2048^3
# lost 2-2.6x against 512^3 in both dtypes (82 vs 157 GFLOP/s float32, 248 vs
# 657 GOP/s int8), which made a model's ops read over 100% of "peak". On the
# quieter machine of bench/results/2026-11-28.md, 2048^3 gave 152 GFLOP/s, as
# 512^3 does under load.
GEMM_SIZE = 512

_CONV = ("Conv1D", "Conv2D", "Conv3D")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
_ELEMENTWISE = (
    "BatchNormalization",
    "Activation",
    "ReLU",
    "Add",
    "Multiply",
    "Rescaling",
    "Normalization",
)
_POOLING = ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
_GLOBAL_POOLING = ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D")
_FREE = ("InputLayer", "Dropout", "Flatten", "Reshape", "ZeroPadding2D", "Cropping2D")


@dataclass(frozen=True)
class MacCount:
    macs: int  # multiply-adds of the counted layers, one image
    other_ops: int  # elementwise and pooling ops, one image (not in `macs`)
    by_kind: dict[str, int] = field(default_factory=dict)  # layer class -> multiply-adds
    uncounted: tuple[str, ...] = ()  # layers with weights this counter does not know

    @property
    def other_fraction(self) -> float:
        return self.other_ops / self.macs if self.macs else math.nan


def count_macs(model: Any) -> MacCount:
    """Multiply-adds of one image through `model`, nested models included."""
    by_kind: dict[str, int] = {}
    other = 0
    uncounted: list[str] = []
    for layer in _leaf_layers(model):
        kind = type(layer).__name__
        macs, ops, known = _layer_cost(layer, kind)
        if macs:
            by_kind[kind] = by_kind.get(kind, 0) + macs
        other += ops
        if not known and layer.weights:
            uncounted.append(f"{layer.name} ({kind})")
    return MacCount(
        macs=sum(by_kind.values()),
        other_ops=other,
        by_kind=by_kind,
        uncounted=tuple(uncounted),
    )


def _leaf_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested Functional/Sequential model
            layers.extend(_leaf_layers(layer))
        else:
            layers.append(layer)
    return layers


def _layer_cost(layer: Any, kind: str) -> tuple[int, int, bool]:
    """-> (multiply-adds, other ops, whether the layer kind is known)."""
    if kind in _FREE:
        return 0, 0, True
    out_shape = _shape(layer.output)
    positions = math.prod(out_shape[:-1])  # spatial (or leading) positions, one image
    if kind in _CONV or kind in _DEPTHWISE:
        # Keras 3 names both kernels `kernel`; DepthwiseConv's is (kh, kw, C_in, multiplier).
        return positions * math.prod(layer.kernel.shape), 0, True
    if kind in _SEPARABLE:
        depthwise = positions * math.prod(layer.depthwise_kernel.shape)
        pointwise = positions * math.prod(layer.pointwise_kernel.shape)
        return depthwise + pointwise, 0, True
    if kind == "Dense":
        return positions * math.prod(layer.kernel.shape), 0, True
    elements = math.prod(out_shape)
    if kind in _ELEMENTWISE:
        return 0, elements, True
    if kind in _POOLING:
        return 0, elements * math.prod(layer.pool_size), True
    if kind in _GLOBAL_POOLING:
        return 0, math.prod(_shape(layer.input)), True
    return 0, 0, False


def _shape(tensor: Any) -> tuple[int, ...]:
    """A symbolic tensor's shape without the batch axis; every dim must be known."""
    shape = tuple(tensor.shape)[1:]
    if any(d is None for d in shape):
        raise ValueError(
            f"`model` must have a fixed input size to count multiply-adds. "
            f"Received: a layer output of shape {tuple(tensor.shape)}"
        )
    return tuple(int(d) for d in shape)


def xception_macs(*, image_size: int) -> MacCount:
    """Count Xception(include_top=False) at `image_size` (random weights: shapes only)."""
    import keras

    base = keras.applications.Xception(
        weights=None, include_top=False, input_shape=(image_size, image_size, 3)
    )
    return count_macs(base)


@dataclass(frozen=True)
class GemmPeak:
    threads: int
    gflops: float  # median over every timed product: the "measured GEMM peak" (GOP/s for int8)
    best_gflops: float  # fastest product
    runs: int
    size: int = GEMM_SIZE
    dtype: str = "float32"  # "float32" (numpy sgemm) | "int8" (onnxruntime MatMulInteger)


# A worker (bench/_worker.py protocol): the BLAS thread count comes from the
# environment, read when numpy loads, so each thread count is its own process.
_GEMM_SCRIPT = """
import json, sys, time
import numpy as np
n = int(sys.argv[1])
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
a @ b  # warm-up: thread pool start, page faults
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
        break
    times = []
    for _ in range(int(words[1])):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times}), flush=True)
"""


def gemm_worker(*, threads: int, size: int = GEMM_SIZE) -> Worker:
    """A process timing numpy's float32 `a @ b` (size x size) on `threads` BLAS threads."""
    blas_threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {**os.environ, **{name: str(threads) for name in blas_threads}}
    return Worker(
        [sys.executable, "-c", _GEMM_SCRIPT, str(size)],
        name=f"GEMM {threads}-thread",
        cwd=Path.cwd(),
        env=env,
    )


# The int8 twin of _GEMM_SCRIPT: onnxruntime's MatMulInteger with B a constant
# initializer (prepacked once, as a model's weights are), A uint8 and B int8,
# MLAS's u8s8 layout, the one its VNNI kernels take.
_INT8_GEMM_SCRIPT = """
import json, sys, time
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
n, threads = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (n, n), dtype=np.uint8)
b = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
graph = helper.make_graph(
    [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm",
    [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
    [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], initializer=[b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
session = ort.InferenceSession(model.SerializeToString(), options,
                               providers=["CPUExecutionProvider"])
session.run(None, {"a": a})  # warm-up: thread pool start, B prepacked, page faults
print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
        break
    times = []
    for _ in range(int(words[1])):
        t = time.perf_counter()
        session.run(None, {"a": a})
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times}), flush=True)
"""


def int8_gemm_worker(*, threads: int, size: int = GEMM_SIZE) -> Worker:
    """A process timing onnxruntime's int8 MatMulInteger (size x size) on `threads` threads.

    Starting it fails (Worker.wait_ready raises) when onnxruntime or onnx is not installed.
    """
    return Worker(
        [sys.executable, "-c", _INT8_GEMM_SCRIPT, str(size), str(threads)],
        name=f"int8 GEMM {threads}-thread",
        cwd=Path.cwd(),
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )


def gemm_peak(
    seconds: list[float], *, threads: int, size: int = GEMM_SIZE, dtype: str = "float32"
) -> GemmPeak:
    """The peak from the timed products: 2 * size^3 operations each (a multiply and an add)."""
    flops = 2 * size**3
    return GemmPeak(
        threads=threads,
        gflops=flops / statistics.median(seconds) / 1e9,
        best_gflops=flops / min(seconds) / 1e9,
        runs=len(seconds),
        size=size,
        dtype=dtype,
    )


def fraction_of_peak(*, macs: int, latency_ms: float, peak_gflops: float) -> float:
    """Achieved GFLOP/s (2 FLOPs per multiply-add) over the measured peak."""
    achieved_gflops = 2 * macs / (latency_ms / 1000) / 1e9
    return achieved_gflops / peak_gflops
