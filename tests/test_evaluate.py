"""Cluster-side metrics against scikit-learn on the same predictions."""

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from scaler.evaluate import evaluate

TOL = 1e-6


def frame(n=3000, seed=0, task="binary", k=3):
    rng = np.random.default_rng(seed)
    if task == "binary":
        y = rng.integers(0, 2, n)
        # rounded scores create many ties, which AUC must count as one half
        p = np.round(np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1), 2)
        return pd.DataFrame({"y": y, "p": p}), ["p"]
    if task == "multiclass":
        y = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)) + np.eye(k)[y]
        pr = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        df = pd.DataFrame({"y": y, **{f"p{j}": pr[:, j] for j in range(k)}})
        return df, [f"p{j}" for j in range(k)]
    y = rng.normal(size=n) * 3 + 10
    return pd.DataFrame({"y": y, "p": y + rng.normal(size=n)}), ["p"]


@pytest.mark.parametrize("npartitions", [1, 5])
def test_binary_matches_sklearn(client, npartitions):
    df, cols = frame()
    got = evaluate(
        dd.from_pandas(df, npartitions=npartitions), task="binary", label="y", pred_cols=cols
    )
    assert got["n"] == len(df)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(df.y, df.p), rel=TOL)
    assert got["logloss"] == pytest.approx(skm.log_loss(df.y, y_proba=df.p.to_numpy()), rel=TOL)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(df.y, df.p > 0.5), rel=TOL)


def test_multiclass_matches_sklearn(client):
    df, cols = frame(task="multiclass")
    got = evaluate(dd.from_pandas(df, npartitions=4), task="multiclass", label="y", pred_cols=cols)
    proba = df[cols].to_numpy()
    assert got["logloss"] == pytest.approx(skm.log_loss(df.y, y_proba=proba), rel=TOL)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(df.y, proba.argmax(1)), rel=TOL)


def test_regression_matches_sklearn(client):
    df, cols = frame(task="regression")
    got = evaluate(dd.from_pandas(df, npartitions=6), task="regression", label="y", pred_cols=cols)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(df.y, df.p)), rel=TOL)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(df.y, df.p), rel=TOL)
    assert got["r2"] == pytest.approx(skm.r2_score(df.y, df.p), rel=TOL)


def test_pandas_input_and_empty_partitions(client):
    df, cols = frame(n=500)
    ddf = dd.from_pandas(df, npartitions=5)
    ddf = ddf[ddf.p > 0.2]  # some partitions may lose rows
    kept = df[df.p > 0.2]
    got = evaluate(ddf, task="binary", label="y", pred_cols=cols)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(kept.y, kept.p), rel=TOL)
    assert evaluate(kept, task="binary", label="y", pred_cols=cols) == pytest.approx(got)
