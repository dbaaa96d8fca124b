"""XGBoost training callbacks (they subclass xgboost's ``TrainingCallback``,
so this module imports xgboost: it is imported when training starts, not
with ``import scaler``)."""

from __future__ import annotations

import time
from typing import Any

import xgboost

from scaler import _heap
from scaler.train import _best_of, _maximize, merge_history

__all__ = ["EarlyStop", "Checkpointer", "RoundReporter"]


class EarlyStop(xgboost.callback.TrainingCallback):
    """Early stopping that can continue from a previous history.

    Same rule as XGBoost's ``EarlyStopping`` (last metric of the last
    evaluation set, strict improvement), but its state can be seeded with
    the history of earlier rounds, so training resumed from a checkpoint
    stops where an uninterrupted run would have.
    """

    def __init__(self, rounds: int, prior: dict[str, dict[str, list[float]]] | None = None) -> None:
        self.rounds = rounds
        self.prior = prior or {}
        self.start = 0
        self.best: float | None = None
        self.best_it: int | None = None
        self.seeded = False

    def before_training(self, model: Any) -> Any:
        self.start = model.num_boosted_rounds()
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        data = list(evals_log)[-1]
        metric = list(evals_log[data])[-1]
        maximize = _maximize(metric)
        if not self.seeded:
            self.seeded = True
            old = self.prior.get(data, {}).get(metric, [])[: self.start]
            self.best, self.best_it = _best_of([float(v) for v in old], maximize)
        it = self.start + epoch
        score = float(evals_log[data][metric][-1])
        if self.best is None or (score > self.best if maximize else score < self.best):
            self.best, self.best_it = score, it
        model.set_attr(best_iteration=str(self.best_it), best_score=str(self.best))
        return it - int(self.best_it) >= self.rounds  # type: ignore[arg-type]


class _HeapForTraining(xgboost.callback.TrainingCallback):
    """Keep freed memory in the heap while XGBoost boosts on a worker
    (:mod:`scaler._heap`): the buffers it allocates and frees each round
    (gradients, row partitions, histograms) are reused instead of faulting
    in again. Afterwards the worker's settings are put back and the heap
    trimmed."""

    def __init__(self) -> None:
        self._held = False

    def before_training(self, model: Any) -> Any:
        _heap.keep()
        self._held = True
        return model

    def after_training(self, model: Any) -> Any:
        if self._held:
            self._held = False
            _heap.release()
        return model


class Checkpointer(xgboost.callback.TrainingCallback):
    """Writes a checkpoint every ``every`` rounds from the rank-0 worker."""

    def __init__(self, url: str, storage_options: Any, every: int, fp: str, prior: dict) -> None:
        self.url, self.storage_options, self.every = url, storage_options, every
        self.fp, self.prior, self.start = fp, prior, 0

    def before_training(self, model: Any) -> Any:
        self.start = model.num_boosted_rounds()
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        from xgboost import collective

        from scaler.checkpoint import write_checkpoint

        done = self.start + epoch + 1
        if done % self.every == 0 and collective.get_rank() == 0:
            history = merge_history(self.prior, evals_log, self.start)
            write_checkpoint(self.url, model, done, history, self.fp, self.storage_options)
        return False


class RoundReporter(xgboost.callback.TrainingCallback):
    """XGBoost callback that reports each boosting round to the Dask client.

    It runs on every training worker (``xgboost.dask`` ships callbacks with
    the training task); only rank 0 reports, at most every ``every``
    seconds plus the last round, as a Dask event on ``topic``: ``{"round",
    "total", "metrics", "elapsed"}``. Outside a Dask worker it does nothing.
    """

    def __init__(self, topic: str, total: int, *, every: float = 0.25) -> None:
        self.topic = topic
        self.total = int(total)
        self.every = every
        self._t0 = 0.0
        self._last = 0.0
        self._metrics: dict[str, float] = {}

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            from distributed import get_worker
            from xgboost import collective

            if collective.get_rank() != 0:
                return
            get_worker().log_event(self.topic, msg)
        except (ValueError, ImportError):  # not on a worker
            pass

    def before_training(self, model: Any) -> Any:
        self._t0 = time.monotonic()
        self._last = 0.0
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self._metrics = {
            f"{data}-{name}": float(vals[-1][0] if isinstance(vals[-1], tuple) else vals[-1])
            for data, d in evals_log.items()
            for name, vals in d.items()
            if len(vals)
        }
        now = time.monotonic()
        if now - self._last >= self.every or epoch + 1 >= self.total:
            self._last = now
            self._send(
                {
                    "round": epoch + 1,
                    "total": self.total,
                    "metrics": self._metrics,
                    "elapsed": now - self._t0,
                }
            )
        return False

    def after_training(self, model: Any) -> Any:
        self._send(
            {
                "round": int(model.num_boosted_rounds()),
                "total": self.total,
                "metrics": self._metrics,
                "elapsed": time.monotonic() - self._t0,
                "final": True,
            }
        )
        return model
