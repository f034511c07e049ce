"""Selective quantization (issue 13): block names, the selection rule, recipes, thresholds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert import ConvertConfig, ConvertError, convert_model
from convert._check import (
    DEFAULT_THRESHOLDS,
    CheckConfig,
    Latency,
    VariantResult,
    _with_speed_failures,
    speedup_1thread,
)
from convert._quantize import (
    BLOCKS,
    DEFAULT_RECIPES,
    FLOAT_OPS,
    QuantRecipe,
    agreement_pct,
    block_of,
    calibrate,
    choose_float_blocks,
    dynamic_range,
    model_blocks,
    name_bases,
    quantize_calibrated,
    tflite_logits,
)
from convert._select import SelectConfig, select_recipes
from tests.conftest import LABELS, TINY_SIZE, SignalRun, make_dataset

PREFIX = "clothing_xception_1/xception_1/"


# -- block names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "block"),
    [
        (PREFIX + "block1_conv1_act_1/Relu;" + PREFIX + "block1_conv1_1/convolution", "block1"),
        (PREFIX + "block14_sepconv2_act_1/Relu", "block14"),
        (PREFIX + "block3_sepconv1_1/separable_conv2d/depthwise1", "block3"),
        # the unnamed residual branches: conv2d -> block2, conv2d_1 -> block3 ... conv2d_3 -> 13
        (
            PREFIX + "batch_normalization_1/batchnorm/add_1;" + PREFIX + "conv2d_1/convolution",
            "block2",
        ),
        (PREFIX + "batch_normalization_1_2/batchnorm/add_1", "block3"),
        (PREFIX + "conv2d_2_1/convolution", "block4"),
        (PREFIX + "conv2d_3_1/convolution", "block13"),
        # add -> closes block 2, add_10 -> block 12, add_11 -> block 13
        (PREFIX + "add_1/Add", "block2"),
        (PREFIX + "add_10_1/Add", "block12"),
        (PREFIX + "add_11_1/Add", "block13"),
        ("clothing_xception_1/inner_0_1/MatMul;clothing_xception_1/inner_0_1/Relu", "head"),
        ("clothing_xception_1/mean_logits_1/Add_2", "head"),
        ("functional_1/dense_1/MatMul", "head"),
        ("serving_default_image:0", None),
        ("StatefulPartitionedCall_1:0", "head"),  # the output: the head's last op
        ("clothing_xception_1/xception_1/block1_conv1_1/convolution/ReadVariableOp", "block1"),
    ],
)
def test_block_of(tensor: str, block: str | None) -> None:
    assert block_of(tensor) == block


@pytest.mark.parametrize(
    ("tensor", "block"),
    [
        # the same model built after another in one process: numbering starts later
        (PREFIX + "conv2d_4_1/convolution", "block2"),
        (PREFIX + "conv2d_7_1/convolution", "block13"),
        (PREFIX + "batch_normalization_9_1/FusedBatchNormV3", "block3"),
        (PREFIX + "add_12_1/Add", "block2"),
        (PREFIX + "add_23_1/Add", "block13"),
    ],
)
def test_block_of_counts_from_the_models_own_first_layer(tensor: str, block: str) -> None:
    names = [
        *(PREFIX + f"conv2d_{i}_1/convolution" for i in range(4, 8)),
        *(PREFIX + f"batch_normalization_{i}_1/FusedBatchNormV3" for i in range(8, 12)),
        *(PREFIX + f"add_{i}_1/Add" for i in range(12, 24)),
    ]
    bases = name_bases(names)
    assert bases == {"conv2d": 4, "batch_normalization": 8, "add": 12}
    assert block_of(tensor, bases=bases) == block
    assert block_of(tensor) != block  # read as numbered from 0, it would be wrong


# -- the selection rule -----------------------------------------------------------------

SENSITIVITY = {"block1": 0.19, "block2": 0.28, "block3": 0.17, "block5": 0.08, "head": 0.07}


def fake_agreement(table: dict[tuple[str, ...], float]) -> Callable[[tuple[str, ...]], float]:
    return lambda blocks: table[tuple(sorted(blocks))]


@pytest.mark.parametrize(
    ("table", "target", "max_blocks", "chosen", "reached", "tried"),
    [
        # already at the target: nothing kept in float, one measurement
        ({(): 99.5}, 99.0, 6, (), True, 1),
        # most sensitive first: block2, then block1
        (
            {(): 95.0, ("block2",): 97.0, ("block1", "block2"): 99.1},
            99.0,
            6,
            ("block2", "block1"),
            True,
            3,
        ),
        # never reached within max_blocks: the best tried, fewest blocks among equals
        (
            {(): 95.0, ("block2",): 97.0, ("block1", "block2"): 97.0},
            99.0,
            2,
            ("block2",),
            False,
            3,
        ),
        # non-monotone curve: the best, not the last
        (
            {
                (): 95.0,
                ("block2",): 96.0,
                ("block1", "block2"): 98.5,
                ("block1", "block2", "block3"): 95.9,
            },
            99.0,
            3,
            ("block2", "block1"),
            False,
            4,
        ),
    ],
)
def test_choose_float_blocks(
    table: dict[tuple[str, ...], float],
    target: float,
    max_blocks: int,
    chosen: tuple[str, ...],
    reached: bool,
    tried: int,
) -> None:
    selection = choose_float_blocks(
        SENSITIVITY, fake_agreement(table), target_pct=target, max_blocks=max_blocks
    )
    assert selection.float_blocks == chosen
    assert selection.reached_target is reached
    assert len(selection.curve) == tried
    assert selection.curve[0] == ((), table[()])


def test_choose_float_blocks_breaks_ties_in_network_order() -> None:
    calls: list[tuple[str, ...]] = []

    def agreement(blocks: tuple[str, ...]) -> float:
        calls.append(blocks)
        return 100.0 if len(blocks) == 2 else 90.0

    choose_float_blocks({"block7": 0.1, "block3": 0.1, "head": 0.2}, agreement, target_pct=99)
    assert calls == [(), ("head",), ("head", "block3")]


# -- recipes and thresholds -------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (("block15",), "Received: float_blocks=('block15',)"),
        (("none",), "Received: float_blocks=('none',)"),
        (["block1"], "Received: float_blocks=['block1']"),
        (
            ("block1", "block1"),
            "must not repeat a block. Received: float_blocks=('block1', 'block1')",
        ),
    ],
)
def test_quant_recipe_rejects_bad_blocks(blocks: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"`float_blocks`") as info:
        QuantRecipe(float_blocks=blocks)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (("CONV_2D",), "from ('DEPTHWISE_CONV_2D',). Received: float_ops=('CONV_2D',)"),
        (["DEPTHWISE_CONV_2D"], "Received: float_ops=['DEPTHWISE_CONV_2D']"),
        (
            ("DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D"),
            "must not repeat an op. Received: float_ops=('DEPTHWISE_CONV_2D', 'DEPTHWISE_CONV_2D')",
        ),
    ],
)
def test_quant_recipe_rejects_bad_ops(ops: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"`float_ops`") as info:
        QuantRecipe(float_ops=ops)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "alpha",
    [0, 0.0, -0.5, 1.5, True, "0.5", float("nan")],
)
def test_quant_recipe_rejects_bad_equalize_alpha(alpha: Any) -> None:
    with pytest.raises(ValueError, match=r"`equalize_alpha` must be None or in \(0, 1\]. Received"):
        QuantRecipe(equalize_alpha=alpha)


def test_equalized_dynamic_needs_images_and_changes_the_model(
    signal_models: dict[str, Any], signal_run: SignalRun
) -> None:
    import keras

    from convert._export import tflite_bytes

    model = keras.models.load_model(signal_run.train_dir / "model.keras", compile=False)
    x = signal_models["x"]
    recipe = QuantRecipe(float_ops=("DEPTHWISE_CONV_2D",), equalize_alpha=0.5)
    with pytest.raises(ValueError, match="Variant 'dynamic' needs a `representative_dataset`"):
        tflite_bytes(model, variant="dynamic", recipe=recipe)

    def dataset() -> Any:
        return ([v[np.newaxis]] for v in x[::3])

    plain = tflite_bytes(model, variant="dynamic", recipe=QuantRecipe(float_ops=recipe.float_ops))
    equalized = tflite_bytes(
        model, variant="dynamic", recipe=recipe, representative_dataset=dataset
    )
    assert equalized != plain  # the weights moved
    # and the answers stayed: the transform is exact, only rounding differs
    assert agreement_pct(tflite_logits(equalized, x), signal_models["keras"]) >= 95


def test_default_recipes_name_known_blocks() -> None:
    assert set(DEFAULT_RECIPES) == {"int8", "dynamic"}
    for recipe in DEFAULT_RECIPES.values():
        assert set(recipe.float_blocks) <= set(BLOCKS)
    assert DEFAULT_RECIPES["int8"].float_ops == ()  # the TFLite converter keeps no op type out
    assert set(DEFAULT_RECIPES["dynamic"].float_ops) <= set(FLOAT_OPS)


def test_float_ops_apply_to_dynamic_only() -> None:
    from convert._export import tflite_bytes

    with pytest.raises(ValueError, match="`float_ops` applies to the dynamic variant only"):
        tflite_bytes(
            object(),
            variant="int8",
            representative_dataset=lambda: iter(()),
            recipe=QuantRecipe(float_ops=("DEPTHWISE_CONV_2D",)),
        )


@pytest.mark.parametrize(
    ("variant", "agreement", "drop", "speedup"),
    [("int8", 98.5, 0.5, 2.5), ("dynamic", 99.0, 1.5, None), ("float16", 99.5, None, None)],
)
def test_default_thresholds_of_issue_13(
    variant: str, agreement: float, drop: float | None, speedup: float | None
) -> None:
    threshold = DEFAULT_THRESHOLDS[variant]
    assert threshold.min_agreement_pct == agreement
    assert threshold.max_accuracy_drop_pts == drop
    assert threshold.min_speedup_1thread == speedup
    assert CheckConfig(train_dir=Path("t"), out_dir=Path("o")).thresholds[variant] == threshold


def result(variant: str, ms_1thread: float | None) -> VariantResult:
    latency = () if ms_1thread is None else (Latency("ai-edge-litert 2.3.0", 1, ms_1thread, 0.0),)
    return VariantResult(
        variant=variant,
        bundle=Path(variant),
        runtime="ai-edge-litert 2.3.0",
        size_bytes=1,
        n_images=1,
        agreement_pct=100.0,
        max_abs_logit_diff=0.0,
        accuracy_pct=None,
        accuracy_delta_pts=None,
        load_ms=1.0,
        latency=latency,
        reference_latency=(),
        loads_with=(),
        failures=(),
    )


@pytest.mark.parametrize(
    ("float32_ms", "int8_ms", "speedup", "failures"),
    [
        (40.0, 10.0, 4.0, ()),
        (40.0, 16.0, 2.5, ()),
        (40.0, 20.0, 2.0, ("1-thread speedup over float32 2.00x < 2.5x",)),
        (None, 20.0, None, ()),  # float32 not checked in this run: no speed bar
    ],
)
def test_int8_speed_bar(
    float32_ms: float | None, int8_ms: float, speedup: float | None, failures: tuple[str, ...]
) -> None:
    results = [result("int8", int8_ms)]
    if float32_ms is not None:
        results.insert(0, result("float32", float32_ms))
    config = CheckConfig(train_dir=Path("t"), out_dir=Path("o"))
    checked = _with_speed_failures(config, results)
    assert speedup_1thread(results[-1], results) == speedup
    assert checked[-1].failures == failures
    assert checked[-1].passed is (not failures)


# -- conversions of the tiny signal model ---------------------------------------------


@pytest.fixture(scope="module")
def signal_models(signal_run: SignalRun) -> dict[str, Any]:
    """The signal model's calibrated and float32 TFLite models, with Keras logits."""
    import keras

    from inference import preprocess_file

    model = keras.models.load_model(signal_run.train_dir / "model.keras", compile=False)
    x = np.stack([preprocess_file(p, image_size=TINY_SIZE) for p in signal_run.test_paths])
    calibrated = calibrate(model, lambda: ([v[np.newaxis]] for v in x[::3]))
    float32 = (signal_run.bundle / "model.tflite").read_bytes()
    return {
        "x": x,
        "keras": np.asarray(model.predict(x, verbose=0)),
        "cal": calibrated,
        "f32": float32,
    }


