"""Selective int8: calibrate once, keep the blocks that hurt the answers most in float.

Full-integer int8 of the 150 px Xception agreed with Keras on 95.0% of the
validation images: every layer adds its rounding noise (the TFLite
QuantizationDebugger's rmse/scale is ~0.29 = 1/sqrt(12), pure rounding, on
nearly every layer), and the noise adds up through 36 convolutions. No single
layer is to blame, so layers are judged by their effect on the logits, a block
at a time:

1. `calibrate`: the float model annotated with activation ranges from the
   calibration images (`_experimental_calibrate_only`, the same pass the
   converter runs for int8), computed once.
2. `block_sensitivity`: for each Xception block (and the head), the model with
   only that block in int8 and the rest in float; the RMS logit difference
   against Keras on validation images measures what the block's quantization
   costs.
3. `choose_float_blocks`: the most sensitive blocks are kept in float, one more
   at a time, until the validation agreement reaches the target.
4. `quantize_calibrated`: the calibrated model, quantized with the chosen
   blocks' operators left in float (TFLite's `denylisted_nodes`, as the
   QuantizationDebugger's selective quantization does:
   https://ai.google.dev/edge/litert/models/quantization_debugger).

Only training and validation images take part: the test split measures the
result (`python -m convert check`), never chooses it.
"""

from __future__ import annotations

import contextlib
import io
import numbers
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from convert._errors import ConvertError

RepresentativeDataset = Callable[[], Iterable[list[np.ndarray]]]

HEAD = "head"
BLOCKS = (*(f"block{i}" for i in range(1, 15)), HEAD)  # Keras Xception's 14 blocks + our head
# Keras Xception's residual branches are unnamed layers: `conv2d`,
# `batch_normalization` and `add`, numbered in order. The 1x1 residual
# convolutions belong to blocks 2, 3, 4 and 13 (keras/applications/xception.py);
# `add_k` closes block k + 2.
_RESIDUAL_CONV_BLOCKS = (2, 3, 4, 13)
# Operator types a dynamic-range recipe can keep float everywhere. XNNPACK takes no
# DEPTHWISE_CONV_2D with int8 weights in a dynamic-range model, so each one leaves
# the delegate for TFLite's hybrid kernel (33 of 34, README "Closer to the
# machine's limit"); kept float, they are 1.6% of the multiply-adds and 207k weights.
FLOAT_OPS = ("DEPTHWISE_CONV_2D",)
_HEAD_LAYERS = re.compile(r"(inner|logits|mean_logits|pooled|dense|global_average_pooling2d)")


@dataclass(frozen=True)
class QuantRecipe:
    """Which parts of a quantized variant (`int8`, `dynamic`) stay in float32.

    `float_blocks` are names from `block_of` ("block1".."block14", "head");
    `float_ops` are TFLite operator types kept float everywhere (names from
    `FLOAT_OPS`; dynamic only). Both empty: every supported operator quantized,
    the TFLite converter's own recipe from before issue 13
    (`--int8-float-blocks none`) unless `equalize_alpha` is set: in (0, 1], the Keras model's
    separable convolutions are equalized first (convert/_equalize.py), on the
    calibration images; None: not. `fuse_relus` (int8 only): the residual sums
    are rewired first so that each ReLU after one fuses into an ADD that XNNPACK
    runs (convert/_fuse.py); the function is unchanged. `bias_correction`
    (dynamic only): each quantized operator's bias absorbs the mean output shift
    its int8 weights cause on the calibration images (convert/_bias.py).
    """

    float_blocks: tuple[str, ...] = ()
    float_ops: tuple[str, ...] = ()
    equalize_alpha: float | None = None
    fuse_relus: bool = False
    bias_correction: bool = False

    def __post_init__(self) -> None:
        blocks = self.float_blocks
        if not isinstance(blocks, tuple) or not all(b in BLOCKS for b in blocks):
            raise ValueError(
                "`float_blocks` must be a tuple of names from block1..block14 and 'head'. "
                f"Received: float_blocks={blocks!r}"
            )
        if len(set(blocks)) != len(blocks):
            raise ValueError(
                f"`float_blocks` must not repeat a block. Received: float_blocks={blocks!r}"
            )
        ops = self.float_ops
        if not isinstance(ops, tuple) or not all(o in FLOAT_OPS for o in ops):
            raise ValueError(
                f"`float_ops` must be a tuple of names from {FLOAT_OPS}. "
                f"Received: float_ops={ops!r}"
            )
        if len(set(ops)) != len(ops):
            raise ValueError(f"`float_ops` must not repeat an op. Received: float_ops={ops!r}")
        alpha = self.equalize_alpha
        if alpha is not None and (
            isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha <= 1
        ):
            raise ValueError(
                f"`equalize_alpha` must be None or in (0, 1]. Received: equalize_alpha={alpha!r}"
            )
        if not isinstance(self.fuse_relus, bool):
            raise ValueError(
                f"`fuse_relus` must be True or False. Received: fuse_relus={self.fuse_relus!r}"
            )
        if not isinstance(self.bias_correction, bool):
            raise ValueError(
                "`bias_correction` must be True or False. "
                f"Received: bias_correction={self.bias_correction!r}"
            )

    @property
    def selective(self) -> bool:
        """True when anything stays float: the selective path, not the converter's own."""
        return bool(self.float_blocks or self.float_ops)


