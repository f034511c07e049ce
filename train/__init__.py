"""Training stage: transfer learning on a frozen Xception base.

from train import TrainConfig, train_model
metrics = train_model(TrainConfig(data_dir=..., output_dir="runs/m", base_weights=...))
"""

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
