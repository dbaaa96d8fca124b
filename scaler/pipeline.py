"""Orchestration: config -> read -> statistics -> transform -> train ->
evaluate -> save. No maths and no storage code of its own.

The data is read twice: once for all statistics at the same time (row
counts, scaling and PCA moments, categories, classes) and once to transform
it into the (small) model features, which stay in cluster memory for
training and evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler import storage
from scaler.bundle import load_bundle, save_bundle
from scaler.checkpoint import clear_checkpoints, fingerprint, read_checkpoint
from scaler.cluster import close, connect, current_client, workers_by_address
from scaler.cluster import workers as _workers
from scaler.config import RunConfig, load_config, redact
from scaler.errors import ConfigError, DataError
from scaler.model import Model, encode_labels
from scaler.preprocess import (
    Columns,
    Moments,
    Preprocessor,
    ScalePCA,
    _frame_to_array,
    _merge_many,
    incremental_missing,
)
from scaler.progress import Progress
from scaler.train import train_booster, xgb_params

__all__ = [
    "run",
    "predict",
    "prepare",
    "Prepared",
    "RunResult",
    "PredictResult",
    "resolve_columns",
]

log = logging.getLogger("scaler")

TRAIN, VALID, HOLDOUT = 0, 1, 2
LABEL, PART = "__label__", "__part__"
MAX_CLASSES = 1000


# ------------------------------------------------------------------ columns
def _kind(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    ):
        return "categorical"
    return "unsupported"


@dataclass(frozen=True)
class Spec:
    """Everything a partition function needs, resolved from config + schema."""

    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    key: str | None
    task: str
    holdout: float
    valid_fraction: float
    seed: int
    split_column: str | None
    max_categories: int
    covariance: bool = True  # full cross-products (PCA) or only variances

    @property
    def features(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    @property
    def columns(self) -> list[str]:
        cols = [self.target, *self.features]
        for c in (self.key, self.split_column):
            if c and c not in cols:
                cols.append(c)
        return cols


def resolve_columns(dtypes: pd.Series, cfg: RunConfig) -> Spec:
    """Check the schema against the config and sort the columns by role.

    Raises :class:`DataError` naming any missing or unusable column and
    listing the available ones.
    """
    d, url = cfg.data, redact(cfg.data.url)
    available = [str(c) for c in dtypes.index]
    listing = ", ".join(available)

    def need(cols: list[str], what: str) -> None:
        missing = [c for c in cols if c not in available]
        if missing:
            raise DataError(
                f"{what} {missing} not found in {url!r}. Available columns: {listing}. "
                "Fix the name in the config."
            )

    need([d.target], "Target column")
    if d.key:
        need([d.key], "Key column ([data] key)")
    if cfg.split.column:
        need([cfg.split.column], "Split column ([split] column)")
    need(list(d.exclude), "Excluded column(s)")
    if d.features is not None:
        need(list(d.features), "Feature column(s)")
        features = list(d.features)
    else:
        skip = {d.target, d.key, cfg.split.column, *d.exclude}
        features = [c for c in available if c not in skip]
    features = [c for c in features if c not in set(d.exclude)]
    used = {*features, d.target, d.key, cfg.split.column}
    clash = [c for c in (LABEL, PART) if c in used]
    if clash:
        raise DataError(
            f"Column(s) {clash} in {url!r}: scaler uses these names internally. Rename "
            "the column(s), or leave them out with [data] exclude."
        )
    if not features:
        raise DataError(
            f"No feature columns left in {url!r} after removing the target, key and "
            f"exclude. Available columns: {listing}."
        )
    numeric: list[str] = []
    categorical: list[str] = []
    unsupported: list[str] = []
    for c in features:
        k = _kind(dtypes[c])
        (numeric if k == "numeric" else categorical if k == "categorical" else unsupported).append(
            c
        )
    if unsupported:
        raise DataError(
            f"Column(s) {unsupported} of {url!r} have unsupported dtype(s) "
            f"{[str(dtypes[c]) for c in unsupported]}. Convert them to numbers or strings, "
            "or list them in [data] exclude."
        )
    task = cfg.task
    tdtype = dtypes[d.target]
    if task == "regression" and (
        not pd.api.types.is_numeric_dtype(tdtype) or pd.api.types.is_bool_dtype(tdtype)
    ):
        raise DataError(
            f"Target column {d.target!r} has dtype {tdtype}, but objective "
            f"{cfg.model.objective!r} is a regression and needs a numeric target. Use "
            "objective = 'binary:logistic' or 'multi:softprob' for classes, or convert the "
            "target to numbers."
        )
    pca = cfg.preprocess.pca
    if isinstance(pca, int) and not isinstance(pca, bool) and pca > len(numeric):
        raise DataError(
            f"[preprocess] pca = {pca} is larger than the number of numeric features "
            f"({len(numeric)}) in {url!r}. Set pca to at most {len(numeric)}, use a variance "
            "fraction such as pca = 0.95, or pca = false."
        )
    return Spec(
        target=d.target,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        key=d.key,
        task=task,
        holdout=cfg.split.holdout,
        valid_fraction=cfg.model.valid_fraction
        if cfg.model.early_stopping or cfg.model.valid_fraction
        else 0.0,
        seed=cfg.split.seed,
        split_column=cfg.split.column,
        max_categories=cfg.preprocess.max_categories,
        covariance=cfg.preprocess.pca is not False,
    )


# ------------------------------------------------------------ partition work
def _mix(h: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``h + seed``: the seed reshuffles every row's draw.
    (In place on one new array: no temporary per step.)"""
    z = np.add(h, np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64), dtype=np.uint64)
    t = np.empty_like(z)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=t)
        np.bitwise_xor(z, t, out=z)
        np.multiply(z, np.uint64(mult), out=z)
    np.right_shift(z, np.uint64(31), out=t)
    np.bitwise_xor(z, t, out=z)
    return z


def _below(fraction: float) -> np.uint64:
    """The integer bound ``t`` with ``k * 2**-53 < fraction`` exactly when
    ``k < t``, for integers ``0 <= k < 2**53`` (the row draws)."""
    if not fraction > 0:
        return np.uint64(0)
    if fraction >= 1:
        return np.uint64(2**53)
    return np.uint64(math.ceil(fraction * 2.0**53))  # exact: a power-of-two scaling


