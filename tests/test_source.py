"""convert/_source.py's image helpers shared by `convert select` and the quantization benches,
and the package-version reader convert and bench share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert import ConvertError
from convert._source import keras_logits, labeled_arrays, required_splits
from inference import preprocess_file
from tests.conftest import make_image
from train.output import TrainOutput


class FakeModel:
    """`predict_on_batch` of a model whose two logits are pixel (0, 0)'s first two channels."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        return batch[:, 0, 0, :2].astype(np.float64)


@pytest.mark.parametrize(
    ("n", "batch_size", "batch_sizes"),
    [(5, 2, [2, 2, 1]), (4, 32, [4]), (6, 3, [3, 3]), (1, 1, [1])],
)
def test_keras_logits_batches_in_order(n: int, batch_size: int, batch_sizes: list[int]) -> None:
    images = np.arange(n * 2 * 2 * 3, dtype=np.float32).reshape(n, 2, 2, 3)
    model = FakeModel()
    logits = keras_logits(model, images, batch_size=batch_size)
    assert model.batch_sizes == batch_sizes
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits, images[:, 0, 0, :2])


def test_labeled_arrays_take_each_class_from_its_folder(tmp_path: Path) -> None:
    labels = ("hat", "pants", "shoes")
    paths = [
        make_image(tmp_path / "shoes" / "a.jpg", color=(200, 10, 10)),
        make_image(tmp_path / "hat" / "b.jpg", color=(10, 200, 10)),
        make_image(tmp_path / "shoes" / "c.jpg", color=(10, 10, 200)),
    ]
    x, classes = labeled_arrays(paths, image_size=8, labels=labels)
    assert x.shape == (3, 8, 8, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[1], preprocess_file(paths[1], image_size=8))
    assert classes.tolist() == [2, 0, 2] and classes.dtype == np.int64


def test_labeled_arrays_refuse_a_folder_the_model_does_not_know(tmp_path: Path) -> None:
    path = make_image(tmp_path / "socks" / "a.jpg", color=(1, 2, 3))
    with pytest.raises(
        ValueError, match=r"its folder 'socks' is not a class of the model \['hat'\]"
    ):
        labeled_arrays([path], image_size=8, labels=("hat",))


@pytest.mark.parametrize(
    ("packages", "expected_keys"),
    [(("numpy", "no-such-distribution-xyz"), ["numpy"]), ((), []), (("pillow",), ["pillow"])],
)
def test_package_versions_leave_out_what_is_not_installed(
    packages: tuple[str, ...], expected_keys: list[str]
) -> None:
    import importlib.metadata

    from bench._machine import PACKAGES, package_versions
    from convert._machine import package_versions as versions_of

    versions = versions_of(packages)
    assert list(versions) == expected_keys
    assert all(versions[d] == importlib.metadata.version(d) for d in expected_keys)
    assert set(package_versions()) <= set(PACKAGES)  # the bench's list, through the same reader


@pytest.mark.parametrize(
    ("present", "names", "missing"),
    [
        (["train", "validation"], ("train", "validation"), None),
        (["validation"], ("validation",), None),
        (["validation"], ("train", "validation"), "no train split"),
        ([], ("train", "validation"), "no train/validation split"),
        (None, ("validation",), "no validation split"),  # metrics.json has no data_dir
    ],
)
def test_required_splits_give_the_folders_or_name_what_is_missing(
    tmp_path: Path, present: list[str] | None, names: tuple[str, ...], missing: str | None
) -> None:
    for name in present or []:
        (tmp_path / "data" / name).mkdir(parents=True)
    data_dir = None if present is None else tmp_path / "data"
    run = TrainOutput(tmp_path / "run", labels=("a", "b"), image_size=71, data_dir=data_dir)
    if missing is None:
        assert required_splits(run, *names) == tuple(tmp_path / "data" / n for n in names)
    else:
        with pytest.raises(ConvertError, match=missing) as info:
            required_splits(run, *names)
        assert "metrics.json" in str(info.value)