# Chosen by `python -m convert select runs/acc/fast_150_v2` (the fast profile with
# the JPEG view) on the validation split (README "Quantization"): the fewest
# most-sensitive blocks kept in float that bring validation agreement with Keras
# to the selection target, else the best recipe tried (neither reached it).
# dynamic's depthwise float: `python -m bench.dynamic_ops`, same README section.
# dynamic's equalization alpha 0.5: `python -m bench.quant_levers` on validation
# (README "Activation equalization"); its blocks were then chosen again with it on
# (`python -m convert select ... --variants dynamic`: 100% of validation).
# dynamic's bias correction (convert/_bias.py) is off: `python -m bench.bias_correction`
# on validation lowered the logits' and the top-2 margin's errors by a fifth to a
# quarter but changed one more of 341 answers, at 150 and 299 px, and agreement
# decides, as it did for the rest of these recipes (README "Bias correction").
# int8's ReLU fusion (convert/_fuse.py): `python -m bench.int8_relus`, same function,
# RMS logit difference within 1% with these blocks, 1 XNNPACK partition instead of
# 10 and 1.3x the speed; under it `select` ties blocks 2, 1 with 2, 1, 3, 4, whose
# RMS is lower (README "ReLUs fused into the residual ADDs").
DEFAULT_RECIPES: Mapping[str, QuantRecipe] = MappingProxyType(
    {
        "int8": QuantRecipe(float_blocks=("block2", "block1", "block3", "block4"), fuse_relus=True),
        "dynamic": QuantRecipe(
            float_blocks=("block1", "block3", "block2"),
            float_ops=("DEPTHWISE_CONV_2D",),
            equalize_alpha=0.5,
        ),
    }
)
QUANTIZED_VARIANTS = tuple(DEFAULT_RECIPES)


def _segment(name: str) -> str:
    # Keras 3 traces each layer under a name scope with a `_<n>` suffix
    # (block1_conv1 -> block1_conv1_1, conv2d_1 -> conv2d_1_2); drop one.
    return re.sub(r"_\d+$", "", name)


# Keras numbers unnamed layers per process: a model built after another one in
# the same process (levers, sweeps, a test session) has `conv2d_4`.. and `add_12`..
# where a fresh process has `conv2d`.. and `add`... Indices count from the
# model's own first one of each kind.
_AUTO_NAMED = re.compile(r"(conv2d|batch_normalization|add)(?:_(\d+))?")


def name_bases(tensor_names: Iterable[str]) -> dict[str, int]:
    """The smallest index of each auto-named layer kind in a model's tensor names.

    Args:
        tensor_names: every tensor name of one TFLite model (`tensor_names`).

    Returns:
        {"conv2d": i, "batch_normalization": j, "add": k} for the kinds present:
        what `block_of` subtracts so `conv2d_4` is the model's first residual conv.
    """
    bases: dict[str, int] = {}
    for name in tensor_names:
        for s in name.split(";")[0].split("/"):
            m = _AUTO_NAMED.fullmatch(_segment(s))
            if m:
                bases[m[1]] = min(bases.get(m[1], int(m[2] or 0)), int(m[2] or 0))
    return bases


def block_of(tensor_name: str, *, bases: Mapping[str, int] | None = None) -> str | None:
    """The Xception block ("block1".."block14") or "head" a TFLite tensor belongs to.

    Read from the op's first fused name ("model/xception/block3_sepconv1_act/Relu;...").
    `bases` (`name_bases` of the whole model) shifts the residual layers'
    auto-numbered names; None reads them as numbered from 0.
    None for tensors outside both (the input, QUANTIZE/DEQUANTIZE glue).
    """
    bases = bases or {}
    if re.fullmatch(r"StatefulPartitionedCall(_\d+)?:\d+", tensor_name):
        # The converter names the model's output tensors after the signature's
        # call; the op producing the logits is the head's last one.
        return HEAD
    segments = [_segment(s) for s in tensor_name.split(";")[0].split("/")]
    for s in segments:
        m = re.match(r"block(\d+)_", s)
        if m:
            return f"block{int(m.group(1))}"
    for s in segments:
        m = _AUTO_NAMED.fullmatch(s)
        if not m:
            continue
        index = int(m[2] or 0) - bases.get(m[1], 0)
        if m[1] == "add":
            if 0 <= index <= 12:  # add_k closes block k + 2 (see _RESIDUAL_CONV_BLOCKS)
                return f"block{index + 2}"
        elif 0 <= index < len(_RESIDUAL_CONV_BLOCKS):
            return f"block{_RESIDUAL_CONV_BLOCKS[index]}"
    if any(_HEAD_LAYERS.match(s) for s in segments[1:]):
        return HEAD
    return None