def assign_split(df: pd.DataFrame, spec: Spec) -> np.ndarray:
    """TRAIN / VALID / HOLDOUT per row, from a seeded hash of the row's key
    (or of all its used values): the same rows whatever the partitioning
    and the number of workers."""
    if len(df) == 0:
        return np.empty(0, dtype=np.int8)
    cols = [spec.key] if spec.key else [c for c in spec.columns if c != spec.split_column]
    h = pd.util.hash_pandas_object(df[cols], index=False).to_numpy()
    # The draw of a row is u = k * 2**-53 in [0, 1), k its top 53 mixed bits;
    # u < cut is compared as k < _below(cut), without forming u.
    k = _mix(h, spec.seed)
    np.right_shift(k, np.uint64(11), out=k)
    part = np.full(len(df), TRAIN, dtype=np.int8)
    if spec.split_column:
        marked = df[spec.split_column].fillna(False).astype(bool).to_numpy()
        part[(~marked) & (k < _below(spec.valid_fraction))] = VALID
        part[marked] = HOLDOUT
        return part
    h_cut = spec.holdout
    v_cut = h_cut + (1.0 - h_cut) * spec.valid_fraction
    part[k < _below(v_cut)] = VALID
    part[k < _below(h_cut)] = HOLDOUT
    return part


@dataclass
class Scan:
    """Statistics gathered in the first pass, mergeable across partitions."""

    rows: int = 0
    missing_target: int = 0
    parts: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    moments: Moments | None = None
    categories: dict[str, set[str]] = field(default_factory=dict)
    classes: set[Any] = field(default_factory=set)

    def merge(self, other: Scan) -> Scan:
        moments = (
            other.moments
            if self.moments is None
            else self.moments
            if other.moments is None
            else self.moments.merge(other.moments)
        )
        cats = {
            k: self.categories.get(k, set()) | other.categories.get(k, set())
            for k in self.categories | other.categories
        }
        return Scan(
            self.rows + other.rows,
            self.missing_target + other.missing_target,
            self.parts + other.parts,
            moments,
            cats,
            self.classes | other.classes,
        )


