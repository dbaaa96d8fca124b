"""Progress of long stages: a bar over Dask futures for reading and
preprocessing, and per-round lines for boosting.

Four displays, chosen by ``mode``:

``"bar"``
    one line redrawn with ``\\r`` on a terminal (written to stderr);
``"plain"``
    plain lines, no control characters (CI logs, pipes), at most about one
    per second per stage;
``"notebook"``
    an HTML ``<progress>`` element in the Jupyter cell, updated in place
    (no ipywidgets needed);
``"off"``
    nothing.

``"auto"`` picks ``"notebook"`` inside a Jupyter kernel, ``"bar"`` when
stderr is a terminal, and ``fallback`` otherwise.

Boosting rounds run inside ``xgboost.dask`` tasks on the workers, so the
client cannot see them directly. :class:`RoundReporter` is an XGBoost
``TrainingCallback`` that runs on every worker; the rank-0 worker sends the
round, the latest train/valid metrics and the elapsed time as a Dask
structured event (``Worker.log_event``) on a per-run topic, and the client
receives it through ``Client.subscribe_topic`` while training runs.
"""

from __future__ import annotations

import html
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from scaler._callbacks import RoundReporter

__all__ = ["Progress", "RoundReporter", "in_notebook", "resolve_mode"]  # noqa: F822 - lazy

MODES = ("auto", "bar", "plain", "notebook", "off")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython)."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def resolve_mode(mode: str | bool | None, *, fallback: str = "off", stream: Any = None) -> str:
    """The concrete display for ``mode`` (see the module docstring)."""
    if mode is True:
        mode = "auto"
    if mode is False or mode is None:
        return "off"
    if mode not in MODES:
        raise ValueError(
            f"The 'progress' parameter must be one of {list(MODES)} or a bool. Got {mode!r} instead."
        )
    if mode != "auto":
        return mode
    if in_notebook():
        return "notebook"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return "bar"
    return fallback


def _fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _metrics_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


class Progress:
    """Displays stage progress; see the module docstring for ``mode``.

    Parameters
    ----------
    mode : {"auto", "bar", "plain", "notebook", "off"} or bool
    echo : callable, optional
        Where plain lines go (default: print to ``stream``).
    stream : file, optional
        Terminal stream of the bar (default ``sys.stderr``).
    fallback : str
        What ``"auto"`` means when neither a notebook nor a terminal is found.

    Examples
    --------
    >>> p = Progress("plain", echo=print)
    >>> with p.task("scan", total=2, unit="partitions") as t:
    ...     t.update(2)
    [scan] 2/2 partitions (100%) in 0s
    """

    def __init__(
        self,
        mode: str | bool | None = "auto",
        *,
        echo: Callable[[str], None] | None = None,
        stream: TextIO | None = None,
        fallback: str = "off",
        min_interval: float = 1.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, fallback=fallback, stream=self.stream)
        self.echo = echo or (lambda msg: print(msg, file=self.stream, flush=True))
        self.min_interval = min_interval

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @contextmanager
    def task(self, label: str, *, total: int, unit: str = "") -> Iterator[_Task]:
        t = _Task(self, label, total, unit)
        try:
            yield t
        finally:
            t.close()

    def track(self, futures: list[Any], label: str, unit: str = "partitions") -> None:
        """Show progress while ``futures`` (Dask futures) finish; returns when
        all are done (errors are left for the caller's ``result()``/``wait``)."""
        if not self.enabled or not futures:
            return
        from distributed import as_completed

        with self.task(label, total=len(futures), unit=unit) as t:
            for _ in as_completed(futures):
                t.update(1)

    @contextmanager
    def rounds(self, client: Any, total: int) -> Iterator[RoundReporter | None]:
        """Subscribe to per-round events while training; yields the XGBoost
        callback to pass to training (``None`` when progress is off)."""
        if not self.enabled or client is None:
            yield None
            return
        from scaler._callbacks import RoundReporter

        reporter = RoundReporter(f"scaler-progress-{uuid.uuid4().hex}", total)
        t = _Task(self, "train", total, "rounds", rounds=True)
        client.subscribe_topic(reporter.topic, lambda event: t.event(event[1]))
        try:
            yield reporter
        finally:
            t.got_final.wait(2.0)  # the last event may still be in flight
            try:
                client.unsubscribe_topic(reporter.topic)
            except Exception:  # noqa: BLE001 - the client may already be closing
                pass
            t.close()