@contextlib.contextmanager
def _quiet_native() -> Iterator[None]:
    """Silence stdout and file descriptor 2 for the block, unless CLOTHING_VERBOSE=1.

    mlir_quantize prints its flags from C++ ("fully_quantize: 0, ...") and
    ai-edge-quantizer always draws a progress bar; neither is the product's line.
    """
    if os.environ.get("CLOTHING_VERBOSE", "") == "1":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def tensor_names(model_content: bytes) -> list[str]:
    """Every tensor name of a TFLite model, in index order."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_content))
    return [_text(t.name) for t in model.subgraphs[0].tensors]


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def nodes_of_blocks(names: Sequence[str], blocks: Iterable[str]) -> list[str]:
    """The tensor names in `names` that belong to any of `blocks` (see `block_of`)."""
    wanted = set(blocks)
    bases = name_bases(names)
    return [n for n in names if block_of(n, bases=bases) in wanted]


def calibrate(model: Any, representative_dataset: RepresentativeDataset) -> bytes:
    """The float TFLite model with activation min/max from `representative_dataset`.

    Raises:
        ConvertError: the converter failed.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter._experimental_calibrate_only = True  # what QuantizationDebugger does
    return run_converter(converter, failure="int8 calibration failed")


def run_converter(converter: Any, *, failure: str) -> bytes:
    """`converter.convert()` (a `tf.lite.TFLiteConverter`), quietly.

    Keras 3's export (used by from_keras_model) prints every captured variable
    to stdout; stdout is kept for the command's own output. With float I/O the
    converter warns that the (float) inputs carry no quantization statistics,
    which is the intent.

    Raises:
        ConvertError: "`failure`: <the converter's message>".
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    except Exception as exc:  # tf.lite's ConverterError, or ValueError from the tracer
        raise ConvertError(f"{failure}: {exc}") from None


def quantize_calibrated(calibrated: bytes, *, float_blocks: Sequence[str] = ()) -> bytes:
    """int8 weights and activations, float in/out; `float_blocks`' operators stay float32.

    Raises:
        ConvertError: a listed block has no operator in the model, or the quantizer failed.
    """
    from tensorflow.lite.python import convert as tflite_convert

    names = tensor_names(calibrated)
    denylist = nodes_of_blocks(names, float_blocks)
    bases = name_bases(names)
    missing = sorted(set(float_blocks) - {block_of(n, bases=bases) for n in denylist})
    if missing:
        raise ConvertError(
            f"`float_blocks` names blocks this model does not have: {missing} "
            "(an Xception base is expected)."
        )
    try:
        with _quiet_native(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            content = tflite_convert.mlir_quantize(
                calibrated, fully_quantize=False, denylisted_nodes=denylist or None
            )
    except Exception as exc:
        raise ConvertError(f"int8 quantization failed: {exc}") from None
    return bytes(content)


def tflite_logits(model_content: bytes, images: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """Run a float-in/float-out TFLite model on (n, H, W, 3) float32 images -> (n, k) logits."""
    from inference import make_interpreter

    interpreter, _ = make_interpreter(model_content, num_threads=threads)
    i_in = interpreter.get_input_details()[0]["index"]
    i_out = interpreter.get_output_details()[0]["index"]
    out = []
    for x in images:
        interpreter.set_tensor(i_in, x[np.newaxis].astype(np.float32))
        interpreter.invoke()
        out.append(np.array(interpreter.get_tensor(i_out)[0], dtype=np.float32))
    return np.stack(out)


def agreement_pct(logits: np.ndarray, reference: np.ndarray) -> float:
    """Top-1 agreement in %, (n, k) against (n, k)."""
    return float(100.0 * np.mean(logits.argmax(axis=1) == reference.argmax(axis=1)))


def model_blocks(model_content: bytes) -> list[str]:
    """The blocks (see `block_of`) a TFLite model's tensors belong to, in network order."""
    names = tensor_names(model_content)
    bases = name_bases(names)
    found = {b for n in names if (b := block_of(n, bases=bases)) is not None}
    return sorted(found, key=_block_order)