def test_every_block_float_is_the_float_model(signal_models: dict[str, Any]) -> None:
    """Denylisting every block must leave float32 compute: the names really match."""
    x, keras_logits = signal_models["x"], signal_models["keras"]
    blocks = tuple(model_blocks(signal_models["cal"]))
    assert set(blocks) == set(BLOCKS)
    int8_all_float = tflite_logits(
        quantize_calibrated(signal_models["cal"], float_blocks=blocks), x
    )
    dynamic_all_float = tflite_logits(dynamic_range(signal_models["f32"], float_blocks=blocks), x)
    assert np.max(np.abs(int8_all_float - keras_logits)) < 1e-3
    assert np.max(np.abs(dynamic_all_float - keras_logits)) < 1e-3


def test_quantized_recipes_agree_with_keras_at_tiny_scale(signal_models: dict[str, Any]) -> None:
    x, keras_logits = signal_models["x"], signal_models["keras"]
    top1 = keras_logits.argmax(axis=1)
    for blocks in [(), ("block2", "block1", "block3")]:
        int8 = tflite_logits(quantize_calibrated(signal_models["cal"], float_blocks=blocks), x)
        dynamic = tflite_logits(dynamic_range(signal_models["f32"], float_blocks=blocks), x)
        # logits spread ~3 on this model: quantization noise must not flip its answers
        assert (int8.argmax(axis=1) == top1).mean() >= 0.9
        assert (dynamic.argmax(axis=1) == top1).mean() >= 0.9


