"""Fast tests of the training stage: tiny generated data, Xception(weights=None) at 71 px."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import TINY_SIZE, make_dataset, unit_logit_spread
from train import TrainConfig, train_model
from train.__main__ import main
from train.features import CacheKey, FeatureCache, extract_features, load_preprocessed
from train.model import build_base, feature_extractor, unfreeze_last_blocks


def tiny_config(tmp_path: Path, data: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(
        data_dir=data,
        output_dir=tmp_path / "out",
        image_size=TINY_SIZE,
        epochs=3,
        batch_size=8,
        size_inner=8,
        base_weights="none",
        cache_dir=tmp_path / "cache",
        verbose=False,
        # Calibration on validation: the out-of-fold fit (5 more head trainings per
        # run) is tested where it is the subject, tests/test_crossfit.py.
        calibration_folds=0,
    )
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": 32}, "`image_size` must be an int >= 71. Received: image_size=32"),
        ({"droprate": 1.0}, "`droprate` must be in [0, 1). Received: droprate=1.0"),
        ({"epochs": 0}, "`epochs` must be >= 1. Received: epochs=0"),
        ({"learning_rate": 0.0}, "`learning_rate` must be > 0. Received: learning_rate=0.0"),
        (
            {"fine_tune": 15},
            "`fine_tune` must be in [0, 14] (Xception blocks). Received: fine_tune=15",
        ),
        ({"max_per_class": 0}, "`max_per_class` must be >= 1"),
        ({"views": ("rotate",)}, "`views` must be a subset of"),
        ({"views": ("flip", "flip")}, "`views` must be without repeats"),
        ({"ensemble": 0}, "`ensemble` must be >= 1. Received: ensemble=0"),
        ({"label_smoothing": 1.0}, "`label_smoothing` must be in [0, 1)"),
        ({"weight_decay": -0.1}, "`weight_decay` must be >= 0. Received: weight_decay=-0.1"),
        ({"monitor": "loss"}, "`monitor` must be one of ('val_loss', 'val_accuracy')"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        TrainConfig(**overrides)  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "train_views"),
    [
        # the JPEG view helped on validation at 150 px, not at 299 (README "Accuracy levers")
        ({"image_size": 150}, ("jpeg",)),
        ({"image_size": 298}, ("jpeg",)),
        ({"image_size": 299}, ()),
        ({"image_size": 331}, ()),
        ({"image_size": 150, "views": ()}, ()),
        ({"image_size": 299, "views": ("jpeg", "flip")}, ("jpeg", "flip")),
        ({"image_size": 150, "views": ["flip"]}, ("flip",)),
        # trained from images: no feature cache, so no cached view, whatever was asked
        ({"image_size": 150, "fine_tune": 2}, ()),
        ({"image_size": 150, "augment": True, "views": ("flip",)}, ()),
    ],
)
def test_views_default_by_input_size(
    overrides: dict[str, object], train_views: tuple[str, ...]
) -> None:
    config = TrainConfig(**overrides)  # type: ignore[arg-type]
    assert config.train_views == train_views
    assert config.to_json()["views"] == list(train_views)  # metrics.json records what ran


def test_another_size_rederives_only_the_default_views() -> None:
    """`train sizes` replaces image_size: the default follows it, a choice stays."""
    default, chosen = TrainConfig(image_size=150), TrainConfig(image_size=150, views=("jpeg",))
    assert dataclasses.replace(default, image_size=299).train_views == ()
    assert dataclasses.replace(chosen, image_size=299).train_views == ("jpeg",)


def test_seed_recipe_trains_on_no_view() -> None:
    assert TrainConfig.seed_recipe(image_size=150).train_views == ()


def _no_split_images(root: Path) -> None:
    for f in (root / "validation").rglob("*.jpg"):
        f.unlink()


def _extra_class(root: Path) -> None:
    (root / "validation" / "socks").mkdir()


def _drop_validation(root: Path) -> None:
    import shutil

    shutil.rmtree(root / "validation")


def _all_corrupt_validation(root: Path) -> None:
    for f in (root / "validation").rglob("*.jpg"):
        f.write_bytes(b"not an image at all")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_no_split_images, "Split validation/ has no files"),
        (_extra_class, "Class folders differ between splits"),
        (_drop_validation, "has no validation/ folder"),
        (_all_corrupt_validation, "Split validation/ has no readable images"),
    ],
)
def test_bad_dataset_fails_cleanly(tmp_path: Path, damage, message: str, capsys) -> None:  # type: ignore[no-untyped-def]
    data = make_dataset(tmp_path / "data", per_class=2)
    damage(data)
    out = tmp_path / "out"
    code = main(
        [
            "--data-dir",
            str(data),
            "--output",
            str(out),
            "--image-size",
            "71",
            "--base-weights",
            "none",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp leftovers


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data-dir", "/nonexistent/data"], "`data_dir` must be a folder"),
        (["--image-size", "32"], "`image_size` must be an int >= 71. Received: image_size=32"),
        (["--base-weights", "/nonexistent/w.weights.h5"], "no such file"),
    ],
)
def test_cli_bad_arguments(
    tmp_path: Path, tiny_dataset: Path, argv: list[str], message: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    base = [
        "--data-dir",
        str(tiny_dataset),
        "--output",
        str(tmp_path / "out"),
        "--image-size",
        "71",
        "--base-weights",
        "none",
        "--cache-dir",
        str(tmp_path / "c"),
        "--quiet",
    ]
    code = main(base + argv)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_weights_file_that_does_not_fit(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(bogus)
    with pytest.raises(ValueError, match="does not fit Xception"):
        build_base(image_size=TINY_SIZE, base_weights=str(bogus))


@pytest.mark.parametrize(
    ("monitor", "pick"),
    [
        ("val_accuracy", lambda h: int(np.argmax([e["val_accuracy"] for e in h]))),  # first best
        ("val_loss", lambda h: int(np.argmin([e["val_loss"] for e in h]))),
    ],
)
def test_train_writes_outputs_and_keeps_best_epoch(
    tmp_path: Path, tiny_dataset: Path, monitor: str, pick
) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path, tiny_dataset, epochs=4, monitor=monitor, ensemble=1)
    metrics = train_model(config)
    out = config.output_dir
    for name in ("model.keras", "metrics.json", "learning_curves.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    assert out.stat().st_mode & 0o005 == 0o005  # readable by others (e.g. a container user)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["labels"] == ["hat", "pants", "shoes"]
    assert saved["image_size"] == TINY_SIZE
    val_curve = [e["val_accuracy"] for e in saved["history"]]
    assert len(val_curve) == 4
    assert saved["monitor"] == monitor
    assert saved["best_epoch"] == pick(saved["history"]) + 1
    # the reported validation accuracy is the kept epoch's, not the last one's
    assert saved["val_accuracy"] == pytest.approx(val_curve[saved["best_epoch"] - 1])
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert set(saved["test"]["per_class"]) == {"hat", "pants", "shoes"}
    assert np.asarray(saved["test"]["confusion_matrix"]).sum() == 18


def test_full_model_matches_head_on_cached_features(tmp_path: Path, tiny_dataset: Path) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=2, ensemble=1)
    train_model(config)
    model = keras.models.load_model(config.output_dir / "model.keras")
    base = model.get_layer("xception")
    cache = FeatureCache(config.cache_dir, CacheKey(_fingerprint(base), TINY_SIZE))
    paths = sorted((tiny_dataset / "test").rglob("*.jpg"))
    feats = extract_features(paths, extractor=feature_extractor(base), cache=cache, progress=False)
    assert feats.computed == 0  # all cached by the training run: the key matched
    images = np.stack([load_preprocessed(p, image_size=TINY_SIZE) for p in paths])
    unit_logit_spread(model, images)  # else logits are ~1e-5 and atol=1e-4 proves nothing
    head_logits = _head(model)(feats.vectors)
    full_logits = model.predict(images, verbose=0)
    np.testing.assert_allclose(full_logits, keras.ops.convert_to_numpy(head_logits), atol=1e-4)
    # The comparison can fail: the features of the other images, or none, do not match.
    for wrong in (feats.vectors[::-1], np.zeros_like(feats.vectors)):
        assert not np.allclose(full_logits, _head(model)(wrong), atol=1e-4)


def _fingerprint(base: keras.Model) -> str:
    from train.model import weights_fingerprint

    return weights_fingerprint(base)


def _head(model: keras.Model):  # type: ignore[no-untyped-def]
    inner, dropout, logits = (model.get_layer(n) for n in ("inner", "dropout", "logits"))
    return lambda x: logits(dropout(inner(x), training=False))


def test_cache_detects_corrupt_and_stale_entries(tmp_path: Path, tiny_dataset: Path) -> None:
    base = build_base(image_size=TINY_SIZE, base_weights="none")
    extractor = feature_extractor(base)
    paths = sorted((tiny_dataset / "train").rglob("*.jpg"))[:4]
    key = CacheKey("w" * 64, TINY_SIZE)
    first = extract_features(
        paths, extractor=extractor, cache=FeatureCache(tmp_path, key), progress=False
    )
    assert first.computed == 4
    victim = next(
        p
        for p in FeatureCache(tmp_path, key).directory.rglob("*")
        if p.is_file() and p.name != "meta.json"
    )
    blob = bytearray(victim.read_bytes())
    blob[10] ^= 0xFF  # one flipped byte
    victim.write_bytes(bytes(blob))
    cache = FeatureCache(tmp_path, key)
    second = extract_features(paths, extractor=extractor, cache=cache, progress=False)
    assert (second.computed, cache.rebuilt) == (1, 1)  # only the damaged entry recomputed
    np.testing.assert_allclose(second.vectors, first.vectors, atol=1e-5)
    # Features are ~1e-5: compare relative to their size, so zeros or another
    # image's vector in the rebuilt entry would fail. Not elementwise: the rebuilt
    # entry comes from a batch of 1, whose kernels round the ~1e-10 elements
    # differently from the batch of 4 (a 0.6% relative change, 5e-12 absolute).
    scale = float(np.abs(first.vectors).max())
    np.testing.assert_allclose(second.vectors, first.vectors, rtol=0, atol=1e-4 * scale)
    assert not np.allclose(first.vectors[0], first.vectors[-1], rtol=1e-2, atol=0)
    # A changed meta.json (e.g. written by another version) means stale: wiped and rebuilt.
    (cache.directory / "meta.json").write_text("{}")
    third = extract_features(
        paths, extractor=extractor, cache=FeatureCache(tmp_path, key), progress=False
    )
    assert third.computed == 4


def test_corrupt_files_are_skipped_with_a_count(tmp_path: Path, tiny_dataset: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tiny_dataset / "train" / "hat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tiny_dataset / "train" / "pants" / "notes.txt").write_text("hello")
    metrics = train_model(tiny_config(tmp_path, tiny_dataset, epochs=1, verbose=True))
    err = capsys.readouterr().err
    assert "skipped 2 unreadable image file(s)" in err
    assert {Path(s["path"]).name for s in metrics["skipped"]} == {"broken.jpg", "notes.txt"}
    assert metrics["n_images"]["train"] == 20


def test_existing_output_needs_force(tmp_path: Path, tiny_dataset: Path) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=1)
    config.output_dir.mkdir()
    (config.output_dir / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="Pass --force"):
        train_model(config)
    assert (config.output_dir / "keep.txt").read_text() == "mine"
    train_model(dataclasses.replace(config, force=True))
    assert (config.output_dir / "model.keras").is_file()
    assert not (config.output_dir / "keep.txt").exists()


@pytest.mark.parametrize(("fine_tune", "augment"), [(2, False), (0, True)])
def test_fine_tune_and_augment_train_from_images(
    tmp_path: Path, tiny_dataset: Path, fine_tune: int, augment: bool
) -> None:
    config = tiny_config(tmp_path, tiny_dataset, epochs=1, fine_tune=fine_tune, augment=augment)
    metrics = train_model(config)
    assert "load_seconds" in metrics["timings"]  # trained from images, not the cache
    assert not (config.cache_dir / "features").exists()
    assert (config.output_dir / "model.keras").is_file()


@pytest.mark.parametrize(
    ("n_blocks", "blocks"), [(1, ("block14_",)), (2, ("block13_", "block14_"))]
)
def test_unfreeze_last_blocks_trains_their_weighted_layers_but_batchnorm(
    n_blocks: int, blocks: tuple[str, ...]
) -> None:
    import keras

    base = build_base(image_size=TINY_SIZE, base_weights="none")
    assert unfreeze_last_blocks(base, 0) == 0 and not base.trainable_weights
    count = unfreeze_last_blocks(base, n_blocks)
    trainable = [layer for layer in base.layers if layer.trainable]
    assert count == len(trainable) > 0
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    named = [layer.name for layer in trainable if layer.name.startswith("block")]
    assert all(name.startswith(blocks) for name in named)
    assert len(named) == 2 * n_blocks  # each exit-flow block has two separable convolutions
    # block 13's 1x1 shortcut convolution has no block name, and tunes with its block
    assert len(trainable) - len(named) == (1 if n_blocks == 2 else 0)


def test_unfreeze_every_block_trains_every_weighted_layer_but_batchnorm() -> None:
    import keras

    base = build_base(image_size=TINY_SIZE, base_weights="none")
    weighted = [
        layer
        for layer in base.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert unfreeze_last_blocks(base, 14) == len(weighted)


def test_sweep_writes_table_plot_and_one_run_per_value(
    tmp_path: Path, tiny_dataset: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "--droprate",
            "0.0",
            "0.5",
            "--data-dir",
            str(tiny_dataset),
            "--output",
            str(out),
            "--image-size",
            "71",
            "--base-weights",
            "none",
            "--cache-dir",
            str(tmp_path / "c"),
            "--epochs",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert [r["value"] for r in summary["results"]] == [0.0, 0.5]
    assert (
        summary["best"]["value"]
        == max(summary["results"], key=lambda r: r["val_accuracy"])["value"]
    )
    assert (out / "sweep_val_accuracy.png").stat().st_size > 0
    assert (out / "droprate=0.5" / "model.keras").is_file()
    assert "best val_acc" in capsys.readouterr().out


def test_sweep_needs_exactly_one_parameter(tmp_path: Path, tiny_dataset: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        [
            "sweep",
            "--droprate",
            "0.1",
            "0.2",
            "--learning-rate",
            "0.1",
            "0.01",
            "--data-dir",
            str(tiny_dataset),
            "--output",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2
    assert "Sweep exactly one of" in capsys.readouterr().err


def test_same_seed_same_model_whether_features_were_prepared_or_not(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    from train import load_dataset
    from train.run import prepare_features

    first = train_model(tiny_config(tmp_path, tiny_dataset, epochs=2))
    config = tiny_config(tmp_path, tiny_dataset, epochs=2, output_dir=tmp_path / "again")
    keras.utils.set_random_seed(config.seed)  # a random ("none") base: the same one as above
    base = build_base(image_size=TINY_SIZE, base_weights="none")
    features = prepare_features(load_dataset(tiny_dataset), base, config)
    second = train_model(config, features=features)
    assert [e["loss"] for e in second["history"]] == [e["loss"] for e in first["history"]]