def block_sensitivity(
    blocks: Sequence[str],
    quantize: Callable[[tuple[str, ...]], bytes],
    images: np.ndarray,
    reference_logits: np.ndarray,
) -> dict[str, float]:
    """RMS logit difference against `reference_logits` with only one block quantized.

    Args:
        blocks: every block of the model (`model_blocks`).
        quantize: float blocks -> a quantized TFLite model with those blocks in float32.
        images: (n, H, W, 3) float32 preprocessed validation images.
        reference_logits: (n, k) the Keras model's logits on `images`.

    Returns:
        block -> RMS logit difference (logit units) of the model where only that
        block is quantized: what quantizing the block costs on its own.
    """
    result = {}
    for block in blocks:
        logits = tflite_logits(quantize(tuple(b for b in blocks if b != block)), images)
        result[block] = float(np.sqrt(np.mean((logits - reference_logits) ** 2)))
    return result


def _block_order(name: str) -> int:
    return 99 if name == HEAD else int(name.removeprefix("block"))


@dataclass(frozen=True)
class Selection:
    """`choose_float_blocks`' answer and the measurements behind it."""

    float_blocks: tuple[str, ...]
    reached_target: bool
    curve: tuple[tuple[tuple[str, ...], float], ...]  # (float blocks, validation agreement %)


def choose_float_blocks(
    sensitivity: Mapping[str, float],
    agreement_of: Callable[[tuple[str, ...]], float],
    *,
    target_pct: float,
    max_blocks: int = 6,
) -> Selection:
    """Keep the most sensitive blocks in float, one more at a time, until the target.

    Args:
        sensitivity: block -> RMS logit difference when only it is int8 (higher: worse).
        agreement_of: float blocks -> validation agreement (%) of that recipe.
        target_pct: stop at the first recipe whose agreement is >= this.
        max_blocks: never keep more than this many blocks in float (speed).

    Returns:
        The first recipe reaching the target; if none does, the best one tried
        (fewest blocks among equals), with `reached_target` False.
    """
    ranked = sorted(sensitivity, key=lambda b: (-sensitivity[b], _block_order(b)))
    curve: list[tuple[tuple[str, ...], float]] = []
    for k in range(min(max_blocks, len(ranked)) + 1):
        blocks = tuple(ranked[:k])
        agreement = agreement_of(blocks)
        curve.append((blocks, agreement))
        if agreement >= target_pct:
            return Selection(blocks, True, tuple(curve))
    best = max(curve, key=lambda c: (c[1], -len(c[0])))
    return Selection(best[0], False, tuple(curve))


def dynamic_range(
    float_model: bytes, *, float_blocks: Sequence[str] = (), float_ops: Sequence[str] = ()
) -> bytes:
    """Dynamic-range int8 of a float32 TFLite model; `float_blocks`' operators and
    every operator of a type in `float_ops` (see `FLOAT_OPS`) stay float32.

    Google's AI Edge Quantizer (`ai-edge-quantizer`, the `quantize` extra): int8
    per-channel weights, activations quantized on the fly by the runtime
    (recipe `dynamic_wi8_afp32`), with the listed blocks' operators left out
    (algorithm `no_quantize`, matched by the op's exact output tensor name).

    Raises:
        ConvertError: ai-edge-quantizer is not installed, or it failed.
    """
    try:
        from ai_edge_quantizer import quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import TFLOperationName
    except ImportError:
        raise ConvertError(
            "This dynamic-range recipe needs ai-edge-quantizer: "
            "pip install '.[quantize]' (or pass --dynamic-float-blocks none --dynamic-float-ops "
            "none --dynamic-bias-correction no for the TFLite converter's own recipe)."
        ) from None
    qt = quantizer.Quantizer(bytearray(float_model))
    qt.add_dynamic_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=8)
    for name in nodes_of_blocks(tensor_names(float_model), float_blocks):
        qt.update_quantization_recipe(
            # An op's scope is its output tensor names, each followed by ";"
            # (ai_edge_quantizer/utils/tfl_flatbuffer_utils.py, get_op_scope).
            regex="^" + re.escape(name) + ";$",
            operation_name=TFLOperationName.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    for op in float_ops:
        qt.update_quantization_recipe(
            regex=".*",
            operation_name=getattr(TFLOperationName, op),
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    try:
        with _quiet_native():
            result = qt.quantize(enable_progress_report=False, enable_progress_bar=False)
    except Exception as exc:  # the quantizer raises ValueError/RuntimeError of its own
        raise ConvertError(f"dynamic-range quantization failed: {exc}") from None
    return bytes(result.quantized_model)
