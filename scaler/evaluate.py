"""Holdout metrics computed on the cluster.

Each partition of scored rows is reduced to small mergeable summaries
(counts, sums, and for AUC the positive/negative counts per distinct score),
summaries merge in a tree on the workers, and only the final numbers come
back. The formulas match scikit-learn's ``roc_auc_score``, ``log_loss``,
``accuracy_score``, ``mean_squared_error``, ``mean_absolute_error`` and
``r2_score`` (ties in AUC count one half, as there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["evaluate", "summarize_partition", "finalize", "Summary"]

_EPS = np.finfo(np.float64).eps


@dataclass
class Summary:
    """Mergeable per-partition metric ingredients."""

    task: str
    n: int = 0
    logloss_sum: float = 0.0
    correct: int = 0
    # binary AUC: distinct scores with their positive / negative counts
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    pos: np.ndarray = field(default_factory=lambda: np.empty(0))
    neg: np.ndarray = field(default_factory=lambda: np.empty(0))
    # regression
    sse: float = 0.0
    sae: float = 0.0
    y_mean: float = 0.0
    y_m2: float = 0.0

    def merge(self, other: Summary) -> Summary:
        return Summary.merge_all([self, other])

    @staticmethod
    def merge_all(parts: list[Summary]) -> Summary:
        """The summary of the union of all ``parts``' rows. The AUC's
        distinct scores of all parts are sorted once, not once per pair."""
        full = [p for p in parts if p.n]
        if len(full) <= 1:
            return full[0] if full else parts[0]
        a = full[0]
        out = Summary(a.task, a.n, a.logloss_sum, a.correct, sse=a.sse, sae=a.sae)
        out.y_mean, out.y_m2 = a.y_mean, a.y_m2
        for b in full[1:]:
            n = out.n + b.n
            delta = b.y_mean - out.y_mean
            out.y_m2 += b.y_m2 + delta**2 * out.n * b.n / n
            out.y_mean += delta * b.n / n
            out.n = n
            out.logloss_sum += b.logloss_sum
            out.correct += b.correct
            out.sse += b.sse
            out.sae += b.sae
        if a.task == "binary":
            u, inv = np.unique(np.concatenate([p.scores for p in full]), return_inverse=True)
            out.scores = u
            out.pos = np.bincount(inv, np.concatenate([p.pos for p in full]), len(u))
            out.neg = np.bincount(inv, np.concatenate([p.neg for p in full]), len(u))
        return out


def summarize_partition(y: np.ndarray, pred: np.ndarray, task: str) -> Summary:
    """Summary of one block. ``y`` holds class codes (classification) or
    values (regression); ``pred`` holds P(class 1) (binary), class
    probabilities (multiclass, 2-D) or predicted values."""
    y = np.asarray(y)
    pred = np.asarray(pred, dtype=np.float64)
    out = Summary(task, int(len(y)))
    if out.n == 0:
        return out
    if task == "binary":
        p = np.clip(pred, _EPS, 1 - _EPS)
        yb = y.astype(np.float64)
        out.logloss_sum = float(-np.sum(yb * np.log(p) + (1 - yb) * np.log1p(-p)))
        out.correct = int(np.sum((pred > 0.5) == (yb == 1)))
        u, inv = np.unique(pred, return_inverse=True)
        out.scores = u
        out.pos = np.bincount(inv, yb, len(u))
        out.neg = np.bincount(inv, 1 - yb, len(u))
    elif task == "multiclass":
        yi = y.astype(np.int64)
        p = pred / pred.sum(axis=1, keepdims=True)
        p = np.clip(p, _EPS, 1 - _EPS)
        out.logloss_sum = float(-np.sum(np.log(p[np.arange(len(yi)), yi])))
        out.correct = int(np.sum(np.argmax(pred, axis=1) == yi))
    else:
        yf = y.astype(np.float64)
        err = pred - yf
        out.sse = float(np.sum(err**2))
        out.sae = float(np.sum(np.abs(err)))
        out.y_mean = float(np.mean(yf))
        out.y_m2 = float(np.sum((yf - out.y_mean) ** 2))
    return out


def _auc(s: Summary) -> float:
    # scores ascending; AUC = P(score_pos > score_neg) + 0.5 P(tie)
    n_pos, n_neg = s.pos.sum(), s.neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(s.neg) - s.neg
    return float(np.sum(s.pos * (neg_below + 0.5 * s.neg)) / (n_pos * n_neg))


def finalize(s: Summary) -> dict[str, float]:
    """The metrics of a merged summary."""
    if s.n == 0:
        return {"n": 0}
    if s.task == "binary":
        return {
            "n": s.n,
            "auc": _auc(s),
            "logloss": s.logloss_sum / s.n,
            "accuracy": s.correct / s.n,
        }
    if s.task == "multiclass":
        return {"n": s.n, "logloss": s.logloss_sum / s.n, "accuracy": s.correct / s.n}
    r2 = 1.0 - s.sse / s.y_m2 if s.y_m2 > 0 else float("nan")
    return {
        "n": s.n,
        "rmse": float(np.sqrt(s.sse / s.n)),
        "mae": s.sae / s.n,
        "r2": r2,
    }


def _summarize_frame(df: pd.DataFrame, task: str, label: str, pred_cols: list[str]) -> Summary:
    y = df[label].to_numpy()
    pred = df[pred_cols].to_numpy(dtype=np.float64)
    if pred.shape[1] == 1:
        pred = pred[:, 0]
    return summarize_partition(y, pred, task)


def evaluate(scored: Any, *, task: str, label: str, pred_cols: list[str]) -> dict[str, float]:
    """Metrics of a (Dask or pandas) frame of scored rows.

    Parameters
    ----------
    scored : dask or pandas DataFrame
        Holds the ``label`` column (class codes or values) and the
        prediction columns.
    task : {"binary", "multiclass", "regression"}
    label : str
    pred_cols : list of str
        ``[P(class 1)]`` for binary, one probability per class for
        multiclass, ``[prediction]`` for regression.
    """
    import dask
    import dask.dataframe as dd

    if isinstance(scored, dd.DataFrame):
        parts = scored[[label, *pred_cols]].to_delayed()
        sums = [dask.delayed(_summarize_frame)(p, task, label, pred_cols) for p in parts]
        return dask.compute(merged_metrics(sums))[0]
    return finalize(_summarize_frame(scored, task, label, pred_cols))


def merged_metrics(summaries: list[Any]) -> Any:
    """The metrics of delayed per-partition summaries, as one delayed
    value: the summaries merge in a tree of fan-in 8 on the workers."""
    import dask

    return dask.delayed(finalize)(merged_summary(summaries))


def merged_summary(summaries: list[Any]) -> Any:
    """Delayed per-partition summaries merged into one (delayed) summary,
    in a tree of fan-in 8 on the workers."""
    from scaler.preprocess import tree_merge

    return tree_merge(summaries, Summary.merge, merge_many=Summary.merge_all)
