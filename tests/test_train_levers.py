"""Fast tests of the accuracy levers: cached views, ensembles, regularization,
the seed recipe flag, the lever/size tables and the robustness command.

Tiny generated data, Xception(weights=None) at 71 px (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_SIZE, make_image
from tests.test_train import tiny_config
from train import TrainConfig, train_model
from train.__main__ import build_parser, config_from_args, lever_values, main
from train.config import SEED_RECIPE, TRAIN_VIEWS
from train.features import VIEWS, CacheKey, FeatureCache, extract_features, load_preprocessed
from train.levers import (
    format_levers,
    format_sizes,
    measure_levers,
    measure_sizes,
    plot_levers,
    plot_sizes,
    recipes,
    size_ensembles,
)
from train.model import build_base, build_head, compile_model, feature_extractor, head_logits
from train.robustness import jpeg, page_upload


def _base_and_extractor() -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    base = build_base(image_size=TINY_SIZE, base_weights="none")
    return base, feature_extractor(base)


@pytest.mark.parametrize("view", [v for v in VIEWS if v != "plain"])
def test_view_features_are_cached_once_and_differ_from_plain(
    tmp_path: Path, tiny_dataset: Path, view: str
) -> None:
    _, extractor = _base_and_extractor()
    paths = sorted((tiny_dataset / "train").rglob("*.jpg"))[:5]
    plain_key, view_key = CacheKey("w" * 64, TINY_SIZE), CacheKey("w" * 64, TINY_SIZE, view=view)
    assert plain_key.digest() != view_key.digest()  # the view is part of the key
    plain = extract_features(
        paths, extractor=extractor, cache=FeatureCache(tmp_path, plain_key), progress=False
    )
    first = extract_features(
        paths, extractor=extractor, cache=FeatureCache(tmp_path, view_key), progress=False
    )
    again = extract_features(
        paths, extractor=extractor, cache=FeatureCache(tmp_path, view_key), progress=False
    )
    assert (plain.computed, first.computed, again.computed) == (5, 5, 0)  # reused, no base pass
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert not np.allclose(first.vectors, plain.vectors)


@pytest.mark.parametrize(
    ("view", "constant", "value"),
    [
        ("jpeg", "JPEG_VIEW_QUALITY", 90),
        ("crop", "CROP_FRACTION", 0.9),
        ("flip_crop", "CROP_FRACTION", 0.9),
        ("small", "SMALL_FACTOR", 0.25),
    ],
)
def test_a_views_numbers_are_part_of_its_cache_key(
    monkeypatch: pytest.MonkeyPatch, view: str, constant: str, value: float
) -> None:
    import train.features

    before = CacheKey("w" * 64, 150, view=view).digest()
    plain, flip = CacheKey("w" * 64, 150).digest(), CacheKey("w" * 64, 150, view="flip").digest()
    monkeypatch.setattr(train.features, constant, value)
    assert CacheKey("w" * 64, 150, view=view).digest() != before
    # views that do not use the number keep their folders
    assert CacheKey("w" * 64, 150).digest() == plain
    assert CacheKey("w" * 64, 150, view="flip").digest() == flip


@pytest.mark.parametrize("field", ["keras_version", "pillow_version", "image_size"])
def test_what_the_features_depend_on_names_the_cache_folder(field: str) -> None:
    key = CacheKey("w" * 64, 150)
    other = dataclasses.replace(key, **{field: 151 if field == "image_size" else "0.0"})
    assert other.digest() != key.digest()


def test_the_plain_views_key_leaves_the_view_out() -> None:
    key = CacheKey("w" * 64, 150)
    before = {k: v for k, v in asdict(key).items() if k != "view"}  # the pre-views fields
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:24]
    assert key.digest() == expected


@pytest.mark.parametrize(
    ("view", "check"),
    [
        ("flip", lambda plain, out: np.array_equal(out, plain[:, ::-1])),
        ("flip_crop", lambda plain, out: out.shape == plain.shape),
        ("crop", lambda plain, out: out.shape == plain.shape and not np.array_equal(out, plain)),
        ("small", lambda plain, out: out.shape == plain.shape),
        # JPEG q60: the same photo, its pixels moved a little (0.05 = 3 of 255 levels)
        (
            "jpeg",
            lambda plain, out: (
                out.shape == plain.shape
                and not np.array_equal(out, plain)
                and float(np.abs(out - plain).mean()) < 0.05
            ),
        ),
    ],
)
def test_views_transform_the_photo(
    tmp_path: Path, view: str, check: Callable[[np.ndarray, np.ndarray], bool]
) -> None:
    # A left-to-right ramp: flipping it is exact at any nearest-resize grid of even width.
    ramp = np.tile(np.linspace(0, 255, 80, dtype=np.uint8)[None, :, None], (80, 1, 3))
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    plain = load_preprocessed(path, image_size=80)
    assert check(plain, load_preprocessed(path, image_size=80, view=view))


def test_unknown_view_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`view` must be one of"):
        CacheKey("w" * 64, TINY_SIZE, view="rotate")


def metrics_fingerprint(config: TrainConfig) -> str:
    """The base fingerprint of the one plain feature folder a run made."""
    (folder,) = [
        p
        for p in (config.cache_dir / "features").iterdir()
        if "view" not in json.loads((p / "meta.json").read_text())
    ]
    return str(json.loads((folder / "meta.json").read_text())["base_weights_sha256"])


def test_training_views_are_extracted_for_train_only(tmp_path: Path, tiny_dataset: Path) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=1, views=("flip", "crop"), ensemble=1)
    metrics = train_model(config)
    # 3 classes x 6 images of train/, once per view; validation and test only plain.
    assert metrics["timings"]["view_images_extracted"] == 2 * 18
    assert metrics["config"]["views"] == ["flip", "crop"]
    flip = FeatureCache(
        config.cache_dir, CacheKey(metrics_fingerprint(config), TINY_SIZE, view="flip")
    )
    assert len([p for p in flip.directory.rglob("*") if p.is_file()]) == 18 + 1  # + meta.json


@pytest.mark.parametrize("ensemble", [2, 3])
def test_ensemble_model_logits_are_the_mean_of_its_heads(
    tmp_path: Path, tiny_dataset: Path, ensemble: int
) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=2, ensemble=ensemble, views=())
    train_model(config)
    model = keras.models.load_model(config.output_dir / "model.keras")  # built-in layers only
    paths = sorted((tiny_dataset / "test").rglob("*.jpg"))
    images = np.stack([load_preprocessed(p, image_size=TINY_SIZE) for p in paths])
    pooled = keras.Model(model.inputs, model.get_layer("pooled").output).predict(images, verbose=0)
    per_head = []
    for i in range(ensemble):
        inner, logits = model.get_layer(f"inner_{i}"), model.get_layer(f"logits_{i}")
        per_head.append(keras.ops.convert_to_numpy(logits(inner(pooled))))
    assert not np.allclose(per_head[0], per_head[1])  # different heads, not copies
    full = model.predict(images, verbose=0)
    np.testing.assert_allclose(full, np.mean(per_head, axis=0), atol=1e-5)


def test_head_logits_averages_a_stacked_ensemble() -> None:
    keras.utils.set_random_seed(0)
    head = build_head(n_classes=4, size_inner=8, droprate=0.0, ensemble=3)
    x = np.random.default_rng(0).normal(size=(5, 2048)).astype(np.float32)
    stacked = head.predict(x, verbose=0)
    assert stacked.shape == (5, 3, 4)
    np.testing.assert_allclose(head_logits(head, x), stacked.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize(
    ("label_smoothing", "weight_decay", "optimizer"),
    [(0.0, 0.0, "Adam"), (0.1, 0.004, "AdamW"), (0.2, 0.0, "Adam")],
)
def test_regularization_reaches_the_loss_and_optimizer(
    label_smoothing: float, weight_decay: float, optimizer: str
) -> None:
    head = build_head(n_classes=3, size_inner=4, droprate=0.0)
    compile_model(
        head, learning_rate=1e-3, label_smoothing=label_smoothing, weight_decay=weight_decay
    )
    assert head.loss.get_config()["label_smoothing"] == label_smoothing
    assert type(head.optimizer).__name__ == optimizer
    # The smoothed loss of a perfectly confident right answer is > 0 exactly when smoothing.
    y = np.eye(3, dtype=np.float32)[[0]]
    confident = np.array([[50.0, 0.0, 0.0]], np.float32)
    assert (float(head.loss(y, confident)) > 1e-3) == (label_smoothing > 0)


def _cli(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--data-dir",
        str(data),
        "--output",
        str(tmp_path / "out"),
        "--image-size",
        "71",
        "--base-weights",
        "none",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--size-inner",
        "8",
        "--quiet",
        "--force",
        *extra,
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--recipe", "seed"], {**SEED_RECIPE, "views": []}),
        (["--recipe", "seed", "--ensemble", "2"], {**SEED_RECIPE, "views": [], "ensemble": 2}),
        (
            ["--views", "--ensemble", "1", "--monitor", "val_accuracy"],
            {"views": [], "ensemble": 1, "monitor": "val_accuracy", "label_smoothing": 0.0},
        ),
        (
            [
                "--views",
                "small",
                "--ensemble",
                "1",
                "--label-smoothing",
                "0.1",
                "--weight-decay",
                "0.01",
            ],
            {"views": ["small"], "label_smoothing": 0.1, "weight_decay": 0.01},
        ),
        (["--monitor", "val_loss"], {"monitor": "val_loss", "ensemble": TrainConfig().ensemble}),
    ],
)
def test_recipe_and_lever_flags_reach_the_config(
    tmp_path: Path, tiny_dataset: Path, flags: list[str], expected: dict[str, object]
) -> None:
    # As `python -m train` builds its config (train/__main__.py `_train`), without training.
    args = build_parser("train").parse_args(_cli(tmp_path, tiny_dataset, *flags))
    config = config_from_args(args, **lever_values(args))
    saved = config.to_json()  # what metrics.json keeps under "config"
    assert {k: saved[k] for k in expected} == expected


def test_the_trained_config_is_the_one_metrics_json_keeps(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    flags = ["--recipe", "seed", "--ensemble", "2"]
    assert main(_cli(tmp_path, tiny_dataset, *flags)) == 0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]
    args = build_parser("train").parse_args(_cli(tmp_path, tiny_dataset, *flags))
    expected = config_from_args(args, **lever_values(args)).to_json()
    assert saved == expected and saved["ensemble"] == 2


def test_bad_lever_flag_is_a_clean_error(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(tmp_path, tiny_dataset, "--ensemble", "0")) == 2
    err = capsys.readouterr().err
    assert "`ensemble` must be >= 1. Received: ensemble=0" in err
    assert "Traceback" not in err


def test_lever_rows_start_at_the_seed_and_ablate_one_lever_each() -> None:
    default = TrainConfig()
    listed = recipes(default)
    rows = dict(listed)
    assert listed[0] == ("seed recipe", SEED_RECIPE)
    (full,) = [o for n, o in listed if n.endswith("default recipe")]
    expected = {k: getattr(default, k) for k in SEED_RECIPE} | {"views": default.train_views}
    assert {k: full[k] for k in SEED_RECIPE} == expected
    ablations = [n for n in rows if n.startswith("default - ")]
    for name in ablations:
        lever = name.removeprefix("default - ")
        changed = {k for k in SEED_RECIPE if rows[name][k] != full[k]}
        assert changed == {lever}
        assert rows[name][lever] == SEED_RECIPE[lever]
    assert set(rows["default + every view"]["views"]) == set(TRAIN_VIEWS)
    recipes_as_sets = [json.dumps({"droprate": 0.2, **o}, sort_keys=True) for _, o in listed]
    assert len(set(recipes_as_sets)) == len(listed)  # no recipe trained twice


@pytest.mark.parametrize(("image_size", "ablates_views"), [(150, True), (299, False)])
def test_default_row_names_the_views_of_its_size(image_size: int, ablates_views: bool) -> None:
    """At 299 px the default trains on no view: no "default - views" row repeating it."""
    rows = dict(recipes(TrainConfig(image_size=image_size)))
    default = next(o for n, o in rows.items() if n.endswith("default recipe"))
    assert default["views"] == TrainConfig(image_size=image_size).train_views
    assert ("default - views" in rows) is ablates_views


def test_levers_leave_out_rows_whose_views_were_not_extracted(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """The default row trains on the JPEG view below 299 px: without it, it is listed, not run."""
    config = tiny_config(tmp_path, tiny_dataset, epochs=1)
    result = measure_levers(
        config, seeds=[1], views=("flip",), only=["seed recipe", "default recipe"]
    )
    assert [r["name"] for r in result["rows"]] == ["seed recipe"]
    assert result["left_out"] == ["default recipe"]


# Three validation images, true classes 0, 1, 2; each size alone gets one wrong,
# a different one, and their mean logits get all three right.
_TARGETS = np.array([0, 1, 2])
_BY_SIZE = {
    150: np.array([[2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 1.0]]),  # image 3 wrong
    299: np.array([[1.0, 2.0, 0], [0, 2.0, 0], [0, 0, 4.0]]),  # image 1 wrong
    224: np.array([[0, 5.0, 0], [5.0, 0, 0], [0, 0, 1.0]]),  # images 1 and 2 wrong
}


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([150, 299], {(150, 299): 1.0}),
        (
            [150, 224, 299],
            {(150, 224): 0.0, (150, 299): 1.0, (224, 299): 1 / 3, (150, 224, 299): 1 / 3},
        ),
        ([299], {}),
    ],
)
def test_size_ensembles_average_the_sizes_logits(
    sizes: list[int], expected: dict[tuple[int, ...], float]
) -> None:
    # Three seeds that differ: the table's logits, the same rows rolled by one
    # image, and uniform logits (argmax ties pick class 0: 1/3 right). Each
    # ensemble's seed i must average seed i of every size.
    flat = np.zeros((3, 3))
    logits = {s: [_BY_SIZE[s], np.roll(_BY_SIZE[s], 1, axis=0), flat] for s in sizes}
    targets = {s: _TARGETS for s in sizes}
    rows = size_ensembles(logits, targets, latency_ms={s: float(s) for s in sizes})
    for r in rows:
        members = tuple(r["sizes"])
        per_seed = [
            float(np.mean(np.mean([logits[s][i] for s in members], axis=0).argmax(1) == _TARGETS))
            for i in range(3)
        ]
        assert r["val_accuracy"] == pytest.approx(per_seed)
        assert r["val_accuracy"][0] == pytest.approx(expected[members])
        assert r["val_accuracy"][2] == pytest.approx(1 / 3)
        assert r["latency_ms"] == sum(r["sizes"])
    assert {tuple(r["sizes"]) for r in rows} == set(expected)


def test_size_ensembles_refuse_different_seed_counts() -> None:
    with pytest.raises(ValueError, match="one entry per seed"):
        size_ensembles(
            {150: [_BY_SIZE[150]], 299: [_BY_SIZE[299]] * 2},
            {150: _TARGETS, 299: _TARGETS},
            latency_ms={150: 1.0, 299: 2.0},
        )


def test_size_ensembles_need_the_same_validation_images() -> None:
    logits = {150: [_BY_SIZE[150]], 299: [_BY_SIZE[299]]}
    other = {150: _TARGETS, 299: np.array([0, 1, 1])}  # an image dropped at one size
    assert size_ensembles(logits, other, latency_ms={150: 1.0, 299: 2.0}) == []


def test_measure_sizes_adds_the_ensemble_of_its_sizes(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.levers

    seen: dict[str, Any] = {}

    def spy(logits: Any, targets: Any, *, latency_ms: Any) -> Any:
        seen.update(logits=logits, targets=targets)
        return size_ensembles(logits, targets, latency_ms=latency_ms)

    monkeypatch.setattr(train.levers, "size_ensembles", spy)
    config = tiny_config(tmp_path, tiny_dataset, epochs=1, ensemble=2)
    result = measure_sizes(config, sizes=[TINY_SIZE, 80], seeds=[1, 2], latency_runs=1)
    # the ensemble is built from each size's default-recipe logits, seed by seed
    for size_result in result["sizes"]:
        size = size_result["image_size"]
        accuracy = [
            float(np.mean(z.argmax(1) == seen["targets"][size])) for z in seen["logits"][size]
        ]
        assert accuracy == pytest.approx(size_result["default"]["val_accuracy"])
    (row,) = result["size_ensembles"]
    assert row["sizes"] == [TINY_SIZE, 80] and len(row["val_accuracy"]) == 2
    assert all(0.0 <= a <= 1.0 for a in row["val_accuracy"])
    assert row["latency_ms"] == pytest.approx(sum(s["latency_ms"] for s in result["sizes"]))


def test_lever_and_size_tables_and_plots(tmp_path: Path) -> None:
    row = {
        "name": "seed recipe",
        "val_accuracy_mean": 0.81,
        "val_accuracy_sd": 0.01,
        "val_loss_mean": 0.6,
        "tta_val_accuracy_mean": 0.82,
        "best_epoch": [3, 4],
    }
    levers = {"image_size": 150, "seeds": [1, 2], "n_images": {"validation": 341}, "rows": [row]}
    assert "| seed recipe | 0.8100 ± 0.0100 | 0.6000 | 0.8200 | [3, 4] |" in format_levers(levers)
    plot_levers(levers, tmp_path / "levers.png")
    sizes = {
        "seeds": [1],
        "sizes": [
            {
                "image_size": s,
                "seed": row,
                "default": row,
                "latency_ms": ms,
                "tta_latency_ms": 2 * ms,
            }
            for s, ms in ((150, 40.0), (299, 150.0))
        ],
    }
    assert "| 299 | 0.8100 | 0.8100 | 0.8200 | 150.0 | 300.0 |" in format_sizes(sizes)
    sizes["size_ensembles"] = [
        {"sizes": [150, 299], "val_accuracy_mean": 0.9, "val_accuracy_sd": 0.0, "latency_ms": 190.0}
    ]
    assert "| 150 + 299 (default heads, logits averaged) | | 0.9000 | | 190.0 | |" in format_sizes(
        sizes
    )
    plot_sizes(sizes, tmp_path / "sizes.png")
    for name in ("levers.png", "sizes.png"):
        assert Image.open(tmp_path / name).size[0] > 300


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1200, 900), 1000, (1000, 750)),
        ((600, 800), 1000, (600, 800)),
        ((500, 500), 100, (100, 100)),
    ],
)
def test_page_upload_shrinks_never_enlarges(
    tmp_path: Path, size: tuple[int, int], max_side: int, expected: tuple[int, int]
) -> None:
    data = make_image(tmp_path / "p.jpg", color=(200, 30, 30), size=size).read_bytes()
    out = Image.open(io.BytesIO(page_upload(data, max_side=max_side)))
    assert (out.format, out.size) == ("JPEG", expected)


@pytest.mark.parametrize("quality", [10, 60, 95])
def test_jpeg_reencoding_keeps_size_and_shrinks_with_quality(tmp_path: Path, quality: int) -> None:
    data = make_image(tmp_path / "p.jpg", color=(30, 200, 30), size=(120, 90)).read_bytes()
    out = jpeg(data, quality=quality)
    assert Image.open(io.BytesIO(out)).size == (120, 90)
    assert (len(out) < len(jpeg(data, quality=95))) == (quality < 95)


def test_robustness_command_reports_each_variant(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=1, ensemble=1, views=())
    train_model(config)
    out = tmp_path / "robust"
    code = main(["robustness", str(config.output_dir), "--output", str(out), "--max-drop", "100"])
    assert code == 0
    result = json.loads((out / "robustness.json").read_text())
    assert list(result["variants"]) == ["original", "jpeg_q60", "page_1000px"]
    original = result["variants"]["original"]
    assert original["drop_points"] == 0.0 and original["images"] == 18
    assert result["variants"]["page_1000px"]["resized_images"] == 0  # 96x80 photos
    assert "| jpeg_q60 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["robustness", "/nonexistent/run"], "`model_dir` must hold model.keras"),
        (["levers", "--seeds"], "expected at least one argument"),
    ],
)
def test_lever_commands_refuse_bad_input(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
