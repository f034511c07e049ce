"""Keras model -> ONNX model bytes (tf2onnx), and its operator list for the manifest.

| variant   | how                                   | weights | compute |
|-----------|---------------------------------------|---------|---------|
| onnx      | tf2onnx.convert.from_keras, opset 17  | float32 | float32 |

There is no `onnx-int8` variant: onnxruntime's static quantization
(`quantize_int8`, kept for `python -m bench.onnx_int8`) agreed with Keras on
94% of validation images at best, against int8's 98.5% bar (README, "ONNX Runtime").

The exporter is tf2onnx (>= 1.17, the one that knows Keras 3 and TF 2.16+)
called directly: Keras 3.15's own `model.export(format="onnx")` refuses a
model loaded from `model.keras` ("The model provided has never called").
Input and output stay float32, (batch, H, W, 3) -> (batch, classes), so the
runtime feeds the same preprocessed image and reads the same logits as from a
.tflite bundle (inference/_ort.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convert._errors import ConvertError

ONNX_VARIANTS = ("onnx",)
# Opset 17 (ONNX 1.12, 2022): run by every onnxruntime >= 1.13 and the newest
# tf2onnx 1.17 knows well (it lists 18 as its maximum).
OPSET = 17
INPUT_NAME = "input"
CONVERTER_API = "tf2onnx.convert.from_keras"


def onnx_bytes(model: Any, *, variant: str, image_size: int) -> bytes:
    """Convert a loaded Keras model to one ONNX variant; return the serialized model.

    Args:
        model: a Keras model taking (batch, image_size, image_size, 3) float32
            preprocessed images and returning (batch, classes) logits.
        variant: "onnx" (float32; the only one, see `ONNX_VARIANTS`).
        image_size: the square input side in pixels.

    Returns:
        The bytes of `model.onnx`: input "input" (batch, image_size,
        image_size, 3) float32, output (batch, classes) float32 logits.

    Raises:
        ValueError: an unknown `variant`.
        ConvertError: tf2onnx failed; the message has its error.
    """
    if variant not in ONNX_VARIANTS:
        raise ValueError(
            f"`variant` must be one of {list(ONNX_VARIANTS)}. Received: variant={variant!r}"
        )
    import tensorflow as tf  # deferred: TensorFlow takes seconds to import
    import tf2onnx

    # tf2onnx logs every rewrite pass at INFO; the product's own lines are enough.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = (tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name=INPUT_NAME),)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    except Exception as exc:  # tf2onnx raises bare Exceptions and ValueErrors from its passes
        raise ConvertError(f"ONNX export (tf2onnx) failed: {exc}") from None
    return bytes(proto.SerializeToString())


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader: one image per `get_next`."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self._images = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._images, None)
        return None if x is None else {INPUT_NAME: x[np.newaxis].astype(np.float32)}


def quantize_int8(
    content: bytes, calibration: Sequence[np.ndarray], *, activations: str = "uint8"
) -> bytes:
    """Post-training static quantization of an ONNX model (onnxruntime docs,
    "Quantize ONNX models"): QDQ format, per-channel int8 weights, MinMax ranges.

    uint8 activations (u8 x s8) are the docs' recipe for x86 CPUs, the form
    the VNNI kernels take; the model is first shape-inferred and its BatchNorms
    folded (quant_pre_process), as the docs ask.

    Args:
        content: a float32 ONNX model (`onnx_bytes`).
        calibration: preprocessed images, each float32 (H, W, 3), from the
            train or validation split (never the test split).
        activations: "uint8" or "int8".

    Returns:
        The quantized model's bytes.

    Raises:
        ValueError: no calibration images, or an unknown `activations`.
        ConvertError: the quantizer failed; the message has its error.
    """
    from onnxruntime import quantization as q

    kinds = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    if activations not in kinds:
        raise ValueError(
            f"`activations` must be one of {list(kinds)}. Received: activations={activations!r}"
        )
    if not calibration:
        raise ValueError("`calibration` must hold at least one image. Received: 0")

    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as tmp:
        source, prepared, output = (Path(tmp) / n for n in ("f.onnx", "p.onnx", "q.onnx"))
        source.write_bytes(content)
        try:
            q.shape_inference.quant_pre_process(
                str(source), str(prepared), skip_symbolic_shape=True
            )
            q.quantize_static(
                str(prepared),
                str(output),
                _Calibration(calibration),  # type: ignore[arg-type]
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                activation_type=kinds[activations],
                weight_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax,
            )
        except Exception as exc:  # onnxruntime raises its own types from C++
            raise ConvertError(f"ONNX int8 quantization failed: {exc}") from None
        return output.read_bytes()


def onnx_operators(content: bytes) -> tuple[dict[str, Any], ...]:
    """The op types an ONNX model uses, each with its domain's opset version.

    The ONNX analogue of a .tflite's (operator, version) table: a runtime
    refuses a model whose opset it does not implement.

    Raises:
        ValueError: `content` is not a serialized ONNX model.
    """
    import onnx

    try:
        model = onnx.load_model_from_string(content)
    except Exception as exc:  # google.protobuf's DecodeError
        raise ValueError(f"Not an ONNX model: {exc}") from None
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    seen = {(node.domain or "ai.onnx", node.op_type) for node in model.graph.node}
    operators = []
    for domain, name in sorted(seen, key=lambda d: (d[1], d[0])):
        entry: dict[str, Any] = {"name": name, "version": opsets.get(domain, 0)}
        if domain != "ai.onnx":
            entry["domain"] = domain
        operators.append(entry)
    return tuple(operators)


def onnx_converter_versions() -> dict[str, str]:
    """{"tensorflow", "keras", "tf2onnx", "onnx", "api", "opset"} versions for the manifest."""
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "api": CONVERTER_API,
        "opset": str(OPSET),
    }
