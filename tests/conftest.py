"""Shared fixtures: one LocalCluster (2 worker processes on 127.0.0.1) for
the whole session, and small synthetic datasets written once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

from tests.s3 import s3, s3_server  # noqa: E402, F401 - the S3 endpoint fixtures

ROOT = Path(__file__).resolve().parents[1]
SCALER = str(Path(sys.executable).with_name("scaler"))


@pytest.fixture(scope="session")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port: no clash with 8787
        scheduler_kwargs={"dashboard": False},
        processes=True,
        memory_limit="4GB",
    ) as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    from distributed import Client

    with Client(cluster) as c:
        yield c


@pytest.fixture(scope="session")
def scheduler_address(cluster):
    return cluster.scheduler_address


@pytest.fixture(scope="session")
def binary_data(tmp_path_factory, client):
    """6,000 rows, 12 float features (2% missing), a string column, key `id`."""
    from scaler import make_dataset

    url = str(tmp_path_factory.mktemp("binary") / "data")
    make_dataset(url, rows=6000, n_features=12, files=4, rank=4, categorical=True, missing=0.02)
    return url


@pytest.fixture(scope="session")
def clean_data(tmp_path_factory, client):
    """4,000 rows, 10 float features, no missing values."""
    from scaler import make_dataset

    url = str(tmp_path_factory.mktemp("clean") / "data")
    make_dataset(url, rows=4000, n_features=10, files=3, rank=3)
    return url


@pytest.fixture(scope="session")
def multiclass_data(tmp_path_factory, client):
    from scaler import make_dataset

    url = str(tmp_path_factory.mktemp("multi") / "data")
    make_dataset(url, rows=5000, n_features=8, files=3, rank=4, task="multiclass")
    return url


@pytest.fixture(scope="session")
def regression_data(tmp_path_factory, client):
    from scaler import make_dataset

    url = str(tmp_path_factory.mktemp("reg") / "data")
    make_dataset(url, rows=5000, n_features=8, files=3, rank=4, task="regression")
    return url


def base_config(data_url: str, out_url: str, **sections) -> dict:
    cfg = {
        "data": {"url": data_url, "target": "label", "key": "id"},
        "split": {"holdout": 0.2, "seed": 0},
        "preprocess": {"scale": True, "pca": 5},
        "model": {"rounds": 20, "early_stopping": 5, "params": {"max_depth": 4}},
        "output": {"url": out_url},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture(scope="session")
def binary_result(client, binary_data, tmp_path_factory):
    """One whole run (bundle, scored holdout, report) on ``binary_data``,
    shared by tests that only read its results: ``(RunResult, output dir)``."""
    import scaler

    out = tmp_path_factory.mktemp("binary_result")
    return scaler.run(base_config(binary_data, str(out)), client=client), out
