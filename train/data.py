"""Find the images of a folder-per-class dataset and check its shape.

Class order is the sorted folder names, as Keras `flow_from_directory` gives
(dress=0 ... t-shirt=9). Unreadable files are found later, at decode time,
and skipped with a warning that counts them (see features.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_SPLITS = ("train", "validation")
OPTIONAL_SPLITS = ("test",)


class DataError(ValueError):
    """The dataset folder does not have the expected shape."""


@dataclass(frozen=True)
class Split:
    """One split's image files and their int64 class indices (into `Dataset.labels`)."""

    name: str
    paths: tuple[Path, ...]
    targets: np.ndarray  # int class index per path

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder: sorted class names and the splits found (train, validation, test)."""

    root: Path
    labels: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def train(self) -> Split:
        """The train/ split (always present)."""
        return self.splits["train"]

    @property
    def validation(self) -> Split:
        """The validation/ split (always present)."""
        return self.splits["validation"]

    @property
    def test(self) -> Split | None:
        """The test/ split, or None when the folder has none."""
        return self.splits.get("test")


def load_dataset(data_dir: Path, *, max_per_class: int | None = None, seed: int = 1) -> Dataset:
    """List `data_dir/<split>/<class>/*` (files only; the images are not opened here).

    Args:
        data_dir: a folder with train/ and validation/ (test/ optional), each
            holding the same class folders.
        max_per_class: keep a seeded random sample of at most this many files
            per class and split (None: all).
        seed: the sample's seed.

    Returns:
        A `Dataset`; labels are the class folder names, sorted.

    Raises:
        DataError: `data_dir` is not a folder, lacks train/ or validation/, its
            splits name different classes, a split has fewer than 2 class
            folders, no files, or an empty class folder.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(
            f"`data_dir` must be a folder with train/ and validation/ inside. "
            f"Received: data_dir={str(data_dir)!r} (not found). Get the data with "
            "`git clone https://github.com/alexeygrigorev/clothing-dataset-small` "
            "or set CLOTHING_DATA_DIR."
        )
    present = [s for s in REQUIRED_SPLITS + OPTIONAL_SPLITS if (data_dir / s).is_dir()]
    missing = [s for s in REQUIRED_SPLITS if s not in present]
    if missing:
        raise DataError(f"{data_dir} has no {', '.join(m + '/' for m in missing)} folder.")
    labels = _class_names(data_dir / "train")
    splits: dict[str, Split] = {}
    for name in present:
        found = _class_names(data_dir / name)
        if found != labels:
            raise DataError(
                f"Class folders differ between splits: train/ has {list(labels)}, "
                f"{name}/ has {list(found)}."
            )
        splits[name] = _collect(data_dir / name, name, labels, max_per_class, seed)
    return Dataset(root=data_dir, labels=labels, splits=splits)


def _class_names(split_dir: Path) -> tuple[str, ...]:
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise DataError(f"{split_dir} must hold >= 2 class folders. Received: {names}")
    return tuple(names)


def _collect(
    split_dir: Path, name: str, labels: tuple[str, ...], max_per_class: int | None, seed: int
) -> Split:
    paths: list[Path] = []
    targets: list[int] = []
    for index, label in enumerate(labels):
        files = sorted(
            p for p in (split_dir / label).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if max_per_class is not None and len(files) > max_per_class:
            # A seeded sample, not the first N, so a subset keeps the split's variety.
            files = sorted(random.Random(f"{seed}-{name}-{label}").sample(files, max_per_class))
        paths.extend(files)
        targets.extend([index] * len(files))
    if not paths:
        raise DataError(f"Split {name}/ has no files in its class folders ({split_dir}).")
    empty = [label for index, label in enumerate(labels) if index not in targets]
    if empty:
        raise DataError(f"Split {name}/ has empty class folders: {empty}.")
    return Split(name=name, paths=tuple(paths), targets=np.asarray(targets, dtype=np.int64))
