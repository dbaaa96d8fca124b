"""scaler: scalable data science on Dask.

Partitioned Parquet on any fsspec store -> scaling + PCA -> distributed
XGBoost -> an evaluated, safely saved model and scored data, on a Dask
cluster (a LocalCluster on 127.0.0.1 by default, or an existing scheduler).

Examples
--------
>>> import scaler
>>> result = scaler.run("config.toml")  # doctest: +SKIP
>>> model = scaler.load_bundle(result.bundle_url)  # doctest: +SKIP
"""

from scaler.bundle import load_bundle, save_bundle
from scaler.cluster import connect
from scaler.config import RunConfig, load_config
from scaler.datasets import make_dataset
from scaler.errors import (
    BundleError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    InputError,
    StorageAccessError,
)
from scaler.evaluate import evaluate
from scaler.model import Model
from scaler.pipeline import PredictResult, Prepared, RunResult, predict, prepare, run
from scaler.preprocess import Preprocessor, ScalePCA
from scaler.report import write_report
from scaler.storage import read_dataset

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BundleError",
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "InputError",
    "Model",
    "PredictResult",
    "Prepared",
    "Preprocessor",
    "RunConfig",
    "RunResult",
    "ScalePCA",
    "StorageAccessError",
    "connect",
    "evaluate",
    "load_bundle",
    "load_config",
    "make_dataset",
    "predict",
    "prepare",
    "read_dataset",
    "run",
    "save_bundle",
    "write_report",
]
