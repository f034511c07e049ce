"""Keras model -> TFLite flatbuffer, one function per concern: convert, list operators.

The four variants follow TensorFlow's post-training quantization guide
(https://ai.google.dev/edge/litert/models/post_training_quantization):

| variant | converter settings                                         | weights | compute |
|---------|------------------------------------------------------------|---------|---------|
| float32 | none                                                       | float32 | float32 |
| float16 | Optimize.DEFAULT + supported_types=[float16]               | float16 | float32 |
| dynamic | Optimize.DEFAULT                                           | int8    | mixed   |
| int8    | Optimize.DEFAULT + representative_dataset + BUILTINS_INT8  | int8    | int8    |

`int8` and `dynamic` follow a `QuantRecipe` (convert/_quantize.py): the blocks
that cost the most agreement on validation images may stay float32 (selective
quantization); `QuantRecipe(float_blocks=())` is the table's recipe.

Input and output stay float32 in every variant (inference_input_type and
inference_output_type keep their float32 default), so a caller feeds the same
preprocessed image and reads the same logits whichever variant it loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from convert._bias import corrected_dynamic_range, input_means
from convert._equalize import equalized_on
from convert._errors import ConvertError
from convert._fuse import fused_relus
from convert._onnx import ONNX_VARIANTS
from convert._quantize import (
    QuantRecipe,
    calibrate,
    dynamic_range,
    quantize_calibrated,
    run_converter,
)

TFLITE_VARIANTS = ("float32", "float16", "dynamic", "int8")
# Every variant `python -m convert` makes: the TFLite ones, then the ONNX ones
# (convert/_onnx.py, bundles with format "onnx").
VARIANTS = TFLITE_VARIANTS + ONNX_VARIANTS
# Variants whose conversion always needs calibration images; a recipe that
# equalizes needs them too (`needs_calibration`).
CALIBRATED_VARIANTS = frozenset({"int8"})
QUANTIZED = ("int8", "dynamic")  # the variants a QuantRecipe applies to
CONVERTER_API = "tf.lite.TFLiteConverter.from_keras_model"

RepresentativeDataset = Callable[[], Iterable[list[np.ndarray]]]


def check_variants(variants: object, *, optional: bool = False) -> None:
    """Raise unless `variants` is a non-empty tuple of distinct names (or None, if optional)."""
    if optional and variants is None:
        return
    if (
        not isinstance(variants, tuple)
        or not variants
        or not all(isinstance(v, str) and v in VARIANTS for v in variants)
        or len(set(variants)) != len(variants)
    ):
        raise ValueError(
            f"`variants` must be {'None or ' if optional else ''}a non-empty tuple of distinct "
            f"names from {list(VARIANTS)}. Received: variants={variants!r}"
        )


def needs_calibration(variant: str, recipe: QuantRecipe | None) -> bool:
    """True when converting `variant` with `recipe` reads calibration images: int8's
    activation ranges, or a recipe's equalization or bias correction (`QuantRecipe`)."""
    return variant in CALIBRATED_VARIANTS or (
        recipe is not None and (recipe.equalize_alpha is not None or recipe.bias_correction)
    )