def test_unknown_block_is_refused(signal_models: dict[str, Any]) -> None:
    with pytest.raises(ConvertError, match=r"blocks this model does not have: \['block9'\]"):
        # a model without block9: the head-only Keras model's float TFLite
        quantize_calibrated(_head_only_calibrated(), float_blocks=("block9",))


def _weight_dtypes(model_content: bytes, op_name: str) -> set[str]:
    """The dtypes of the constant weight inputs of every `op_name` operator."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=model_content,
        # no XNNPACK: its DELEGATE nodes would hide the operators
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    dtypes = set()
    for op in interpreter._get_ops_details():
        if op["op_name"] == op_name:
            weights = tensors[op["inputs"][1]]
            dtypes.add(np.dtype(weights["dtype"]).name)
    return dtypes


def test_dynamic_float_ops_keep_depthwise_weights_float(signal_models: dict[str, Any]) -> None:
    """The default dynamic recipe's op list really reaches the quantizer."""
    x, keras_logits = signal_models["x"], signal_models["keras"]
    everything = dynamic_range(signal_models["f32"])
    depthwise_float = dynamic_range(signal_models["f32"], float_ops=("DEPTHWISE_CONV_2D",))
    assert _weight_dtypes(everything, "DEPTHWISE_CONV_2D") == {"int8"}
    assert _weight_dtypes(depthwise_float, "DEPTHWISE_CONV_2D") == {"float32"}
    assert _weight_dtypes(depthwise_float, "CONV_2D") == {"int8"}  # the rest stays quantized
    top1 = keras_logits.argmax(axis=1)
    assert (tflite_logits(depthwise_float, x).argmax(axis=1) == top1).mean() >= 0.9


