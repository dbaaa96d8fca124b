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

# Per-round metrics that cost O(n): AUC sorts every evaluated row every round
# (add it with params.eval_metric = ["auc", "logloss"]); the holdout AUC is
# computed once at the end anyway.
_DEFAULT_METRICS = {
    "binary": ["logloss"],
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
    retries: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    checkpoint_seconds: float = 0.0


_MAXIMIZE = ("auc", "aucpr", "pre", "map", "ndcg")


def _maximize(metric: str) -> bool:
    return metric != "mape" and metric.startswith(_MAXIMIZE)


def _best_of(scores: list[float], maximize: bool) -> tuple[float | None, int | None]:
    best = best_it = None
    for i, s in enumerate(scores):
        if best is None or (s > best if maximize else s < best):
            best, best_it = s, i
    return best, best_it


def merge_history(prior: dict, new: Any, start: int) -> dict[str, dict[str, list[float]]]:
    """Rounds ``[0, start)`` from ``prior`` followed by the ``new`` rounds."""
    out: dict[str, dict[str, list[float]]] = {}
    for data, metrics in new.items():
        out[data] = {}
        for m, vals in metrics.items():
            old = [float(v) for v in prior.get(data, {}).get(m, [])[:start]]
            out[data][m] = old + [float(v[0] if isinstance(v, tuple) else v) for v in vals]
    return out


# Errors that mean "a worker (or its connection) went away during training".
def _recoverable(e: BaseException) -> bool:
    import asyncio

    import xgboost
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(
        e, (KilledWorker, CommClosedError, asyncio.TimeoutError, xgboost.core.XGBoostError)
    ):
        return True
    text = f"{type(e).__name__}: {e}"
    return any(
        s in text
        for s in (
            "Missing required workers",
            "worker",
            "Worker",
            "closed",
            "Connection",
            "collective",
        )
    )


def _row_count(X: Any) -> int:
    """The number of rows of a Dask dataframe (counted) or array (from its
    chunks; 0 when they are unknown)."""
    import math

    if hasattr(X, "map_partitions"):
        return int(X.map_partitions(len).sum().compute())
    n = X.shape[0]
    return 0 if math.isnan(n) else int(n)


def _sample_rows(X: Any, y: Any, fraction: float) -> tuple[Any, Any]:
    """A deterministic sample of rows of ``X`` and ``y`` (one collection)."""
    if fraction >= 1.0:
        return X, y
    if hasattr(X, "assign"):  # dask DataFrame + Series
        both = X.assign(__y__=y)
        s = both.sample(frac=fraction, random_state=0)
        return s[list(X.columns)], s["__y__"]
    # dask arrays: every k-th row of each block (X and y share their row chunks)
    import math

    step = max(1, round(1 / fraction))
    rows = X.chunks[0]
    if any(math.isnan(r) for r in rows) or y.chunks[0] != rows:
        return X, y
    sub = tuple(-(-int(r) // step) for r in rows)
    Xs = X.map_blocks(lambda b: b[::step], chunks=(sub, *X.chunks[1:]), dtype=X.dtype)
    ys = y.map_blocks(lambda b: b[::step], chunks=(sub, *y.chunks[1:]), dtype=y.dtype)
    return Xs, ys


class _SampleCuts:
    """Bin edges chosen from a sample of the training rows.

    Passed as ``ref`` of the training matrix on each worker, so that the
    matrix takes its cuts from a local ``QuantileDMatrix`` of ``rows``
    instead of sketching every row. ``rows`` are the sample's quantiles
    (:func:`_quantile_rows`, at most ``max_bin`` rows), so that local
    matrix costs next to nothing: XGBoost takes every distinct value of a
    column that has no more than ``max_bin`` of them as a bin edge. It is
    built on first use of :attr:`handle` (XGBoost reads nothing else of
    ``ref``), on the worker: the scheduler, which unpickles task
    arguments, never builds it. Every worker builds it from the same rows,
    so the cuts agree.
    """

    def __init__(self, rows: pd.DataFrame, max_bin: int | None) -> None:
        self.rows, self.max_bin = rows, max_bin
        self._matrix: Any = None

    @property
    def handle(self) -> Any:
        if self._matrix is None:
            kw = {"max_bin": self.max_bin} if self.max_bin else {}
            import xgboost

            self._matrix = xgboost.QuantileDMatrix(self.rows, nthread=1, **kw)
        return self._matrix.handle

    def __getstate__(self) -> dict[str, Any]:
        return {"rows": self.rows, "max_bin": self.max_bin, "_matrix": None}


def _quantile_rows(sample: pd.DataFrame, max_bin: int | None) -> pd.DataFrame:
    """``max_bin`` evenly spaced order statistics of each column of
    ``sample``, min and max included (missing values left out), as the
    rows of a frame with ``sample``'s columns and dtypes.

    Sketched by XGBoost, these rows give ``max_bin`` bins holding equal
    shares of the sample: the same edges, up to the sketch's rank error,
    as sketching the whole sample, for a fraction of its cost (sketching
    200,000 rows of 20 features takes about 0.5 s on one thread).
    """
    n_bins = int(max_bin or 256)
    cols: dict[str, np.ndarray] = {}
    for c in sample.columns:
        v = np.sort(sample[c].to_numpy(dtype=np.float64, na_value=np.nan))  # NaN last
        n = int(np.count_nonzero(~np.isnan(v)))
        if n == 0:
            q = np.full(n_bins, np.nan)
        else:
            q = v[np.linspace(0, n - 1, n_bins).round().astype(np.int64)]
        cols[c] = q.astype(sample.dtypes[c], copy=False)
    return pd.DataFrame(cols)


def _spread(df: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """About ``fraction`` of the rows of ``df``, evenly spaced."""
    k = min(len(df), int(np.ceil(len(df) * fraction)))
    return df.iloc[np.linspace(0, len(df) - 1, k).round().astype(np.int64)] if k else df.iloc[:0]


def _cuts_sample(client: Any, X: Any, rows: int, total: int | None = None) -> pd.DataFrame | None:
    """About ``rows`` training rows spread over every partition of ``X``
    (a Dask dataframe), or None when sketching everything costs as little
    (a small or categorical training set: XGBoost's exact sketch).
    ``total``, the number of rows of ``X`` when the caller knows it, saves
    counting them."""
    if not rows or not hasattr(X, "map_partitions"):
        return None
    if any(isinstance(dt, pd.CategoricalDtype) for dt in X.dtypes):
        return None
    if total is None:
        total = _row_count(X)
    if total < 4 * rows:
        return None
    return X.map_partitions(_spread, rows / total, meta=X._meta).compute()


def _sample_quantile_rows(samples: list[pd.DataFrame], max_bin: int | None) -> pd.DataFrame:
    """:func:`_quantile_rows` of per-partition samples (run on a worker:
    only the ``max_bin`` rows travel)."""
    return _quantile_rows(pd.concat(samples, ignore_index=True), max_bin)


def _quantile_matrix(client: Any, X: Any, y: Any, rows: pd.DataFrame | None, **kw: Any) -> Any:
    """The training matrix; with ``rows`` (:func:`_quantile_rows` of a
    sample) its bin edges come from them (:class:`_SampleCuts`)."""
    import xgboost.dask as dxgb

    if rows is None:
        return dxgb.DaskQuantileDMatrix(client, X, y, **kw)

    # One copy per worker, not one inside every training task's arguments.
    cuts = client.scatter(_SampleCuts(rows, kw.get("max_bin")), broadcast=True, hash=False)

    class _Matrix(dxgb.DaskQuantileDMatrix):
        scaler_cuts: Any = None

        def _create_fn_args(self, worker_addr: str) -> dict[str, Any]:
            args = super()._create_fn_args(worker_addr)
            args["ref"] = self.scaler_cuts  # a future: the worker's copy goes to the task
            return args

    m = _Matrix(client, X, y, **kw)
    m.scaler_cuts = cuts  # released by train_booster once training is over
    return m


def _release_cuts(matrix: Any) -> None:
    """Let the workers drop a matrix's scattered bin edges now, not when the
    garbage collector finds the matrix (a long-lived client kept one per run)."""
    cuts = getattr(matrix, "scaler_cuts", None)
    if cuts is not None:
        matrix.scaler_cuts = None
        cuts.release()


def _scheduler_alive(client: Any) -> bool:
    try:
        client.scheduler_info()
        return client.status == "running"
    except Exception:  # noqa: BLE001
        return False


def _in_xgboost_training(dask_worker: Any) -> bool:
    """Whether a thread of this worker runs an XGBoost training task: also
    one the scheduler has already given up on, whose thread is still inside
    XGBoost (Dask cannot interrupt a running task)."""
    st = dask_worker.state
    for ts in list(st.executing) + list(st.long_running):
        fn = getattr(ts.run_spec, "func", None)
        if str(getattr(fn, "__module__", "")).startswith("xgboost"):
            return True
    return False


def _drain_failed_attempt(client: Any, echo: Any, grace: float = 5.0) -> list[str]:
    """Free the workers still inside a failed training attempt.

    When a worker dies mid-training, the other ranks usually fail at their
    next collective operation. Sometimes they block in it instead (XGBoost's
    own timeout is 30 minutes), keeping their only thread: the retry's
    tasks would then queue behind them forever. Ranks still training after
    ``grace`` seconds are restarted through their nanny; the data they held
    is recomputed from its source by the retry. Returns the restarted
    workers' addresses."""
    import time

    deadline = time.monotonic() + grace
    while True:
        state = client.run(_in_xgboost_training, on_error="ignore")
        stuck = sorted(w for w, busy in state.items() if busy)
        if not stuck or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not stuck:
        return []
    echo(
        f"[train] restarting {len(stuck)} worker(s) still blocked in the failed "
        "attempt's collective: their data is recomputed"
    )
    try:
        client.restart_workers(stuck, timeout=60)
    except Exception as e:  # noqa: BLE001 - reported with what to do
        raise RuntimeError(
            f"Worker(s) {', '.join(stuck)} are still blocked in the failed training attempt "
            f"and could not be restarted ({type(e).__name__}: {e}). Start Dask workers with a "
            "nanny (the default of `dask worker`) so scaler can restart them, or restart "
            "them yourself and run again with --resume."
        ) from e
    return stuck


class _RankWatch:
    """Watch a training attempt for a rank whose worker is gone.

    Dask reschedules a lost rank's training task on another worker, where
    it fails at once, so the attempt raises and is retried. But when that
    worker's only thread is still held by a rank blocked in the dead peer's
    collective, the task queues behind it and the attempt never returns.
    Once a second this thread asks the scheduler which workers are alive;
    when one of ``ranks`` (the workers holding the training matrices, one
    XGBoost rank each) is gone, it frees the blocked ranks (see
    :func:`_drain_failed_attempt`); the attempt then fails and is retried."""

    def __init__(self, client: Any, echo: Any, ranks: set[str], every: float = 1.0) -> None:
        import threading

        self.client, self.echo, self.ranks, self.every = client, echo, set(ranks), every
        self.restarted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaler-rank-watch", daemon=True)

    def __enter__(self) -> _RankWatch:
        if self.ranks:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        def alive(dask_scheduler: Any) -> list[str]:  # pickled by value: runs on the scheduler
            return list(dask_scheduler.workers)

        while not self._stop.wait(self.every):
            try:
                lost = self.ranks - set(self.client.run_on_scheduler(alive))
            except Exception:  # noqa: BLE001 - the attempt itself reports what went wrong
                return
            if lost:
                try:
                    self.restarted = _drain_failed_attempt(self.client, self.echo)
                except RuntimeError as e:  # no nanny: say why the attempt waits
                    self.echo(f"[train] {e}")
                return


def _ranks(*matrices: Any) -> set[str]:
    """The workers that train on ``matrices`` (xgboost.dask gives each
    worker holding partitions of them one rank)."""
    out: set[str] = set()
    for m in matrices:
        out |= set(getattr(m, "worker_map", None) or ())
    return out


class SchedulerLostError(RuntimeError):
    """The Dask scheduler went away; training cannot continue in this run."""


def train_booster(
    client: Any,
    X_train: Any = None,
    y_train: Any = None,
    *,
    X_valid: Any = None,
    y_valid: Any = None,
    make_data: Any = None,
    params: dict[str, Any],
    rounds: int,
    early_stopping: int = 0,
    checkpoint_url: str | None = None,
    checkpoint_every: int = 0,
    storage_options: dict[str, Any] | None = None,
    fingerprint: str = "",
    resume: Any = None,
    max_retries: int = 0,
    min_workers: int = 1,
    wait_timeout: float = 60.0,
    echo: Any = None,
    extra_callbacks: list[Any] | None = None,
    train_eval_rows: int = 50_000,
    bin_sample_rows: int = 0,
    train_rows: int | None = None,
    cut_samples: list[Any] | None = None,
) -> TrainResult:
    """Train on the cluster, surviving lost workers.

    The data are Dask collections from one collection (so that partitions
    agree); or ``make_data()`` returns ``(X_train, y_train, X_valid,
    y_valid)`` (valid may be None). Either way the training matrices are
    rebuilt after a failure on the workers that are alive (Dask recomputes
    lost partitions of persisted data). With ``checkpoint_url`` the rank-0
    worker writes a checkpoint every ``checkpoint_every`` rounds; after a
    lost worker the driver waits for ``min_workers`` workers and continues
    from the last checkpoint, up to ``max_retries`` times. ``resume`` (a
    :class:`scaler.checkpoint.Checkpoint`) starts from a previous run's
    checkpoint. With a validation set and ``early_stopping`` the booster is
    cut to its best round. ``extra_callbacks`` (XGBoost training callbacks,
    run on the workers) are added after scaler's own. The "train" history is
    measured on a fixed sample of about ``train_eval_rows`` training rows
    (all of them when there are fewer; 0: none), the "valid" history on the
    validation rows.
    With ``bin_sample_rows`` the histogram bin edges come from that many
    training rows instead of all of them (see :class:`_SampleCuts`); a
    retry after a lost worker sketches every row. ``train_rows`` (the
    number of training rows, when known) saves counting them for that;
    ``cut_samples`` (futures of per-partition samples of the training rows,
    about ``bin_sample_rows`` in all, taken when the features were made)
    skips sampling altogether.
    """
    import time

    import xgboost.dask as dxgb

    from scaler._callbacks import Checkpointer, EarlyStop, _HeapForTraining
    from scaler.checkpoint import read_checkpoint

    echo = echo or (lambda msg: log.info(msg))
    if make_data is None:

        def make_data() -> tuple[Any, Any, Any, Any]:
            return X_train, y_train, X_valid, y_valid

    start = resume
    retries: list[dict[str, Any]] = []
    resumed_from = resume.rounds if resume is not None else None
    max_bin = params.get("max_bin")
    attempt = 0
    while True:
        prior = start.history if start is not None else {}
        done = start.rounds if start is not None else 0
        xgb_model = start.booster() if start is not None else None
        remaining = rounds - done
        watch: _RankWatch | None = None  # set once training starts
        dtrain = None
        try:
            Xt, yt, Xv, yv = make_data()
            if train_rows is None and train_eval_rows > 0:
                train_rows = _row_count(Xt)  # counted once, for both samples below
            # A retry sketches every row: XGBoost's own path, the one the
            # lost-worker tests exercise (no scattered sample to recover).
            rows: pd.DataFrame | None = None
            if attempt == 0 and bin_sample_rows and cut_samples:
                rows = client.submit(
                    _sample_quantile_rows, cut_samples, max_bin, pure=False
                ).result()
            else:
                sample = _cuts_sample(
                    client, Xt, bin_sample_rows if attempt == 0 else 0, train_rows
                )
                rows = None if sample is None else _quantile_rows(sample, max_bin)
            dtrain = _quantile_matrix(
                client, Xt, yt, rows, enable_categorical=True, max_bin=max_bin
            )
            evals = []
            if train_eval_rows > 0:
                # Every evaluated row costs every round (a tree's prediction and
                # the metric; AUC sorts them): on 1.6M training rows a 10 %
                # sample added 7 % to boosting, so the "train" learning curve is
                # measured on a fixed sample of a bounded number of rows.
                assert train_rows is not None
                sample = _sample_rows(Xt, yt, train_eval_rows / max(train_rows, 1))
                dsample = dxgb.DaskQuantileDMatrix(
                    client, *sample, ref=dtrain, enable_categorical=True, max_bin=max_bin
                )
                evals.append((dsample, "train"))
            if Xv is not None:
                dvalid = dxgb.DaskQuantileDMatrix(
                    client, Xv, yv, ref=dtrain, enable_categorical=True, max_bin=max_bin
                )
                evals.append((dvalid, "valid"))
            use_es = bool(early_stopping) and Xv is not None and rounds > 1
            callbacks: list[Any] = [_HeapForTraining()]
            if use_es:
                callbacks.append(EarlyStop(early_stopping, prior))
            if checkpoint_url and checkpoint_every:
                callbacks.append(
                    Checkpointer(
                        checkpoint_url, storage_options, checkpoint_every, fingerprint, prior
                    )
                )
            callbacks.extend(extra_callbacks or [])
            if remaining <= 0 and xgb_model is not None:
                booster, new_hist = xgb_model, {}
            else:
                watch = _RankWatch(client, echo, _ranks(dtrain, *(m for m, _ in evals)))
                with watch:
                    out = dxgb.train(
                        client,
                        params,
                        dtrain,
                        num_boost_round=remaining,
                        evals=evals,
                        verbose_eval=False,
                        xgb_model=xgb_model,
                        callbacks=callbacks or None,
                    )
                booster, new_hist = out["booster"], out["history"]
            break
        except Exception as e:  # noqa: BLE001 - sorted below
            if not _scheduler_alive(client):
                last = read_checkpoint(checkpoint_url, storage_options) if checkpoint_url else None
                where = (
                    f" The last checkpoint (round {last.rounds}) is at {checkpoint_url}; run again "
                    "with --resume once a scheduler is back."
                    if last
                    else ""
                )
                raise SchedulerLostError(
                    f"Lost the Dask scheduler during training ({type(e).__name__}: {e}).{where}"
                ) from e
            if not _recoverable(e) or attempt >= max_retries:
                raise
            attempt += 1
            echo(f"[train] lost a worker ({type(e).__name__}); waiting for {min_workers} worker(s)")
            t0 = time.perf_counter()
            client.wait_for_workers(min_workers, timeout=wait_timeout)
            restarted = (watch.restarted if watch else []) + _drain_failed_attempt(client, echo)
            if restarted:
                client.wait_for_workers(min_workers, timeout=wait_timeout)
            ckpt = read_checkpoint(checkpoint_url, storage_options) if checkpoint_url else None
            if ckpt is not None and ckpt.fingerprint == fingerprint:
                start = ckpt
            resumed = start.rounds if start is not None else 0
            retries.append(
                {
                    "attempt": attempt,
                    "error": f"{type(e).__name__}: {str(e)[:300]}",
                    "resumed_from_round": resumed,
                    "restarted_workers": restarted,
                    "waited_seconds": round(time.perf_counter() - t0, 3),
                }
            )
            echo(f"[train] retry {attempt}/{max_retries}: resuming from round {resumed}")
        finally:
            _release_cuts(dtrain)
    # Training pinned nthread to the worker's threads; predictions should use
    # every core the predicting process may (Dask tasks get a one-thread
    # copy: Model._for_tasks).
    booster.set_param({"nthread": 0})
    history = merge_history(prior, new_hist, done) if new_hist else dict(prior)
    best = None
    if use_es and booster.attr("best_iteration") is not None:
        best = int(booster.attr("best_iteration"))
        if best + 1 < booster.num_boosted_rounds():
            booster = booster[: best + 1]
    return TrainResult(
        booster,
        history,
        best,
        int(booster.num_boosted_rounds()),
        retries,
        resumed_from,
    )


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


_CALLBACKS = ("EarlyStop", "Checkpointer", "_HeapForTraining")


def __getattr__(name: str) -> Any:
    # The training callbacks subclass xgboost's TrainingCallback: they (and
    # xgboost, about 0.7 s with the scikit-learn it pulls in) are imported on
    # first use, not with ``import scaler`` (a Dask worker re-imports the
    # main module's imports when it starts).
    if name in _CALLBACKS:
        from scaler import _callbacks

        return getattr(_callbacks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
