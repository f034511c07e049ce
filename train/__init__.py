"""Training stage: transfer learning on a frozen Xception base.

from train import TrainConfig, train_model
metrics = train_model(TrainConfig(data_dir=..., output_dir="runs/m", base_weights=...))
"""

import os
import sys

# `python -m train`: the package is imported while sys.argv[0] is still "-m"
# (Python docs, "Command line and environment", -m), before train.run imports
# Keras and so TensorFlow: quiet its C++ log lines first (inference/_quiet.py).
# A library import (tests, bench, a notebook) is left as it is.
if sys.argv[:1] == ["-m"]:
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

from train.config import TrainConfig
from train.data import DataError, Dataset, load_dataset
from train.model import WeightsError
from train.run import OutputExistsError, train_model
from train.sweep import sweep

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