def _head_only_calibrated() -> bytes:
    import keras

    inputs = keras.Input(shape=(4,))
    outputs = keras.layers.Dense(3, name="logits_0")(inputs)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    return calibrate(
        model, lambda: ([rng.normal(size=(1, 4)).astype(np.float32)] for _ in range(4))
    )


def test_recipe_is_recorded_in_the_manifest(
    signal_run: SignalRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import convert._export
    from convert._equalize import equalized_on as real
    from convert._fuse import fused_relus as real_fuse

    equalizations: list[float] = []

    def spy(model: Any, dataset: Any, *, alpha: float) -> Any:
        equalizations.append(alpha)
        return real(model, dataset, alpha=alpha)

    monkeypatch.setattr(convert._export, "equalized_on", spy)
    fusions: list[str] = []

    def fuse_spy(model: Any) -> Any:
        fusions.append(model.name)
        return real_fuse(model)

    monkeypatch.setattr(convert._export, "fused_relus", fuse_spy)
    data = make_dataset(tmp_path / "data", classes=LABELS[:3], per_class=2, splits=("train",))
    recipes = {
        "int8": QuantRecipe(float_blocks=("block1",), fuse_relus=True),
        "dynamic": QuantRecipe(
            float_blocks=(),
            float_ops=("DEPTHWISE_CONV_2D",),
            equalize_alpha=0.5,
            bias_correction=True,
        ),
    }
    convert_model(
        ConvertConfig(
            train_dir=signal_run.train_dir,
            out_dir=tmp_path / "bundles",
            variants=("int8", "dynamic", "float32"),
            calibration_dir=data / "train",
            calibration_size=4,
            recipes=recipes,
        )
    )

    def manifest(variant: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (tmp_path / "bundles" / variant / "manifest.json").read_text()
        )
        return data

    assert manifest("int8")["converter"]["float32_blocks"] == "block1"
    assert manifest("dynamic")["converter"]["float32_blocks"] == "none"
    assert manifest("dynamic")["converter"]["float32_ops"] == "DEPTHWISE_CONV_2D"
    assert "float32_ops" not in manifest("int8")["converter"]
    assert manifest("dynamic")["converter"]["equalize_alpha"] == "0.5"
    assert "equalize_alpha" not in manifest("int8")["converter"]
    assert equalizations == [0.5]  # dynamic only: not int8, not float32
    assert manifest("int8")["converter"]["fuse_relus"] == "true"
    assert "fuse_relus" not in manifest("dynamic")["converter"]
    assert manifest("dynamic")["converter"]["bias_correction"] == "true"
    assert "bias_correction" not in manifest("int8")["converter"]
    assert len(fusions) == 1  # int8 only
    assert "float32_blocks" not in manifest("float32")["converter"]
    ops = {op["name"] for op in manifest("int8")["operators"]}
    assert {"QUANTIZE", "DEQUANTIZE"} <= ops  # int8 compute with a float block in between


def test_equalization_of_a_model_without_separable_convs_names_the_way_out() -> None:
    import keras

    from convert._export import tflite_bytes

    inputs = keras.Input(shape=(TINY_SIZE, TINY_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    images = np.zeros((2, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    with pytest.raises(ConvertError, match="Pass --dynamic-equalize none"):
        tflite_bytes(
            model,
            variant="dynamic",
            recipe=QuantRecipe(equalize_alpha=0.5),
            representative_dataset=lambda: ([v[np.newaxis]] for v in images),
        )
    with pytest.raises(ValueError, match="applies to the int8 and dynamic variants only"):
        tflite_bytes(model, variant="float16", recipe=QuantRecipe(equalize_alpha=0.5))


def test_selection_equalizes_dynamic_on_calibration_images(
    tmp_path: Path, tiny_train_output: Path
) -> None:
    # tiny_train_output records no data_dir: no train split to equalize dynamic on
    data = make_dataset(tmp_path / "data", per_class=1, splits=("validation",))
    config = SelectConfig(
        train_dir=tiny_train_output,
        out_dir=tmp_path / "sel",
        variants=("dynamic",),
        images_dir=data / "validation",
    )
    with pytest.raises(ConvertError, match="dynamic needs calibration images"):
        select_recipes(config)
    assert not (tmp_path / "sel").exists()


def test_selection_refuses_the_test_split(tmp_path: Path, tiny_train_output: Path) -> None:
    data = make_dataset(tmp_path / "data", per_class=1)
    metrics = json.loads((tiny_train_output / "metrics.json").read_text())
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "model.keras").symlink_to(tiny_train_output / "model.keras")
    (train_dir / "metrics.json").write_text(json.dumps({**metrics, "data_dir": str(data)}))
    config = SelectConfig(train_dir=train_dir, out_dir=tmp_path / "sel", images_dir=data / "test")
    with pytest.raises(ConvertError, match="is the test split: it measures"):
        select_recipes(config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": ("float16",)}, "Received: variants=('float16',)"),
        ({"max_blocks": 0}, "`max_blocks` must be an int >= 1. Received: max_blocks=0"),
        ({"targets": {"int8": 101}}, "Received: targets['int8']=101"),
        (
            {"int8_fuse_relus": "no"},
            "`int8_fuse_relus` must be a bool. Received: int8_fuse_relus='no'",
        ),
    ],
)
def test_select_config_rejects_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        SelectConfig(train_dir=Path("t"), out_dir=Path("o"), **overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("variant", "fuse_flag", "ops", "alpha", "fuse", "flags"),
    [
        ("dynamic", True, ["DEPTHWISE_CONV_2D"], 0.5, False, "--dynamic-float-blocks block1"),
        ("dynamic", False, ["DEPTHWISE_CONV_2D"], 0.5, False, "--dynamic-float-blocks block1"),
        ("int8", True, [], None, True, "--int8-float-blocks block1"),
        ("int8", False, [], None, False, "--int8-float-blocks block1 --int8-fuse-relus no"),
    ],
)
def test_selection_json_records_the_recipe_the_blocks_were_chosen_under(
    variant: str,
    fuse_flag: bool,
    ops: list[str],
    alpha: float | None,
    fuse: bool,
    flags: str,
) -> None:
    from convert._quantize import Selection
    from convert._select import VariantSelection, selection_to_json

    config = SelectConfig(train_dir=Path("t"), out_dir=Path("o"), int8_fuse_relus=fuse_flag)
    chosen = VariantSelection(
        variant=variant,
        target_pct=99.5,
        sensitivity={"block1": 0.2},
        selection=Selection(("block1",), True, ((("block1",), 99.71),)),
        seconds=1.0,
        recipe=config.recipe(variant),
    )
    record = selection_to_json([chosen])[variant]
    assert (
        record["float_blocks"],
        record["float_ops"],
        record["equalize_alpha"],
        record["fuse_relus"],
    ) == (["block1"], ops, alpha, fuse)
    assert chosen.convert_flags == flags


@pytest.mark.parametrize("fuse", [True, False])
def test_selection_quantizes_int8_with_the_fusion_asked_for(
    monkeypatch: pytest.MonkeyPatch, tiny_train_output: Path, tmp_path: Path, fuse: bool
) -> None:
    import convert._fuse
    import convert._select
    from convert._source import read_train_output

    fused: list[object] = []

    def spy(model: object) -> object:
        fused.append(model)
        return model

    monkeypatch.setattr(convert._fuse, "fused_relus", spy)
    monkeypatch.setattr(convert._select, "calibrate", lambda source, data: source)
    monkeypatch.setattr(
        convert._select, "_calibration_arrays", lambda variant, train, config: np.zeros((1,))
    )
    config = SelectConfig(train_dir=tiny_train_output, out_dir=tmp_path, int8_fuse_relus=fuse)
    train = read_train_output(tiny_train_output)
    convert._select._quantizer("int8", "keras model", train, config)
    assert fused == (["keras model"] if fuse else [])


def test_select_refuses_an_out_that_is_a_file_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convert._select import main

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--out", str(tmp_path / "afile")])
    assert info.value.code == 2
    assert "`out_dir` must be a folder (created if missing)" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def test_select_cli_refuses_fusion_without_int8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convert._select import main

    argv = [str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "dynamic"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--int8-fuse-relus", "no"])
    assert info.value.code == 2
    assert "--int8-fuse-relus applies to the int8 variant" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class _Converter:
    """A stand-in for tf.lite.TFLiteConverter: prints, warns, then answers or raises."""

    def __init__(self, outcome: bytes | Exception) -> None:
        self.outcome = outcome

    def convert(self) -> bytes:
        import warnings

        print("captured variables ...")
        warnings.warn("Statistics for quantized inputs were expected", stacklevel=1)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "failure", "message"),
    [
        (b"tflite", "unused", None),
        (ValueError("bad op"), "int8 calibration failed", "int8 calibration failed: bad op"),
        (
            RuntimeError("trace"),
            "TFLite conversion to 'float16' failed",
            "TFLite conversion to 'float16' failed: trace",
        ),
    ],
)
def test_run_converter_is_quiet_and_names_the_failure(
    capsys: pytest.CaptureFixture[str],
    outcome: bytes | Exception,
    failure: str,
    message: str | None,
) -> None:
    import warnings

    from convert._quantize import run_converter

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected warning must be filtered, not shown
        if message is None:
            assert run_converter(_Converter(outcome), failure=failure) == b"tflite"
        else:
            with pytest.raises(ConvertError) as info:
                run_converter(_Converter(outcome), failure=failure)
            assert str(info.value) == message
    assert capsys.readouterr().out == ""
