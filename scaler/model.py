"""The fitted whole: column handling, scaling + PCA, booster and label mapping.

A :class:`Model` scores pandas or Dask dataframes that have the training
input columns (extra columns are ignored, order does not matter) and is
saved and loaded as a bundle by :mod:`scaler.bundle`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler.errors import DataError
from scaler.preprocess import Preprocessor
from scaler.train import predict_frame

__all__ = ["Model", "encode_labels"]


def encode_labels(values: pd.Series, classes: list[Any]) -> np.ndarray:
    """Class codes 0..K-1 for ``values`` (-1 for a value not in ``classes``)."""
    return pd.Index(classes).get_indexer(pd.Index(values)).astype(np.int64)


@dataclass
class Model:
    """A trained scaler model.

    Attributes
    ----------
    preprocessor : Preprocessor
    booster : xgboost.Booster
    task : {"binary", "multiclass", "regression"}
    target : str
    classes : list
        Class values (classification), index = code.
    key : str or None
        Column carried into predictions when present.
    input_dtypes : dict
        Training dtype of every input column, for checks at scoring time.
    """

    preprocessor: Preprocessor
    booster: Any
    task: str
    target: str
    classes: list[Any] = field(default_factory=list)
    key: str | None = None
    input_dtypes: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessor.output_columns

    @property
    def input_columns(self) -> list[str]:
        return self.preprocessor.input_columns

    @property
    def prediction_columns(self) -> list[str]:
        if self.task == "binary":
            return ["prediction", "probability"]
        if self.task == "multiclass":
            return ["prediction"] + [f"proba_{c}" for c in self.classes]
        return ["prediction"]

    # ------------------------------------------------------------ checking
    def check_columns(self, columns: Any, *, where: str = "the data") -> None:
        """Raise :class:`DataError` naming missing input columns."""
        missing = [c for c in self.input_columns if c not in set(columns)]
        if missing:
            raise DataError(
                f"{where} lacks the feature column(s) {missing} the model was trained on. "
                f"Available columns: {', '.join(map(str, columns))}. Add them, or retrain "
                "without them."
            )

    # ------------------------------------------------------------- scoring
    def _for_tasks(self) -> Model:
        """This model with a booster copy that predicts on one thread: for
        Dask tasks, which run side by side on a worker's threads, one core
        each. (With every core per task, two tasks scoring at once on two
        cores took longer than scoring one after the other.)"""
        booster = self.booster.copy()
        booster.set_param({"nthread": 1})
        return dataclasses.replace(self, booster=booster)

    def _raw_predict(self, feats: pd.DataFrame) -> np.ndarray:
        return predict_frame(feats, self.booster, self.feature_names, self.task, len(self.classes))

    def _output_frame(self, pred: np.ndarray, index: pd.Index) -> pd.DataFrame:
        out: dict[str, Any] = {}
        if self.task == "binary":
            idx = (pred > 0.5).astype(np.int64)
            out["prediction"] = pd.Index(self.classes).take(idx).array
            out["probability"] = pred.astype(np.float32)
        elif self.task == "multiclass":
            idx = np.argmax(pred, axis=1) if len(pred) else np.empty(0, dtype=np.int64)
            out["prediction"] = pd.Index(self.classes).take(idx).array
            for j, c in enumerate(self.classes):
                out[f"proba_{c}"] = pred[:, j].astype(np.float32)
        else:
            out["prediction"] = pred.astype(np.float32)
        return pd.DataFrame(out, index=index)

    def score_frame(self, df: pd.DataFrame, *, extra: list[str] | None = None) -> pd.DataFrame:
        """Score one pandas frame: ``extra`` columns (key...) then predictions."""
        _check_numeric(df, self.preprocessor.numeric)
        feats = self.preprocessor.transform_frame(df)
        pred = self._raw_predict(feats)
        out = self._output_frame(pred, df.index)
        if extra:
            out = pd.concat([df[extra], out], axis=1)
        return out

    def _meta(self, df_meta: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
        empty = self._output_frame(
            np.empty((0, len(self.classes)) if self.task == "multiclass" else (0,), np.float32),
            pd.RangeIndex(0),
        )
        if self.task != "regression":
            empty["prediction"] = pd.Series(pd.Index(self.classes)[:0])
        if extra:
            empty = pd.concat([df_meta[extra].iloc[:0].reset_index(drop=True), empty], axis=1)
        return empty

    def predict(self, data: Any, *, keep: list[str] | None = None) -> Any:
        """Predictions for a pandas or Dask dataframe with the input columns.

        The key column (when the model has one and ``data`` holds it) and the
        ``keep`` columns come first, then ``prediction`` (the class or value)
        and, for classifiers, the probabilities. Dask input gives a lazy Dask
        dataframe with the same partitions.
        """
        import dask.dataframe as dd

        self.check_columns(list(data.columns))
        extra = list(keep or [])
        if self.key and self.key in data.columns and self.key not in extra:
            extra.insert(0, self.key)
        needed = list(dict.fromkeys(self.input_columns + extra))
        if isinstance(data, dd.DataFrame):
            sub = data[needed]
            return sub.map_partitions(
                _score_partition, self._for_tasks(), extra, meta=self._meta(sub._meta, extra)
            )
        return self.score_frame(data[needed], extra=extra)

    def __repr__(self) -> str:
        from scaler._display import model_rows, text_block

        return text_block("scaler.Model", model_rows(self))

    def _repr_html_(self) -> str:
        from scaler._display import html_block, model_rows

        return html_block("scaler.Model", model_rows(self))


def _score_partition(df: pd.DataFrame, model: Model, extra: list[str]) -> pd.DataFrame:
    return model.score_frame(df, extra=extra)


def _check_numeric(df: pd.DataFrame, numeric: list[str]) -> None:
    bad = [
        c
        for c in numeric
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if bad:
        raise DataError(
            f"Column(s) {bad} should be numeric (as in training) but have dtype(s) "
            f"{[str(df[c].dtype) for c in bad]}. Convert them to numbers before scoring."
        )
