"""`python -m bench.finetune_cached`: the cut through Xception, the activation cache,
which weights train, and the usage errors (tiny model, generated photos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.finetune_cached import (
    cached_activations,
    classes_of,
    finetune,
    main,
    split_activations,
    split_model,
)
from tests.conftest import TINY_SIZE, build_tiny_keras_model, make_run_with_photos
from train.model import split_base, unfreeze_last_blocks
from train.output import write_train_output

CLASSES = ("hat", "pants", "shoes")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.keras + metrics.json whose data_dir has train/ and validation/ photos."""
    return make_run_with_photos(
        tmp_path_factory.mktemp("finetune"),
        build_tiny_keras_model(n_classes=len(CLASSES)),
        classes=CLASSES,
    )


@pytest.mark.parametrize(("blocks", "first"), [(1, "block14_"), (2, "block13_"), (3, "block12_")])
def test_the_cut_feeds_the_first_tuned_block_and_keeps_the_answers(blocks: int, first: str) -> None:
    model = build_tiny_keras_model(n_classes=3)
    base, trunk, tuned = split_model(model, blocks=blocks)
    names = [layer.name for layer in split_base(base, n_blocks=blocks)[1].layers]
    assert any(name.startswith(first) for name in names)
    assert not any(name.startswith(f"block{14 - blocks}_") for name in names)
    x = np.random.default_rng(0).uniform(-1, 1, (2, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(tuned(trunk(x))), np.asarray(model(x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("blocks", [0, 4, -1])
def test_blocks_out_of_range_is_a_value_error(blocks: int) -> None:
    model = build_tiny_keras_model(n_classes=3)
    with pytest.raises(
        ValueError, match=rf"`blocks` must be in \[1, 3\]. Received: blocks={blocks}"
    ):
        split_model(model, blocks=blocks)


@pytest.mark.parametrize(
    ("folders", "expected"),
    [(["hat", "shoes", "hat"], [0, 2, 0]), (["pants"], [1])],
)
def test_classes_come_from_the_folder_names(folders: list[str], expected: list[int]) -> None:
    paths = [Path("/d") / name / f"{i}.jpg" for i, name in enumerate(folders)]
    assert classes_of(paths, CLASSES).tolist() == expected


def test_an_unknown_class_folder_names_itself() -> None:
    with pytest.raises(ValueError, match=r"\['scarf'\]"):
        classes_of([Path("/d/scarf/0.jpg")], CLASSES)


def test_run_tunes_only_the_last_blocks_and_reuses_its_cache(
    tiny_run: Path, tmp_path: Path
) -> None:
    args = ["--blocks", "1", "--epochs", "2", "--flip", "--learning-rate", "1e-2"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main([str(tiny_run), "--out", str(tmp_path / "a"), *args]) == 0
    result = json.loads((tmp_path / "a" / "finetune_cached.json").read_text())
    assert [r["epoch"] for r in result["epochs"]] == [0, 1, 2]
    assert result["epochs"][0]["loss"] is None and result["epochs"][1]["loss"] > 0
    assert result["n_train"] == result["n_validation"] == 9
    assert result["activations_computed"] is True
    assert result["trainable_params"] > 0
    assert (tmp_path / "a" / "finetune_cached.png").stat().st_size > 1000
    assert "| 0 | — |" in (tmp_path / "a" / "finetune_cached.md").read_text()
    assert len(list((tmp_path / "cache" / "activations").glob("*/*.npy"))) == 2
    # the same run again: activations from the cache, same epoch-0 figures
    assert main([str(tiny_run), "--out", str(tmp_path / "b"), *args]) == 0
    again = json.loads((tmp_path / "b" / "finetune_cached.json").read_text())
    assert again["activations_computed"] is False
    assert again["epochs"][0]["val_nll"] == pytest.approx(result["epochs"][0]["val_nll"])


@pytest.mark.parametrize(
    ("views", "n_train", "files"),
    [
        (["flip"], 18, ["train", "train-flip", "validation"]),
        (["crop", "flip", "crop"], 27, ["train", "train-crop", "train-flip", "validation"]),
    ],
)
def test_views_add_their_own_cached_training_maps(
    tiny_run: Path, tmp_path: Path, views: list[str], n_train: int, files: list[str]
) -> None:
    cache = tmp_path / "cache"
    args = [str(tiny_run), "--out", str(tmp_path / "o"), "--epochs", "1", "--cache-dir", str(cache)]
    assert main([*args, "--views", *views]) == 0
    result = json.loads((tmp_path / "o" / "finetune_cached.json").read_text())
    assert result["n_train"] == n_train and result["n_validation"] == 9
    assert result["views"] == list(dict.fromkeys(views))
    # one file per split and view, named <split>[-<view>]-<digest>.npy
    maps = {f.name.rsplit("-", 1)[0]: np.load(f) for f in cache.glob("activations/*/*.npy")}
    assert sorted(maps) == files
    for view in set(views):  # a view's maps are of the transformed photos, not a copy
        assert maps[f"train-{view}"].shape == maps["train"].shape
        assert not np.array_equal(maps[f"train-{view}"], maps["train"])


@pytest.fixture(scope="module")
def tiny_trunk(tiny_run: Path) -> tuple[Any, list[Path]]:
    """The tiny run's trunk (below its last block) and its training photos."""
    import keras

    trunk = split_model(keras.models.load_model(tiny_run / "model.keras"), blocks=1)[1]
    return trunk, sorted((tiny_run.parent / "data" / "train").glob("*/*.jpg"))


def test_views_stack_view_after_view_with_their_classes(
    tiny_trunk: tuple[Any, list[Path]], tmp_path: Path
) -> None:
    trunk, paths = tiny_trunk
    classes = classes_of(paths, CLASSES)
    cache = tmp_path / "train.npy"
    x, y, computed = split_activations(
        trunk, paths, classes, views=["plain", "flip"], image_size=TINY_SIZE, cache=cache
    )
    n = len(paths)
    assert computed and x.shape[0] == 2 * n and x.dtype == np.float16
    for k, view in enumerate(["plain", "flip"]):
        alone, fresh = cached_activations(
            trunk, paths, image_size=TINY_SIZE, cache=cache, view=view
        )
        assert not fresh
        np.testing.assert_array_equal(x[k * n : (k + 1) * n], alone)
        np.testing.assert_array_equal(y[k * n : (k + 1) * n], classes)  # each map keeps its class
    assert len(set(classes.tolist())) > 1  # so a shuffled pairing could not pass


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda f: f.write_bytes(b""), id="empty"),
        pytest.param(lambda f: f.write_bytes(f.read_bytes()[:200]), id="truncated"),
        pytest.param(lambda f: np.save(f, np.load(f)[:, :1]), id="wrong shape"),
    ],
)
def test_a_damaged_cache_file_is_computed_again(
    tiny_trunk: tuple[Any, list[Path]],
    tmp_path: Path,
    damage: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trunk, paths = tiny_trunk
    cache = tmp_path / "train.npy"
    good, fresh = cached_activations(trunk, paths, image_size=TINY_SIZE, cache=cache, view="flip")
    assert fresh
    (damaged,) = tmp_path.glob("train-flip-*.npy")
    damage(damaged)
    capsys.readouterr()
    again, fresh = cached_activations(trunk, paths, image_size=TINY_SIZE, cache=cache, view="flip")
    assert fresh and "computing it again" in capsys.readouterr().err
    np.testing.assert_array_equal(again, good)
    np.testing.assert_array_equal(np.load(damaged), good)  # and stored again


@pytest.mark.parametrize("blocks", [1, 2])
def test_training_moves_the_tuned_blocks_and_the_head_only(tiny_run: Path, blocks: int) -> None:
    import keras

    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    base, trunk, tuned = split_model(model, blocks=blocks)
    unfreeze_last_blocks(base, blocks)
    top = split_base(base, n_blocks=blocks)[1]
    batchnorm = [
        layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    tuned_ids = {id(w) for layer in top.layers if layer not in batchnorm for w in layer.weights}
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    rng = np.random.default_rng(0)
    x = trunk(rng.uniform(-1, 1, (8, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32))
    acts, y = np.asarray(x).astype(np.float16), np.arange(8) % 3
    finetune(
        tuned, (acts, y), (acts, y), epochs=1, learning_rate=1e-2, batch_size=4, flip=False, seed=0
    )
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    moved = [
        w
        for w, old, new in zip(model.weights, before, after, strict=True)
        if not np.array_equal(new, old)
    ]
    in_base = {id(w) for w in base.weights}
    assert [w for w in moved if id(w) not in in_base], "the head did not train"
    # in the base, exactly the tuned blocks' weights moved: every one, and no
    # BatchNorm statistic (frozen BatchNorm runs in inference mode)
    assert {id(w) for w in moved if id(w) in in_base} == tuned_ids
    if blocks == 2:  # block 13's unnamed 1x1 shortcut convolution tunes with its block
        assert any(not w.path.startswith("block") for w in moved if id(w) in tuned_ids)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "`--epochs` must be >= 1. Received: epochs=0"),
        (["--learning-rate", "0"], "`--learning-rate` must be > 0"),
        (["--blocks", "5"], "invalid choice"),
        (["--views", "plain"], "invalid choice: 'plain'"),
        (["--views", "rotate"], "invalid choice: 'rotate'"),
    ],
)
def test_bad_flags_exit_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--out", str(tmp_path / "o"), *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_run_and_run_without_splits_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    write_train_output(
        tmp_path / "run",
        build_tiny_keras_model(n_classes=3),
        {"labels": list(CLASSES), "image_size": TINY_SIZE},  # no data_dir
    )
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    assert "train/validation split" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_changed_photo_list_gets_new_activations(tmp_path: Path) -> None:
    run = make_run_with_photos(
        tmp_path, build_tiny_keras_model(n_classes=len(CLASSES)), classes=CLASSES, per_class=2
    )
    data = tmp_path / "data"
    args = [str(run), "--epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    (data / "train" / "hat" / "0.jpg").rename(data / "train" / "hat" / "moved.jpg")
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "finetune_cached.json").read_text())
    assert result["activations_computed"] is True
    assert len(list((tmp_path / "cache" / "activations").glob("*/train-*.npy"))) == 2


def test_a_model_without_a_nested_base_and_an_out_file_exit_2(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    flat = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    write_train_output(tmp_path / "flat", flat, metrics)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main([str(tmp_path / "flat"), "--out", str(tmp_path / "o"), *cache]) == 2
    assert "must hold its Xception base as a nested model" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as info:  # refused as the flag is parsed
        main([str(tiny_run), "--out", str(tmp_path / "file"), *cache])
    assert info.value.code == 2
    assert "argument --out: must be a folder (created if missing)" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.npy"))  # refused before any work
