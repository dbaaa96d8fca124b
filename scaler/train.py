"""Distributed XGBoost training with ``xgboost.dask``.

The training and validation matrices are ``DaskQuantileDMatrix`` objects
built from the already-transformed, persisted partitions, so features and
labels always come from one collection and share its partitioning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler.config import ModelConfig

__all__ = ["xgb_params", "train_booster", "TrainResult", "predict_frame"]

log = logging.getLogger("scaler")

_DEFAULT_METRICS = {
    "binary": ["auc", "logloss"],
    "multiclass": ["mlogloss"],
}


def xgb_params(model: ModelConfig, *, task: str, n_classes: int = 0) -> tuple[dict[str, Any], int]:
    """XGBoost parameters and the number of boosting rounds for a model config."""
    params: dict[str, Any] = {"tree_method": "hist", "objective": model.objective}
    if task == "multiclass":
        params["num_class"] = n_classes
    if task in _DEFAULT_METRICS:
        params["eval_metric"] = list(_DEFAULT_METRICS[task])
    if model.kind == "random_forest":
        params.update(
            {
                "learning_rate": 1.0,
                "subsample": 0.8,
                "colsample_bynode": 0.8,
                "num_parallel_tree": model.rounds,
            }
        )
        rounds = 1
    else:
        rounds = model.rounds
    params.update(model.params)
    return params, rounds


@dataclass
class TrainResult:
    """A trained booster with its per-round history."""

    booster: Any
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    best_iteration: int | None = None
    rounds_trained: int = 0


def train_booster(
    client: Any,
    X_train: Any,
    y_train: Any,
    *,
    params: dict[str, Any],
    rounds: int,
    X_valid: Any = None,
    y_valid: Any = None,
    early_stopping: int = 0,
    xgb_model: Any = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train on the cluster; with a validation set and ``early_stopping`` the
    booster is cut to its best round."""
    import xgboost.dask as dxgb

    max_bin = params.get("max_bin")
    dtrain = dxgb.DaskQuantileDMatrix(
        client, X_train, y_train, enable_categorical=True, max_bin=max_bin
    )
    evals = [(dtrain, "train")]
    if X_valid is not None:
        dvalid = dxgb.DaskQuantileDMatrix(
            client, X_valid, y_valid, ref=dtrain, enable_categorical=True, max_bin=max_bin
        )
        evals.append((dvalid, "valid"))
    use_es = bool(early_stopping) and X_valid is not None and rounds > 1
    out = dxgb.train(
        client,
        params,
        dtrain,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping if use_es else None,
        verbose_eval=False,
        xgb_model=xgb_model,
        callbacks=callbacks,
    )
    booster = out["booster"]
    history = {
        k: {m: [float(v) for v in vals] for m, vals in d.items()} for k, d in out["history"].items()
    }
    best = None
    if use_es:
        best = int(booster.best_iteration)
        if best + 1 < booster.num_boosted_rounds():
            booster = booster[: best + 1]
    return TrainResult(booster, history, best, int(booster.num_boosted_rounds()))


def predict_frame(
    df: pd.DataFrame,
    booster: Any,
    feature_cols: list[str],
    task: str,
    n_classes: int,
) -> np.ndarray:
    """Predictions for one pandas partition of model features:
    P(class 1) for binary, an (n, K) probability matrix for multiclass,
    values for regression."""
    if len(df) == 0:
        return np.empty((0, n_classes) if task == "multiclass" else (0,), dtype=np.float32)
    pred = booster.inplace_predict(df[feature_cols], validate_features=False)
    pred = np.asarray(pred, dtype=np.float32)
    if task == "multiclass":
        return pred.reshape(len(df), n_classes)
    return pred.reshape(len(df))