def _present(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    present = df[spec.target].notna()
    return df if bool(present.all()) else df[present]  # no copy in the usual case


SCAN_BLOCK_ROWS = 131_072  # rows converted at a time (when not float32): bounds memory per task


def with_split(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """The partition with the split part of each row (column ``PART``): the
    passes over the data take it from there instead of hashing the rows
    again. Arrow-backed columns other than the numeric features (read so
    by :func:`_grouped`) become NumPy-backed, as a default read has them."""
    numeric = set(spec.numeric)
    back = {
        c: _numpy_backed(df[c])
        for c, t in df.dtypes.items()
        if isinstance(t, pd.ArrowDtype) and c not in numeric
    }
    if back:
        df = df.assign(**back)
    return df.assign(**{PART: assign_split(df, spec)})


def _numpy_backed(col: pd.Series) -> pd.Series:
    """``col`` as a default read has it: an Arrow-backed float column as a
    NumPy one, NaN for missing values; any other column unchanged."""
    t = col.dtype
    if not isinstance(t, pd.ArrowDtype):
        return col
    return pd.Series(
        col.to_numpy(dtype=t.numpy_dtype, na_value=np.nan), index=col.index, name=col.name
    )


def _split_of(df: pd.DataFrame, spec: Spec) -> np.ndarray:
    return df[PART].to_numpy() if PART in df.columns else assign_split(df, spec)


def scan_partition(df: pd.DataFrame, spec: Spec) -> Scan:
    """First-pass statistics of one partition."""
    out = Scan(rows=len(df))
    kept = _present(df, spec)
    out.missing_target = len(df) - len(kept)
    part = _split_of(kept, spec)
    out.parts = np.bincount(part, minlength=3).astype(np.int64)
    rows = np.flatnonzero(part == TRAIN)
    cols = list(spec.numeric)
    x = Columns.of_frame(kept, cols)
    if x is not None:  # Arrow-backed floats: Moments.of gathers the rows from them
        out.moments = Moments.of(x, rows=rows, covariance=spec.covariance)
    elif cols:
        # Slice by slice: a partition is never converted to float64 whole
        # (float32 columns stay float32), and Moments.of picks the training
        # rows of each slice block by block (no copy of them).
        moments = None
        for start in range(0, max(len(kept), 1), SCAN_BLOCK_ROWS):
            stop = start + SCAN_BLOCK_ROWS
            lo, hi = np.searchsorted(rows, [start, stop])
            if moments is not None and lo == hi:
                continue
            block = _frame_to_array(kept.iloc[start:stop], cols, compact=True)
            sel = rows[lo:hi] - start if start else rows[lo:hi]
            m = Moments.of(block, rows=sel, covariance=spec.covariance)
            moments = m if moments is None else moments.merge(m)
        out.moments = moments
    for c in spec.categorical:
        vals = kept[c].iloc[rows].dropna().unique()
        out.categories[c] = {str(v) for v in vals[: spec.max_categories + 1]}
    if spec.task != "regression":
        vals = kept[spec.target].unique()
        out.classes = set(pd.Series(vals).tolist()[: MAX_CLASSES + 1])
    return out


def featurize_partition(
    df: pd.DataFrame, spec: Spec, pre: Preprocessor, classes: list[Any]
) -> pd.DataFrame:
    """Second pass: raw partition -> model features, label, split (and key)."""
    kept = _present(df, spec)
    return _featurized(kept, spec, pre, classes, _split_of(kept, spec), [None])[0]


def _featurized(
    kept: pd.DataFrame,
    spec: Spec,
    pre: Preprocessor,
    classes: list[Any],
    part: np.ndarray,
    rows: list[np.ndarray | None],
) -> list[pd.DataFrame]:
    """The model features, label, split part (and key) of the rows
    ``kept.iloc[r]`` for each ``r`` in ``rows`` (None: every row), one
    frame each, every column made straight from ``kept``."""
    feats = pre.transform_frames(kept, rows)
    if spec.task == "regression":
        label = kept[spec.target].to_numpy(dtype=np.float64)
    else:
        label = encode_labels(kept[spec.target], classes).astype(np.float32)
    key = _numpy_backed(kept[spec.key]).to_numpy() if spec.key else None
    for f, r in zip(feats, rows, strict=True):
        f[LABEL] = label if r is None else label[r]
        f[PART] = part if r is None else part[r]
        if key is not None:
            f[spec.key] = key if r is None else key[r]
    return feats


def score_holdout(df: pd.DataFrame, model: Model, spec: Spec) -> pd.DataFrame:
    """Predictions for transformed holdout rows, with the label restored."""
    return _scored_frame(df, model, spec, model._raw_predict(df))


def score_and_summarize(df: pd.DataFrame, model: Model, spec: Spec) -> tuple[pd.DataFrame, Any]:
    """:func:`score_holdout` and the metric summary of the same rows
    (:func:`scaler.evaluate.summarize_partition`), in one task: the summary
    takes the prediction and label arrays as they are."""
    from scaler.evaluate import summarize_partition

    pred = model._raw_predict(df)
    frame = _scored_frame(df, model, spec, pred)
    return frame, summarize_partition(df[LABEL].to_numpy(), pred, spec.task)


def _scored_frame(df: pd.DataFrame, model: Model, spec: Spec, pred: np.ndarray) -> pd.DataFrame:
    out = model._output_frame(pred, df.index)
    lab = df[LABEL].to_numpy()
    if spec.task == "regression":
        target = lab
    else:
        target = pd.Index(model.classes).take(lab.astype(np.int64)).array
    front = {}
    if spec.key:
        front[spec.key] = df[spec.key].to_numpy()
    front[spec.target] = target
    front[LABEL] = lab
    return pd.concat([pd.DataFrame(front, index=df.index), out], axis=1)


# ------------------------------------------------------------------ results
@dataclass
class RunResult:
    """What a run produced: the model, its holdout metrics and where things went."""

    model: Model
    metrics: dict[str, float]
    timings: dict[str, float]
    counts: dict[str, int]
    bundle_url: str
    predictions_url: str
    config: RunConfig
    report_url: str | None = None

    def summary(self) -> str:
        lines = ["Stage timings (s):"]
        for k, v in self.timings.items():
            lines.append(f"  {k:<10} {v:8.2f}")
        lines.append("Rows: " + ", ".join(f"{k}={v:,}" for k, v in self.counts.items()))
        lines.append(
            "Holdout metrics: "
            + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in self.metrics.items()
            )
        )
        lines.append(f"Model bundle:       {redact(self.bundle_url)}")
        lines.append(f"Scored holdout:     {redact(self.predictions_url)}")
        if self.report_url:
            lines.append(f"Report:             {redact(self.report_url)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        from scaler._display import run_rows, text_block

        return text_block("scaler.RunResult", run_rows(self))

    def _repr_html_(self) -> str:
        from scaler._display import html_block, run_rows

        return html_block("scaler.RunResult", run_rows(self))


@contextlib.contextmanager
def _client_for(
    cfg: RunConfig, client: Any, scheduler: str | None, echo: Callable[[str], None] | None = None
) -> Iterator[Any]:
    if client is not None:
        with client.as_current():
            yield client
        return
    # An address given for this run wins over the current client; the
    # current client wins over DASK_SCHEDULER_ADDRESS and a new LocalCluster.
    if not scheduler and not cfg.cluster.address:
        existing = current_client()
        if existing is not None:
            yield existing
            return
    started = connect(scheduler, config=cfg.cluster)
    if echo is not None:
        where = "local cluster" if getattr(started, "_scaler_owns_cluster", False) else "scheduler"
        echo(f"Dask {where}: {started.scheduler.address}")
        if cfg.cluster.dashboard:
            echo(f"Dask dashboard: {started.dashboard_link}")
    try:
        with started.as_current():
            yield started
    finally:
        close(started)


class _Timer:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.timings: dict[str, float] = {}
        self.echo = echo

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.echo(f"[{name}] {what}...")
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.echo(f"[{name}] done in {self.timings[name]:.2f} s")


def _sorted_values(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def run(
    config: Any,
    *,
    client: Any = None,
    scheduler: str | None = None,
    echo: Callable[[str], None] | None = None,
    progress: str | bool = "auto",
    resume: bool = False,
) -> RunResult:
    """Run the whole pipeline of ``config`` (a :class:`RunConfig`, a dict or
    a TOML path) and return a :class:`RunResult`.

    Training writes a checkpoint every ``[model] checkpoint_every`` rounds
    under ``OUTPUT/checkpoints``; a lost worker costs only the rounds since
    the last one. ``resume=True`` (``scaler run --resume``) continues from
    the last checkpoint of a previous, interrupted run of the same config.

    ``client`` is used when given; otherwise the current Dask client, or a
    cluster started from ``[cluster]`` (closed at the end). Every config and
    schema check happens before any data is read, and nothing is written
    before the model is trained and evaluated. ``echo`` receives the stage
    lines; ``progress`` ("auto", "bar", "plain", "notebook" or False, see
    :mod:`scaler.progress`) shows partitions done and boosting rounds.

    Examples
    --------
    >>> import scaler
    >>> result = scaler.run("config.toml")  # doctest: +SKIP
    >>> result.metrics["auc"]  # doctest: +SKIP
    """
    cfg = load_config(config)
    echo = echo or (lambda msg: log.info(msg))
    prog = Progress(progress, echo=echo)
    timer = _Timer(echo)
    t_start = time.perf_counter()

    # Everything that can be checked without reading data pages.
    df, spec, read_info = _read(cfg)
    bundle_url = storage.join(cfg.output.url, "model")
    preds_url = storage.join(cfg.output.url, "holdout_predictions")
    if not cfg.output.overwrite and storage.exists(
        storage.join(bundle_url, "manifest.json"), cfg.output.storage_options
    ):
        raise ConfigError(
            f"{redact(bundle_url)!r} already holds a model and [output] overwrite = false. "
            "Choose another [output] url, or set overwrite = true."
        )

    ckpt_url = storage.join(cfg.output.url, "checkpoints")
    fp = _fingerprint(cfg)
    start = _resume_point(cfg, ckpt_url, fp, echo) if resume else None

    with _client_for(cfg, client, scheduler, echo) as cl:
        prep = _prepare_features(cfg, df, spec, cl, timer, prog, read_info=read_info)
        counts, sp = prep.counts, prep.preprocessor.scaler_pca

        # ---- train
        params, rounds = xgb_params(cfg.model, task=spec.task, n_classes=len(prep.classes))
        with timer.stage("train", f"training XGBoost ({cfg.model.kind}, {rounds} round(s))"):
            model, result = prep._train(
                cfg.model,
                prog,
                checkpoint_url=ckpt_url if cfg.model.checkpoint_every else None,
                checkpoint_every=cfg.model.checkpoint_every,
                storage_options=cfg.output.storage_options,
                fingerprint=fp,
                resume=start,
                max_retries=cfg.model.max_retries,
                min_workers=cfg.cluster.min_workers,
                wait_timeout=cfg.cluster.wait_timeout,
                echo=echo,
            )

        # ---- evaluate on the holdout, on the cluster
        with timer.stage("evaluate", "scoring the holdout and computing metrics"):
            scored, metrics, summary = prep._score_and_evaluate(model, prog)

        # ---- write: scored holdout, then the bundle (its manifest last)
        out = cfg.output
        with timer.stage("write", "writing the scored holdout and the model bundle"):
            storage.write_parquet(
                scored.drop(columns=[LABEL]),
                preds_url,
                storage_options=out.storage_options,
                rows=int(metrics["n"]),  # the evaluation counted them
            )
            timings = dict(timer.timings)
            timings["total"] = round(time.perf_counter() - t_start, 3)
            model.info = {
                **model.info,
                "kind": cfg.model.kind,
                "objective": cfg.model.objective,
                "metrics": metrics,
                "counts": counts,
                "timings": timings,
                "best_iteration": result.best_iteration,
                "rounds": result.rounds_trained,
                "params": params,
                "config": cfg.to_dict(),
                "history": result.history,
                "retries": result.retries,
                "resumed_from_round": result.resumed_from,
            }
            if sp is not None and sp.explained_variance_ratio_ is not None:
                model.info["explained_variance_ratio"] = sp.explained_variance_ratio_.tolist()
            save_bundle(model, bundle_url, storage_options=out.storage_options)
            # The bundle is committed: the checkpoints have served their purpose.
            clear_checkpoints(ckpt_url, out.storage_options)
        report_url = None
        if out.report:
            from scaler.report import write_report

            with timer.stage("report", "writing report.html and the plots"):
                report_url = write_report(
                    bundle_url,
                    model=model,
                    predictions_url=preds_url,
                    storage_options=out.storage_options,
                    holdout=scored,  # still in cluster memory: not read back
                    summary=summary,  # a binary model's curves over every holdout row
                ).html_url
        timings = dict(timer.timings)
        timings["total"] = round(time.perf_counter() - t_start, 3)
        model.info["timings"] = timings
    return RunResult(model, metrics, timings, counts, bundle_url, preds_url, cfg, report_url)


def _fingerprint(cfg: RunConfig) -> str:
    """What a checkpoint must agree with: data, split, preprocessing, model
    (not the number of rounds, retries or where the cluster is)."""
    d, m = cfg.data, cfg.model
    return fingerprint(
        {
            "data": [d.url, d.target, d.features, d.exclude, d.filters, d.key],
            "split": cfg.to_dict()["split"],
            "preprocess": cfg.to_dict()["preprocess"],
            "model": [m.kind, m.objective, m.early_stopping, m.valid_fraction, m.params],
        }
    )


def _resume_point(cfg: RunConfig, url: str, fp: str, echo: Callable[[str], None]) -> Any:
    ckpt = read_checkpoint(url, cfg.output.storage_options)
    if ckpt is None:
        echo(f"[train] no checkpoint at {redact(url)}: training from round 0")
        return None
    if ckpt.fingerprint != fp:
        raise ConfigError(
            f"The checkpoint at {redact(url)} comes from a run with a different data, split, "
            "preprocess or model config, so it cannot be resumed. Run without --resume "
            "to start over (the checkpoint will be replaced)."
        )
    echo(f"[train] resuming from the checkpoint at round {ckpt.rounds}")
    return ckpt


# ------------------------------------------------- prepare once, train often
@dataclass
class Prepared:
    """Features read, fitted (scaling + PCA) and transformed once, persisted
    in cluster memory, ready to train several models on: see :func:`prepare`.

    Attributes
    ----------
    config : RunConfig
    preprocessor : Preprocessor
        The fitted column handling + :class:`ScalePCA`.
    classes : list
        Class values (classification).
    counts : dict
        Rows read / dropped / per split part.
    parts : dict
        ``"train"``, ``"valid"`` and ``"holdout"`` (those with rows): each a
        persisted Dask dataframe of that part's model features, label,
        split part (and key). :attr:`features` is all of them together.
    timings : dict
        Seconds per preparation stage.
    """

    config: RunConfig
    spec: Spec = field(repr=False)
    preprocessor: Preprocessor
    classes: list[Any]
    counts: dict[str, int]
    input_dtypes: dict[str, str] = field(repr=False)
    parts: dict[str, Any] = field(repr=False)
    timings: dict[str, float]
    client: Any = field(repr=False, default=None)
    _meta: Any = field(repr=False, default=None)
    _futures: dict[str, list[Any]] = field(repr=False, default_factory=dict)
    # training's bin-edge sample (futures, one per partition) and its row count
    _cut_samples: tuple[list[Any], int] | None = field(repr=False, default=None)

    @property
    def features(self) -> Any:
        """All persisted rows (every split part) as one Dask dataframe."""
        return _concat(self.parts)

    def train(self, *, progress: str | bool = False, **model: Any) -> Model:
        """Train one model on the persisted features and return it.

        Keyword arguments override keys of ``[model]`` (``rounds``,
        ``early_stopping``, ``kind``, and ``params``, which is merged into
        the configured params). ``objective`` and ``valid_fraction`` are
        fixed by the preparation. ``model.info`` holds the per-round
        ``history``, ``best_iteration``, ``best_score`` (the last eval
        metric on the validation rows, the one early stopping watches,
        named by ``valid_metric``) and ``train_seconds``.

        Examples
        --------
        >>> m = prep.train(rounds=50, params={"max_depth": 4})  # doctest: +SKIP
        >>> m.info["best_score"]  # doctest: +SKIP
        """
        mc = self.config.model
        for key in ("objective", "valid_fraction"):
            if key in model and model[key] != getattr(mc, key):
                raise ConfigError(
                    f"Prepared.train() cannot change [model] {key} ({getattr(mc, key)!r} -> "
                    f"{model[key]!r}): the labels and the validation rows were prepared for it. "
                    "Call scaler.prepare() again with the new value."
                )
        if "params" in model:
            model["params"] = {**mc.params, **(model["params"] or {})}
        cfg = self.config.replace(model=model)
        trained, _ = self._train(cfg.model, Progress(progress))
        trained.info["config"] = cfg.to_dict()
        return trained

    def _train(self, mc: Any, prog: Progress, **train_kwargs: Any) -> tuple[Model, Any]:
        spec, parts = self.spec, self.parts
        fcols = self.preprocessor.output_columns
        params, rounds = xgb_params(mc, task=spec.task, n_classes=len(self.classes))

        def make_data() -> tuple[Any, Any, Any, Any]:
            # Column selections of the persisted parts: views, no copies.
            tr, va = parts["train"], parts.get("valid")
            if va is None:
                return tr[fcols], tr[LABEL], None, None
            return tr[fcols], tr[LABEL], va[fcols], va[LABEL]

        t0 = time.perf_counter()
        with prog.rounds(self.client, rounds) as reporter:
            result = train_booster(
                self.client,
                make_data=make_data,
                params=params,
                rounds=rounds,
                early_stopping=mc.early_stopping if mc.kind == "xgboost" else 0,
                extra_callbacks=[reporter] if reporter is not None else None,
                train_eval_rows=mc.train_eval_rows,
                bin_sample_rows=mc.bin_sample_rows,
                train_rows=self.counts["train"],
                cut_samples=(
                    self._cut_samples[0]
                    if self._cut_samples and self._cut_samples[1] == mc.bin_sample_rows
                    else None
                ),
                **train_kwargs,
            )
        model = Model(
            preprocessor=self.preprocessor,
            booster=result.booster,
            task=spec.task,
            target=spec.target,
            classes=self.classes,
            key=spec.key,
            input_dtypes=self.input_dtypes,
        )
        valid = result.history.get("valid", {})
        metric = list(valid)[-1] if valid else None
        best = None
        if metric:
            at = result.best_iteration if result.best_iteration is not None else -1
            best = float(valid[metric][at])
        model.info = {
            "kind": mc.kind,
            "objective": mc.objective,
            "counts": self.counts,
            "best_iteration": result.best_iteration,
            "rounds": result.rounds_trained,
            "params": params,
            "history": result.history,
            "valid_metric": metric,
            "best_score": best,
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        sp = self.preprocessor.scaler_pca
        if sp is not None and sp.explained_variance_ratio_ is not None:
            model.info["explained_variance_ratio"] = sp.explained_variance_ratio_.tolist()
        return model, result

    def _score_and_evaluate(
        self, model: Model, prog: Progress | None = None
    ) -> tuple[Any, dict[str, float], Any]:
        """The scored holdout rows, persisted on the cluster, their metrics
        and the merged metric summary (:class:`scaler.evaluate.Summary`,
        which the report draws from). Each partition is scored and
        summarized by one task; the summaries merge in a tree on the
        workers."""
        import dask
        import dask.dataframe as dd

        from scaler.evaluate import finalize, merged_summary

        ho, spec = self.parts["holdout"], self.spec
        smeta = score_holdout(self._meta.iloc[:0], model, spec)
        # shipped once per worker, not once per task; one thread per task
        shared = dask.delayed(model._for_tasks(), pure=False)
        pairs = [
            dask.delayed(score_and_summarize, nout=2, pure=False)(p, shared, spec)
            for p in ho.to_delayed()
        ]
        final = merged_summary([p[1] for p in pairs])
        *frames, final = self.client.compute([*(p[0] for p in pairs), final])  # one graph
        if prog is not None:
            prog.track(frames, "evaluate")
        scored = dd.from_delayed(frames, meta=smeta, verify_meta=False).persist()
        summary = final.result()
        return scored, finalize(summary), summary

    def evaluate(self, model: Model) -> dict[str, float]:
        """Holdout metrics of ``model`` (computed on the cluster); also stored
        in ``model.info["metrics"]`` so that :func:`save_bundle` records them."""
        with self.client.as_current():
            _, metrics, _ = self._score_and_evaluate(model)
        model.info["metrics"] = metrics
        return metrics

    def release(self) -> None:
        """Drop the persisted features from cluster memory."""
        self.parts, self._futures, self._cut_samples = {}, {}, None

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def prepare(
    config: Any,
    *,
    client: Any = None,
    echo: Callable[[str], None] | None = None,
    progress: str | bool = "auto",
) -> Prepared:
    """Read, split, fit scaling + PCA and transform the data of ``config``
    once, keeping the model features in cluster memory: train several
    models on them with :meth:`Prepared.train` (a hyper-parameter search)
    without recomputing anything. :func:`run` does the same steps for one
    model.

    Needs a running client (``client`` or the current one), since the
    features live in its cluster's memory.

    Examples
    --------
    >>> with scaler.connect() as client:  # doctest: +SKIP
    ...     prep = scaler.prepare("config.toml")
    ...     models = [prep.train(params={"max_depth": d}) for d in (3, 6)]
    ...     best = min(models, key=lambda m: m.info["best_score"])
    ...     prep.evaluate(best)
    """
    cfg = load_config(config)
    cl = client if client is not None else current_client()
    if cl is None:
        raise ValueError(
            "scaler.prepare() keeps the features in the memory of a Dask cluster and needs a "
            "client: pass client=..., or start one first, e.g. `client = scaler.connect()`."
        )
    echo = echo or (lambda msg: log.info(msg))
    df, spec, read_info = _read(cfg)
    with cl.as_current():
        return _prepare_features(
            cfg, df, spec, cl, _Timer(echo), Progress(progress, echo=echo), read_info=read_info
        )


def _read(
    cfg: RunConfig,
    *,
    group_bytes: int | None = None,
    check: bool = True,
    arrow_floats: bool = False,
) -> tuple[Any, Spec, dict[str, Any]]:
    """The lazy dataframe of the used columns, the resolved column roles,
    and what the files' footers say (``rows``, ``file_bytes``: see
    :func:`scaler.storage.read_dataset`, which ``group_bytes``, ``check``
    and ``arrow_floats`` go to)."""
    d = cfg.data
    info: dict[str, Any] = {}
    df = storage.read_dataset(
        d.url,
        filters=d.filters,
        storage_options=d.storage_options,
        cache=d.cache,
        cache_dir=d.cache_dir or None,
        check=check,
        info=info,
        group_bytes=group_bytes,
        arrow_floats=arrow_floats,
    )
    spec = resolve_columns(df.dtypes, cfg)
    return df[spec.columns], spec, info


def _group_bytes_for(cl: Any, file_bytes: Any) -> int | None:
    """How scaler groups files of uncompressed ``file_bytes`` into
    partitions on ``cl``'s cluster (:func:`scaler.storage.group_bytes`,
    for twice its threads); None: a partition per file."""
    return storage.group_bytes(file_bytes, 2 * _cluster_threads(cl))


def _grouped(cfg: RunConfig, file_bytes: Any, cl: Any) -> tuple[Any, str]:
    """The data read again for the passes over it, and how, for the log:
    small files grouped into partitions for ``cl`` (:func:`_group_bytes_for`),
    and float columns left in the Arrow buffers Parquet decodes them into
    (:class:`scaler.preprocess.Columns` reads them there; a NumPy-backed
    frame would first copy them all). This lists the files once more."""
    gb = _group_bytes_for(cl, file_bytes)
    df = _read(cfg, group_bytes=gb, check=False, arrow_floats=True)[0]
    if file_bytes and df.npartitions != len(file_bytes):
        return df, f"{len(file_bytes)} files in {df.npartitions} partitions; "
    return df, ""


HOLD_RAW_SHARE = 0.1  # hold_raw = "auto": raw columns up to this share of cluster memory


def _raw_bytes(df: Any, rows: int) -> int:
    """Estimated in-memory size of ``rows`` rows of ``df``'s columns."""
    width = 0
    for dt in df.dtypes:
        t = dt if isinstance(dt, np.dtype) else getattr(dt, "numpy_dtype", None)  # Arrow-backed
        width += t.itemsize if t is not None and t.kind in "biufmM" else 32  # strings, categories
    return int(rows * width)


def _cluster_memory(cl: Any) -> int:
    """The summed memory limit of the cluster's workers (bytes; 0 if unknown)."""
    limits = [int(w.get("memory_limit") or 0) for w in _workers(cl)]
    return 0 if not limits or 0 in limits else sum(limits)


def _cluster_threads(cl: Any) -> int:
    """The number of threads of the cluster's workers, together (at least 1)."""
    return max(1, sum(int(w.get("nthreads") or 0) for w in _workers(cl)))


def _hold_raw(cfg: RunConfig, df: Any, rows: int | None, cl: Any) -> tuple[int, str]:
    """How many of ``df``'s partitions (the first ones) to keep in memory
    between the two passes, and why. ``"auto"`` holds as many as fit
    HOLD_RAW_SHARE of the cluster's memory: all of them when the data is
    small, a part when it is not (the rest is read again to transform),
    never more than that share however large the data."""
    n = int(df.npartitions)
    mode = cfg.preprocess.hold_raw
    if mode is not True and mode is not False:
        if rows is None:
            return 0, "row count unknown"
        need, have = _raw_bytes(df, rows), _cluster_memory(cl)
        if not have:
            return 0, "workers have no memory limit"
        budget = HOLD_RAW_SHARE * have
        size = f"raw columns ~{need / 2**30:.2f} GiB"
        of = f"{HOLD_RAW_SHARE:.0%} of the cluster's {have / 2**30:.1f} GiB"
        if need <= budget:
            return n, f"{size}, at most {of}"
        return min(n, int(budget * n // need)), f"{size}, more than {of}"
    return (n if mode else 0), "[preprocess] hold_raw"


def _hold_line(held: int, n: int) -> str:
    """What the scan says about holding ``held`` of ``n`` partitions."""
    if held >= n:
        return "held in memory"
    if held == 0:
        return "streamed, read again to transform"
    return f"{held} of {n} partitions held in memory, the rest read again to transform"


def featurize_split(
    df: pd.DataFrame,
    spec: Spec,
    pre: Preprocessor,
    classes: list[Any],
    codes: tuple[int, ...],
    sample: float = 0.0,
) -> tuple[pd.DataFrame, ...]:
    """:func:`featurize_partition` cut into the rows of each split part in
    ``codes``, in one task (see :func:`_split_rows` for ``sample``): each
    part is transformed straight into its own frame, with no frame of
    every row to cut it from."""
    from scaler.train import _spread

    kept = _present(df, spec)
    part = _split_of(kept, spec)
    rows: list[np.ndarray | None] = []
    for code in codes:
        r = np.flatnonzero(part == code)
        rows.append(None if len(r) == len(kept) else r)
    out = _featurized(kept, spec, pre, classes, part, rows)
    if sample > 0:
        out.append(_spread(out[codes.index(TRAIN)][pre.output_columns], sample))
    return tuple(out)


def _split_rows(
    frame: pd.DataFrame,
    codes: tuple[int, ...],
    sample: float = 0.0,
    columns: list[str] | None = None,
) -> tuple[pd.DataFrame, ...]:
    """The rows of each split part ``codes`` of a featurized partition (the
    frame itself when all its rows are of a single part). With ``sample``
    > 0, one more frame follows: that fraction of the training rows'
    ``columns`` (the model features), evenly spaced, which training takes
    its bin edges from (:func:`_cut_fraction`)."""
    from scaler.train import _spread

    part = frame[PART].to_numpy()
    out = []
    for code in codes:
        rows = np.flatnonzero(part == code)
        out.append(frame if len(rows) == len(frame) else frame.take(rows))
    if sample > 0:
        out.append(_spread(out[codes.index(TRAIN)][columns], sample))
    return tuple(out)


def _cut_fraction(cfg: RunConfig, spec: Spec, counts: dict[str, int]) -> float:
    """The share of the training rows that training's bin edges come from
    (``[model] bin_sample_rows`` of them), taken while the features are
    made; 0 when XGBoost sketches every row: a categorical feature, or
    fewer than four times as many training rows."""
    n = cfg.model.bin_sample_rows
    if not n or spec.categorical or counts["train"] < 4 * n:
        return 0.0
    return n / counts["train"]


PART_CODES = {"train": TRAIN, "valid": VALID, "holdout": HOLDOUT}


def _part_codes(counts: dict[str, int]) -> tuple[list[str], tuple[int, ...]]:
    """The split parts that have rows, and their codes."""
    names = [n for n in PART_CODES if counts.get(n)]
    return names, tuple(PART_CODES[n] for n in names)


def _pinned(workers: list[str] | None, fn: Any, *args: Any) -> Any:
    """The delayed call ``fn(*args)``, to run on ``workers`` when given (or
    on any worker if those are lost)."""
    import dask

    if not workers:
        return dask.delayed(fn, pure=False)(*args)
    with dask.annotate(workers=list(workers), allow_other_workers=True):
        return dask.delayed(fn, pure=False)(*args)


def _partitions(df: Any, held: bool) -> list[Any]:
    """One reference per partition of ``df``, in order: the futures of a
    persisted frame (a task depends on them directly, with no alias task
    per use), else delayed objects."""
    if held:
        from distributed import futures_of

        futs = futures_of(df)
        keys = [f.key for f in futs]
        if (
            all(isinstance(k, tuple) and len(k) == 2 for k in keys)
            and len({k[0] for k in keys}) == 1
            and sorted(k[1] for k in keys) == list(range(df.npartitions))
        ):
            return sorted(futs, key=lambda f: f.key[1])
    return list(df.to_delayed())


def _persist_parts(
    cl: Any,
    cut: list[Any],
    names: list[str],
    meta: Any,
    prog: Progress | None = None,
    *,
    with_extra: bool = False,
    holders: list[list[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Any]], list[Any]]:
    """Persist each split part of featurized partitions as its own Dask
    dataframe. ``cut`` holds one delayed tuple per partition: its rows of
    each part in ``names`` (see :func:`featurize_split`). Training then
    reads its rows without a filtered copy; parts without rows are left out.
    One task makes and cuts each partition, and the parts stay on the
    worker that cut them (pinned there, not left to the scheduler, which
    may move a cheap task to an idle worker): every worker that trains
    also holds validation rows, which XGBoost needs on each worker when a
    feature is categorical. The whole frame leaves memory once it is cut.

    ``holders`` names, per partition, the workers its tuple is pinned to
    (those holding its raw rows; see :func:`_pinned`): the pieces are
    pinned there too, and everything goes to the scheduler at once.
    Without it, the partitions are cut first, wherever the scheduler puts
    them, and the pieces pinned to where they were cut. ``cut`` is emptied:
    once the tasks are submitted, only they hold what they depend on.

    Returns the parts, the futures of each part's partitions (a lost one
    is recomputed from the graph, on any worker), and, ``with_extra``, the
    futures of each tuple's one more, last element (else an empty list)."""
    import operator

    import dask.dataframe as dd
    from distributed import wait

    tasks = list(cut)
    cut.clear()  # the caller's list no longer holds what the tasks depend on
    if holders is None:
        tasks = cl.compute(tasks)
        if prog is not None:
            prog.track(tasks, "transform")
            prog = None
        wait(tasks)
        where = cl.who_has(tasks)  # one round trip for all
        holders = [list(where.get(c.key, ())) for c in tasks]
    k, n = len(names), len(tasks)
    pieces = [
        _pinned(workers, operator.getitem, c, i)
        for c, workers in zip(tasks, holders, strict=True)
        for i in range(k)
    ]
    if with_extra:  # one more element per tuple (a sample): wherever it lands
        pieces += [_pinned(None, operator.getitem, c, -1) for c in tasks]
    del tasks
    futs = cl.compute(pieces)  # one graph
    del pieces
    by_part = {name: futs[i : n * k : k] for i, name in enumerate(names)}
    if prog is not None:
        prog.track(by_part[names[0]], "transform")
    wait(futs[: n * k])
    parts = {
        name: dd.from_delayed(fs, meta=meta, verify_meta=False) for name, fs in by_part.items()
    }
    return parts, by_part, futs[n * k :]


def _prepare_features(
    cfg: RunConfig,
    df: Any,
    spec: Spec,
    cl: Any,
    timer: _Timer,
    prog: Progress,
    *,
    read_info: dict[str, Any] | None = None,
) -> Prepared:
    """Scan, fit scaling + PCA, and persist the model features on the cluster.
    ``read_info``: what :func:`_read` learnt from the files' footers."""
    import dask
    from distributed import Future

    if cfg.preprocess.feature_cache:
        from scaler import featcache

        cached, fc_fingerprint = featcache.load(cfg, spec, df, timer.echo, cl)
        if cached is not None:
            cached.client = cl
            return cached
    input_dtypes = {c: str(df.dtypes[c]) for c in spec.features}
    with contextlib.ExitStack() as passes:
        passes.enter_context(_heap_kept(cl))  # both passes reuse freed buffers
        # ---- pass 1: every statistic at once (raw columns kept in memory when small)
        read_info = read_info or {}
        folder = read_info.get("cache_folder")  # [data] cache = "local"
        if folder and cfg.data.cache_keep_days:
            _prune_cache(cl, folder, cfg.data.cache_keep_days)
        with timer.stage("scan", "reading data and computing statistics"):
            # the read as the cluster will run it is part of the stage's time
            df, layout = _grouped(cfg, read_info.get("file_bytes"), cl)
            hold, why = _hold_raw(cfg, df, read_info.get("rows"), cl)
            timer.echo(f"[scan] {layout}{_hold_line(hold, df.npartitions)}: {why}")
            src = df.map_partitions(with_split, spec, meta=with_split(df._meta, spec))
            everything = hold >= src.npartitions
            if everything:
                src = src.persist()
            raw = _partitions(src, everything)
            if 0 < hold < len(raw):  # the first partitions stay, the rest stream
                raw[:hold] = cl.compute(raw[:hold])
            futs = cl.compute([dask.delayed(scan_partition)(p, spec) for p in raw])
            prog.track(futs, "scan")
            while len(futs) > 1:  # merge on the workers, in a tree of fan-in 8
                futs = [
                    cl.submit(_merge_many, futs[i : i + 8], Scan.merge, pure=False)
                    for i in range(0, len(futs), 8)
                ]
            scan: Scan = futs[0].result()
        counts = {
            "rows_read": int(scan.rows),
            "missing_target_dropped": int(scan.missing_target),
            "train": int(scan.parts[TRAIN]),
            "valid": int(scan.parts[VALID]),
            "holdout": int(scan.parts[HOLDOUT]),
        }
        _check_counts(counts, cfg)
        classes: list[Any] = []
        if spec.task != "regression":
            classes = [_py(v) for v in _sorted_values(scan.classes)]
            _check_classes(classes, cfg)
        categories = {}
        for c in spec.categorical:
            vals = scan.categories.get(c, set())
            if len(vals) > spec.max_categories:
                raise DataError(
                    f"Column {c!r} has more than {spec.max_categories} distinct values in the "
                    "training rows; as a categorical feature that is too many. Exclude it "
                    "([data] exclude), or raise [preprocess] max_categories."
                )
            categories[c] = sorted(vals)
        if scan.moments is not None:
            m = scan.moments
            bad = ~np.isfinite(m.s1) | ~np.isfinite(m.zz if m.zz.ndim == 1 else np.diag(m.zz))
            if bad.any():
                cols = [spec.numeric[i] for i in np.flatnonzero(bad)]
                raise DataError(
                    f"Column(s) {cols} contain infinite values (inf or -inf). Replace or filter "
                    "them before training, or exclude the columns with [data] exclude."
                )

        # ---- fit scaling + PCA on the training rows
        sp = None
        if spec.numeric and (cfg.preprocess.scale or cfg.preprocess.pca is not False):
            sp = ScalePCA(
                scale=cfg.preprocess.scale,
                n_components=None if cfg.preprocess.pca is False else cfg.preprocess.pca,
                method=cfg.preprocess.method,
                batch_size=cfg.preprocess.batch_size,
            )
            if cfg.preprocess.method == "incremental" and sp.n_components is not None:
                seen = scan.moments
                if seen is not None and (seen.count < seen.n).any():  # known from the scan
                    cols = [spec.numeric[i] for i in np.flatnonzero(seen.count < seen.n)]
                    raise DataError(incremental_missing(cols, '[preprocess] method = "covariance"'))
                with timer.stage("fit", "fitting dask-ml StandardScaler + IncrementalPCA"):
                    train_num = df.map_partitions(
                        _train_numeric, spec, meta=df._meta[list(spec.numeric)].astype(np.float64)
                    )
                    sp.fit(train_num)
            else:
                assert scan.moments is not None
                sp._fit_moments(scan.moments, list(spec.numeric))
        pre = Preprocessor(list(spec.numeric), list(spec.categorical), categories, sp)

        # ---- pass 2: features for training and evaluation, kept on the cluster
        with timer.stage("transform", "transforming features"):
            meta = pre.meta()
            meta[LABEL] = np.array(
                [], dtype=np.float64 if spec.task == "regression" else np.float32
            )
            meta[PART] = np.array([], dtype=np.int8)
            if spec.key:
                meta[spec.key] = _numpy_backed(src._meta[spec.key])
            names, codes = _part_codes(counts)
            sample = _cut_fraction(cfg, spec, counts)  # training's bin-edge sample
            # held partitions are cut where they are held: in one graph when
            # all are held, otherwise cut first (see _persist_parts)
            holders = None
            held = [p for p in raw if isinstance(p, Future)]
            if held:
                where = cl.who_has(held)
                holders = [list(where.get(p.key, ())) if isinstance(p, Future) else [] for p in raw]
            all_held = bool(raw) and len(held) == len(raw)
            cut = [
                _pinned(
                    holders[i] if holders else None,
                    featurize_split,
                    *(p, spec, pre, classes, codes, sample),
                )
                for i, p in enumerate(raw)
            ]
            # only the tasks hold the raw partitions now: each leaves memory once it
            # is cut, and the features that follow reuse that memory
            del src, raw, held
            parts, futs, samples = _persist_parts(
                cl,
                cut,
                names,
                meta,
                prog,
                with_extra=sample > 0,
                holders=holders if all_held else None,
            )
            passes.close()  # the workers' heap settings back, freed memory to the OS
    if cfg.preprocess.feature_cache:
        with timer.stage("cache", "writing the feature cache"):
            featcache.save(
                cfg,
                fc_fingerprint,
                _concat(parts),
                pre,
                counts=counts,
                classes=classes,
                input_dtypes=input_dtypes,
            )

    return Prepared(
        config=cfg,
        spec=spec,
        preprocessor=pre,
        classes=classes,
        counts=counts,
        input_dtypes=input_dtypes,
        parts=parts,
        timings=dict(timer.timings),
        client=cl,
        _meta=meta,
        _futures=futs,
        _cut_samples=(samples, cfg.model.bin_sample_rows) if samples else None,
    )


def _prune_cache(cl: Any, folder: str, days: int) -> None:
    """Mark the local-cache folder of this version of the input files as
    used, and remove, in the background, those of other versions that
    nothing has used for ``days`` days (:func:`scaler.storage.prune_cache`):
    in this process (footers are read through the cache here) and on one
    worker of each host (where the data are read through it).
    Housekeeping: it never fails a run."""
    with contextlib.suppress(Exception):
        storage.prune_cache(folder, days, background=True)
    with contextlib.suppress(Exception):
        hosts: dict[str, str] = {}
        for addr, w in workers_by_address(cl).items():
            hosts.setdefault(str(w.get("host", addr)), addr)
        cl.run(storage.prune_cache, folder, days, background=True, workers=list(hosts.values()))


@contextlib.contextmanager
def _heap_kept(cl: Any) -> Iterator[None]:
    """Keep freed memory in the workers' heaps for the passes over the data
    (:func:`scaler._heap.keep`); afterwards, put their settings back and
    give what the passes freed back to the OS (:func:`_after_passes`)."""
    from scaler import _heap

    with contextlib.suppress(Exception):
        cl.run(_heap.keep)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            cl.run(_after_passes)


def _after_passes(dask_worker: Any = None) -> int:
    """:func:`scaler._heap.release`, then :func:`_trim_memory`."""
    from scaler import _heap

    _heap.release()
    return _trim_memory(dask_worker)


TRIM_ABOVE = 0.25  # share of a worker's memory limit its process may use untrimmed


def _trim_memory(dask_worker: Any = None) -> int:
    """Give memory freed by the passes over the raw data back to the OS
    (Arrow's pool and glibc keep it otherwise, and it counts against the
    worker's memory limit during training). On a worker whose process uses
    less than TRIM_ABOVE of its memory limit (or that has none) it does
    nothing: a full garbage collection and trim cost about 0.1 s there for
    memory nothing needs. Returns 1 if memory was given back."""
    import ctypes
    import gc

    if dask_worker is not None:
        limit = dask_worker.memory_manager.memory_limit
        if not limit or dask_worker.monitor.get_process_memory() < TRIM_ABOVE * limit:
            return 0
    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - best effort
        pass
    try:
        return int(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return 0


def _concat(parts: dict[str, Any]) -> Any:
    import dask.dataframe as dd

    frames = list(parts.values())
    return frames[0] if len(frames) == 1 else dd.concat(frames)


def _train_numeric(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    kept = _present(df, spec)
    part = assign_split(kept, spec)
    return kept.loc[part == TRAIN, list(spec.numeric)].astype(np.float64)


def _check_counts(counts: dict[str, int], cfg: RunConfig) -> None:
    url = redact(cfg.data.url)
    if counts["rows_read"] == 0:
        hint = " after the filters" if cfg.data.filters else ""
        raise DataError(
            f"No rows in {url!r}{hint}. Check [data] filters {cfg.data.filters!r} and the URL."
        )
    kept = counts["train"] + counts["valid"] + counts["holdout"]
    if kept == 0:
        raise DataError(
            f"Every row of {url!r} has a missing target {cfg.data.target!r}; nothing to train on."
        )
    if counts["train"] == 0:
        raise DataError(
            f"The split left no training rows ({kept} rows in all). Lower [split] holdout or "
            "[model] valid_fraction, or provide more data."
        )
    if counts["holdout"] == 0:
        raise DataError(
            f"The split left no holdout rows ({kept} rows in all). Raise [split] holdout or "
            "provide more data."
        )


def _check_classes(classes: list[Any], cfg: RunConfig) -> None:
    t = cfg.data.target
    if len(classes) > MAX_CLASSES:
        raise DataError(
            f"Target {t!r} has more than {MAX_CLASSES} distinct values; that is not a "
            "classification target. Use a regression objective such as 'reg:squarederror'."
        )
    if cfg.task == "binary" and len(classes) != 2:
        fix = (
            "Use objective = 'multi:softprob' for more than two classes."
            if len(classes) > 2
            else "A classifier needs at least two classes in the data."
        )
        raise DataError(
            f"Objective 'binary:logistic' needs exactly 2 classes in target {t!r}; found "
            f"{len(classes)}: {classes[:10]}. {fix}"
        )
    if cfg.task == "multiclass" and len(classes) < 2:
        raise DataError(f"Target {t!r} has {len(classes)} class(es); a classifier needs 2 or more.")


# ------------------------------------------------------------------ predict
@dataclass
class PredictResult:
    """Where predictions went and how many rows were scored."""

    url: str
    rows: int
    seconds: float


def predict(
    bundle_url: str,
    data_url: str,
    out_url: str,
    *,
    client: Any = None,
    scheduler: str | None = None,
    storage_options: dict[str, Any] | None = None,
    out_storage_options: dict[str, Any] | None = None,
    bundle_storage_options: dict[str, Any] | None = None,
    filters: list[Any] | None = None,
    cluster: Any = None,
) -> PredictResult:
    """Score the Parquet data at ``data_url`` with the bundle at
    ``bundle_url`` and write partitioned Parquet to ``out_url``: the key
    column (when the model has one and the data holds it) and the
    predictions. Small input files are read several to a partition, as in
    :func:`run` (:func:`scaler.storage.group_bytes`), so there may be fewer
    output files than input files; the rows keep their order. Nothing is
    written unless every partition scored."""
    from distributed import wait

    from scaler.config import ClusterConfig

    t0 = time.perf_counter()
    model = load_bundle(bundle_url, storage_options=bundle_storage_options)
    info: dict[str, Any] = {}
    read: dict[str, Any] = {
        "filters": filters,
        "storage_options": storage_options,
        "arrow_floats": True,  # float columns read in place, as in run (see _grouped)
    }
    df = storage.read_dataset(data_url, info=info, **read)
    model.check_columns(list(map(str, df.columns)), where=f"The data at {redact(data_url)!r}")
    cfg = RunConfig(cluster=cluster or ClusterConfig())
    with _client_for(cfg, client, scheduler) as cl:
        gb = _group_bytes_for(cl, info.get("file_bytes"))
        if gb:
            df = storage.read_dataset(data_url, check=False, group_bytes=gb, **read)
        scored = model.predict(df).persist()
        wait(scored)
        rows = storage.write_parquet(scored, out_url, storage_options=out_storage_options)
    return PredictResult(out_url, rows, round(time.perf_counter() - t0, 3))