class _Task:
    """One progress display (a stage over futures, or boosting rounds)."""

    def __init__(
        self, progress: Progress, label: str, total: int, unit: str, rounds: bool = False
    ) -> None:
        self.p = progress
        self.label = label
        self.total = max(int(total), 0)
        self.unit = unit
        self.rounds = rounds
        self.done = 0
        self.extra = ""
        self.t0 = time.monotonic()
        self.last_emit = 0.0
        self.last_key: tuple[int, int, str] | None = None
        self.closed = False
        self.shown = False
        self.final_shown = False
        self.got_final = threading.Event()
        self.handle: Any = None
        if self.p.mode == "notebook":
            from IPython.display import HTML, display

            self.handle = display(HTML(self._html()), display_id=True)

    # -- input
    def update(self, n: int = 1) -> None:
        self.done += n
        self._show()

    def event(self, msg: dict[str, Any]) -> None:
        """A round event from :class:`RoundReporter`."""
        self.done = int(msg.get("round", self.done))
        self.total = int(msg.get("total", self.total)) or self.total
        eta = ""
        elapsed = float(msg.get("elapsed", 0.0))
        if self.done and self.total > self.done and not msg.get("final"):
            eta = f" eta {_fmt_seconds(elapsed / self.done * (self.total - self.done))}"
        stopped = " (early stop)" if msg.get("final") and self.done < self.total else ""
        self.extra = f" {_metrics_text(msg.get('metrics', {}))}{eta}{stopped}".rstrip()
        self._show(force=bool(msg.get("final")))
        if msg.get("final"):
            self.got_final.set()

    # -- output
    def _text(self) -> str:
        elapsed = _fmt_seconds(time.monotonic() - self.t0)
        if self.rounds:
            return f"[{self.label}] round {self.done}/{self.total}{self.extra} ({elapsed})"
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"[{self.label}] {self.done}/{self.total} {self.unit}{pct} in {elapsed}"

    def _bar(self) -> str:
        width = 24
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(width * min(frac, 1.0)))
        return f"[{'#' * fill}{'-' * (width - fill)}]"

    def _html(self) -> str:
        return (
            f'<div style="font-family:monospace"><progress value="{self.done}" '
            f'max="{max(self.total, 1)}" style="width:16em"></progress> '
            f"{html.escape(self._text())}</div>"
        )

    def _show(self, force: bool = False) -> None:
        mode = self.p.mode
        if mode == "off" or self.closed:
            return
        now = time.monotonic()
        finished = bool(self.total) and self.done >= self.total
        self.final_shown = self.final_shown or force or finished
        if mode == "plain":
            if force or finished or now - self.last_emit >= self.p.min_interval:
                key = (self.done, self.total, self.extra)
                if key == self.last_key:  # e.g. the final event after the last round
                    return
                self.last_key = key
                self.last_emit = now
                self.shown = True
                self.p.echo(self._text())
        elif mode == "bar":
            if force or finished or now - self.last_emit >= 0.1:
                self.last_emit = now
                self.shown = True
                # one terminal row, redrawn in place: never wrap
                width = max(shutil.get_terminal_size((100, 20)).columns - 1, 20)
                line = f"{self._bar()} {self._text()}"
                self.p.stream.write("\r" + line[:width].ljust(width))
                self.p.stream.flush()
        elif mode == "notebook" and self.handle is not None:
            from IPython.display import HTML

            self.handle.update(HTML(self._html()))

    def close(self) -> None:
        if self.closed:
            return
        if not self.final_shown and not (self.rounds and self.done == 0):
            self._show(force=True)
        self.closed = True
        if self.p.mode == "bar" and self.shown:
            self.p.stream.write("\n")
            self.p.stream.flush()


def __getattr__(name: str) -> Any:
    # RoundReporter subclasses xgboost's TrainingCallback: importing it (and
    # xgboost, about 0.7 s with the scikit-learn it pulls in) waits for its
    # first use instead of ``import scaler``.
    if name == "RoundReporter":
        from scaler import _callbacks

        return _callbacks.RoundReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
