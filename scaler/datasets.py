"""Synthetic data: partitioned Parquet with low-rank features and a
nonlinear label, written through fsspec to any URL.

Each file is generated independently from ``(seed, file index)``, so the
data is the same whatever the number of workers, and files are written in
parallel on the current Dask client when there is one.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from scaler import storage

__all__ = ["make_dataset", "dataset_exists"]

_MARKER = "_scaler_dataset.json"


def _frame(
    index: int,
    start: int,
    rows: int,
    *,
    n_features: int,
    rank: int,
    seed: int,
    task: str,
    categorical: bool,
    missing: float,
) -> pd.DataFrame:
    mix = np.random.default_rng([seed, 10_000_019]).normal(size=(rank, n_features))
    rng = np.random.default_rng([seed, index])
    z = rng.normal(size=(rows, rank))
    x = z @ mix + 0.5 * rng.normal(size=(rows, n_features))
    x = (x * np.linspace(0.5, 3.0, n_features) + np.linspace(-2.0, 5.0, n_features)).astype(
        np.float32
    )
    signal = (
        1.5 * np.sin(2.0 * z[:, 0])
        + z[:, 1] * z[:, 2 % rank]
        + 0.5 * z[:, 3 % rank] ** 2
        - 0.5
        + 0.8 * z[:, 4 % rank]
    )
    data: dict[str, Any] = {"id": np.arange(start, start + rows, dtype=np.int64)}
    for j in range(n_features):
        col = x[:, j]
        if missing > 0:
            col = np.where(rng.random(rows) < missing, np.nan, col).astype(np.float32)
        data[f"f{j:02d}"] = col
    if categorical:
        regions = np.array(["north", "south", "east", "west"])
        r = rng.integers(0, 4, size=rows)
        data["region"] = pd.array(regions[r], dtype="str")
        signal = signal + np.array([0.6, -0.6, 0.3, -0.3])[r]
    if task == "binary":
        noise = rng.logistic(size=rows)
        data["label"] = (signal + noise > 0).astype(np.int64)
    elif task == "multiclass":
        noisy = signal + 0.5 * rng.normal(size=rows)
        data["label"] = np.digitize(noisy, [-0.5, 1.0]).astype(np.int64)
    elif task == "regression":
        data["label"] = (signal + 0.3 * rng.normal(size=rows)).astype(np.float64)
    else:
        raise ValueError(f"task must be 'binary', 'multiclass' or 'regression'; got {task!r}")
    return pd.DataFrame(data)


def _write_file(url: str, storage_options: dict[str, Any] | None, **kw: Any) -> int:
    df = _frame(**kw)
    fs, path = storage.get_fs(url, storage_options)
    with fs.open(path, "wb") as f:
        # Row groups of ~128k rows: large files stay splittable into partitions.
        df.to_parquet(f, index=False, row_group_size=131_072)
    return len(df)


def dataset_exists(
    url: str, params: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> bool:
    """Whether ``url`` holds a complete dataset made with these parameters."""
    try:
        raw = storage.read_bytes(storage.join(url, _MARKER), storage_options)
    except (FileNotFoundError, OSError):
        return False
    try:
        return json.loads(raw) == params
    except ValueError:
        return False


def make_dataset(
    url: str,
    *,
    rows: int = 2_000_000,
    n_features: int = 50,
    files: int = 16,
    rank: int = 8,
    task: str = "binary",
    categorical: bool = False,
    missing: float = 0.0,
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a synthetic dataset as ``files`` Parquet files under ``url``.

    Columns: ``id`` (int64 key), ``f00``.. (float32 features with ``rank``
    latent factors), optionally ``region`` (string), and ``label`` (0/1 for
    binary, 0/1/2 for multiclass, a float for regression) that depends
    nonlinearly on the latent factors. Skips the work when ``url`` already
    holds the same dataset (a marker file written last records the
    parameters). Returns the parameters.

    Examples
    --------
    >>> from scaler import make_dataset
    >>> make_dataset("memory://demo", rows=1000, files=2)  # doctest: +ELLIPSIS
    {...}
    """
    import dask

    if rows < files or files < 1:
        raise ValueError(f"need rows >= files >= 1; got rows={rows}, files={files}")
    params = dict(
        rows=rows,
        n_features=n_features,
        files=files,
        rank=rank,
        task=task,
        categorical=categorical,
        missing=missing,
        seed=seed,
    )
    if not overwrite and dataset_exists(url, params, storage_options):
        return params
    storage.remove(url, storage_options)
    fs, root = storage.get_fs(url, storage_options)
    fs.makedirs(root, exist_ok=True)
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    tasks = [
        dask.delayed(_write_file)(
            storage.join(url, f"part-{i:05d}.parquet"),
            storage_options,
            index=i,
            start=int(bounds[i]),
            rows=int(bounds[i + 1] - bounds[i]),
            n_features=n_features,
            rank=rank,
            seed=seed,
            task=task,
            categorical=categorical,
            missing=missing,
        )
        for i in range(files)
    ]
    dask.compute(*tasks)
    storage.write_bytes(storage.join(url, _MARKER), json.dumps(params).encode(), storage_options)
    return params
