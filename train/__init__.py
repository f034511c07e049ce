"""Training stage: transfer learning on a frozen Xception base.

from train import TrainConfig, train_model
metrics = train_model(TrainConfig(data_dir=..., output_dir="runs/m", base_weights=...))

The names below load on first use (PEP 562): `import train.output` (the
training output format, read by convert/ and bench/) does not import Keras.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

# `python -m train`: the package is imported while sys.argv[0] is still "-m"
# (Python docs, "Command line and environment", -m), before train.run imports
# Keras and so TensorFlow: quiet its C++ log lines first (inference/_quiet.py).
# A library import (tests, bench, a notebook) is left as it is.
if sys.argv[:1] == ["-m"]:
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)  # --help: train/__main__.py preloads it

if TYPE_CHECKING:
    from train.config import TrainConfig
    from train.data import DataError, Dataset, load_dataset
    from train.model import WeightsError
    from train.run import OutputExistsError, train_model
    from train.sweep import sweep

_HOMES = {
    "DataError": "train.data",
    "Dataset": "train.data",
    "OutputExistsError": "train.run",
    "TrainConfig": "train.config",
    "WeightsError": "train.model",
    "load_dataset": "train.data",
    "sweep": "train.sweep",
    "train_model": "train.run",
}

__all__ = [
    "DataError",
    "Dataset",
    "OutputExistsError",
    "TrainConfig",
    "WeightsError",
    "load_dataset",
    "sweep",
    "train_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'train' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