def tflite_bytes(
    model: Any,
    *,
    variant: str,
    representative_dataset: RepresentativeDataset | None = None,
    recipe: QuantRecipe | None = None,
) -> bytes:
    """Convert a loaded Keras model to one TFLite variant; return the flatbuffer.

    `recipe` (int8 and dynamic) names the blocks and op types kept in float32
    (convert/_quantize.py; none of either: the converter's own recipe), and
    whether the model is equalized first on `representative_dataset`'s images
    (convert/_equalize.py), for int8, its residual ReLUs fused (convert/_fuse.py),
    or, for dynamic, its biases corrected on the same images (convert/_bias.py).

    Raises:
        ValueError: an unknown variant, a `recipe` that does not apply to it, or
            no `representative_dataset` where one is needed (`needs_calibration`).
        ConvertError: the converter failed.
    """
    import tensorflow as tf  # deferred: TensorFlow takes seconds to import

    if variant not in TFLITE_VARIANTS:
        raise ValueError(
            f"`variant` must be one of {list(TFLITE_VARIANTS)}. Received: variant={variant!r}"
        )
    if recipe is not None and recipe.equalize_alpha is not None and variant not in QUANTIZED:
        raise ValueError(
            "`equalize_alpha` applies to the int8 and dynamic variants only. "
            f"Received: variant={variant!r}, equalize_alpha={recipe.equalize_alpha!r}"
        )
    if needs_calibration(variant, recipe) and representative_dataset is None:
        raise ValueError(
            f"Variant {variant!r} needs a `representative_dataset` (int8's ranges, or its "
            "recipe's equalization or bias correction). "
            f"Received: representative_dataset=None, recipe={recipe!r}"
        )
    if recipe is not None and recipe.fuse_relus and variant != "int8":
        raise ValueError(
            "`fuse_relus` applies to the int8 variant only (XNNPACK already runs the "
            f"float ReLUs). Received: variant={variant!r}, fuse_relus=True"
        )
    if recipe is not None and recipe.bias_correction and variant != "dynamic":
        raise ValueError(
            "`bias_correction` applies to the dynamic variant only. "
            f"Received: variant={variant!r}, bias_correction=True"
        )
    if recipe is not None and recipe.float_ops and variant != "dynamic":
        raise ValueError(
            f"`float_ops` applies to the dynamic variant only. Received: variant={variant!r}, "
            f"float_ops={recipe.float_ops!r}"
        )
    if recipe is not None and recipe.equalize_alpha is not None:
        assert representative_dataset is not None  # checked above
        try:
            model = equalized_on(model, representative_dataset, alpha=recipe.equalize_alpha)
        except ValueError as exc:  # a model that is not an Xception-like network
            raise ConvertError(
                f"Variant {variant!r}: its recipe equalizes the separable convolutions "
                f"(equalize_alpha={recipe.equalize_alpha!r}), and this model cannot be: {exc} "
                f"Pass {'--dynamic-equalize none' if variant == 'dynamic' else 'a recipe'} "
                "(equalize_alpha=None)."
            ) from None
    if recipe is not None and recipe.fuse_relus:
        model = fused_relus(model)
    if variant == "dynamic" and recipe is not None and (recipe.selective or recipe.bias_correction):
        float_model = tflite_bytes(model, variant="float32")
        blocks, ops = recipe.float_blocks, recipe.float_ops
        if not recipe.bias_correction:
            return dynamic_range(float_model, float_blocks=blocks, float_ops=ops)
        assert representative_dataset is not None  # checked above
        means = input_means(float_model, (batch[0] for batch in representative_dataset()))
        return corrected_dynamic_range(float_model, means, float_blocks=blocks, float_ops=ops)
    if recipe is not None and recipe.selective and variant in QUANTIZED:
        assert representative_dataset is not None  # checked above
        calibrated = calibrate(model, representative_dataset)
        return quantize_calibrated(calibrated, float_blocks=recipe.float_blocks)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        converter.representative_dataset = representative_dataset
        # Fail the conversion rather than silently keep a float op in an "int8" model.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return run_converter(converter, failure=f"TFLite conversion to {variant!r} failed")


def builtin_operators(model_content: bytes) -> tuple[dict[str, Any], ...]:
    """The operators a TFLite model uses, with versions, read from its flatbuffer.

    A runtime refuses a model when its kernel registry lacks an (operator,
    version) pair, e.g. tflite-runtime 2.14 and FULLY_CONNECTED version 12, so
    the versions matter as much as the names. They live only in the
    flatbuffer's `operator_codes` table (the interpreter's op details omit them).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    if not schema.Model.ModelBufferHasIdentifier(model_content, 0):
        raise ValueError("Not a TFLite flatbuffer (file identifier 'TFL3' missing).")
    names = {
        code: name
        for name, code in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAs(model_content, 0)
    operators: list[dict[str, Any]] = []
    for i in range(model.OperatorCodesLength()):
        op = model.OperatorCodes(i)
        # Codes > 127 live in `builtin_code`, older ones in `deprecated_builtin_code`;
        # the true code is the larger (tensorflow/lite/schema/schema_utils.cc, GetBuiltinCode).
        code = max(op.BuiltinCode(), op.DeprecatedBuiltinCode())
        entry: dict[str, Any] = {
            "name": names.get(code, f"BUILTIN_{code}"),
            "version": op.Version(),
        }
        if entry["name"] == "CUSTOM":
            custom = op.CustomCode()
            entry["custom_code"] = custom.decode() if isinstance(custom, bytes) else str(custom)
        operators.append(entry)
    return tuple(sorted(operators, key=lambda e: (e["name"], e["version"])))


def converter_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "api": CONVERTER_API}
