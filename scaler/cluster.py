"""Getting a Dask client: a LocalCluster bound to 127.0.0.1, or an existing
scheduler by address. This is the only module that creates clusters."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import warnings
from typing import Any
from urllib.parse import urlparse

from scaler.config import ClusterConfig
from scaler.errors import ConfigError

__all__ = ["connect", "resolve_address", "current_client", "local_layout", "describe", "workers"]

log = logging.getLogger("scaler")


CORES_PER_WORKER = 4  # a LocalCluster fitted to the machine: one worker per 4 cores


def local_layout(n_workers: int, threads_per_worker: int, cores: int) -> tuple[int, int]:
    """Workers and threads per worker of a LocalCluster on ``cores`` cores,
    0 meaning "fit the machine".

    With neither set: one worker process for every 4 cores (at least one),
    the cores shared among them as threads; 2 cores give 1 worker x 2
    threads. XGBoost trains faster as threads of one process than as
    processes that exchange histograms every tree level (on 2 cores, 100
    rounds on 1.6M rows took 4.7 s in one process with 2 threads and 5.3 s
    in 2 single-threaded processes); the pandas parts of scaler's tasks
    hold the GIL, so threads of one process also contend (scoring the
    holdout took 0.5 to 0.8 s on 1 x 2 against 0.45 s on 2 x 1). Four
    threads a process is a middle way, measured only on 2 cores. With one
    of the two set, the other divides the cores.

    >>> local_layout(0, 0, 2), local_layout(0, 0, 16), local_layout(4, 0, 16)
    ((1, 2), (4, 4), (4, 4))
    """
    cores = max(1, cores)
    if not n_workers and not threads_per_worker:
        n_workers = -(-cores // CORES_PER_WORKER)
    if not n_workers:
        n_workers = max(1, cores // threads_per_worker)
    if not threads_per_worker:
        threads_per_worker = max(1, cores // n_workers)
    return n_workers, threads_per_worker


ARROW_POOL = "jemalloc"  # Arrow's memory pool in the workers connect() starts
# Set in the worker processes connect() starts, unless already set (worker_env).
WORKER_ENV = {
    "ARROW_DEFAULT_MEMORY_POOL": ARROW_POOL,
    "MIMALLOC_ALLOW_THP": "0",
    "NUMPY_MADVISE_HUGEPAGE": "0",
}


def worker_env() -> dict[str, str]:
    """Environment variables for the worker processes :func:`connect` starts,
    set before each process starts, alongside Dask's own from
    ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MALLOC_TRIM_THRESHOLD_``;
    see :func:`_nanny_class`). Each is left out when the user has set the
    variable: the workers inherit the user's choice.

    * ``ARROW_DEFAULT_MEMORY_POOL=jemalloc`` (where this pyarrow has it):
      Arrow's jemalloc pool gives freed memory back in a way that suits a
      worker with a memory limit. With Arrow's default (mimalloc), 20M rows
      on 2 workers x 3 GB spilled 7.2 and 9.6 GiB to disk and took 104.6 s;
      with jemalloc 3.1 and 3.0 GiB, 97.9 s (one run each).
    * ``MIMALLOC_ALLOW_THP=0``: mimalloc (Arrow's default pool, loaded with
      Arrow whatever the pool) asks the kernel for transparent huge pages
      for its buffers where ``/sys/kernel/mm/transparent_hugepage/enabled``
      is ``madvise``; with this, it turns them off for the whole process.
      On 2 cores, the first scan of 2M rows on a new cluster with mimalloc
      took 2.14 to 2.35 s with them, 0.64 to 0.77 s without.
    * ``NUMPY_MADVISE_HUGEPAGE=0``: NumPy no longer asks for them for its
      large arrays. Single tasks of the passes over the data took 0.2 to
      0.6 s instead of 0.04 to 0.1 s, now and then: on 2 cores, the read +
      statistics + transform of 2M rows took 1.35 to 1.76 s with huge
      pages, 0.81 to 0.89 s without (six runs each, fresh clusters).

    All are read when the library loads, and a new worker process imports
    the caller's main module (a script, the ``scaler`` command) before
    Dask's ``env`` reaches it: set any later, they have no effect there.
    So they are in the environment while a worker process starts (see
    :func:`_nanny_class`), and only then.
    """
    env = {k: v for k, v in WORKER_ENV.items() if _environ_as_found(k) is None}
    if "ARROW_DEFAULT_MEMORY_POOL" in env:
        try:
            import pyarrow as pa

            if ARROW_POOL not in pa.supported_memory_backends():
                del env["ARROW_DEFAULT_MEMORY_POOL"]
        except ImportError:  # pragma: no cover - pandas needs it here
            del env["ARROW_DEFAULT_MEMORY_POOL"]
    return env


_NANNY: list[Any] = []  # the class, made once (it subclasses distributed's Nanny)
# Worker processes being spawned in this process, and the values their
# settings replaced in its environment (see _nanny_class).
_SPAWN: dict[str, Any] = {"lock": threading.Lock(), "spawning": 0, "saved": {}}


def _environ_as_found(name: str) -> str | None:
    """``os.environ.get(name)``, or its value before a nanny of this process
    set it to spawn a worker."""
    with _SPAWN["lock"]:
        saved = _SPAWN["saved"]
        return saved[name] if name in saved else os.environ.get(name)


def _nested(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _nanny_class() -> Any:
    """A ``distributed.Nanny`` that gives its worker processes scaler's
    settings and leaves this process's environment as it found it.

    * Environment: Dask's nanny puts ``distributed.nanny.pre-spawn-environ``
      (its ``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``,
      ``OPENBLAS_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``, a
      ``PYTHONHASHSEED``) into the environment of the process it runs in,
      the one that starts the cluster, spawns the worker process, and
      leaves them there. OpenMP then reads ``OMP_NUM_THREADS=1`` wherever
      it loads later in that process: after ``scaler.connect()`` in a
      notebook, XGBoost imported afterwards predicted and trained on one
      core (2 cores: predicting 400k rows took 0.19 s instead of 0.10 s).
      This nanny adds ``spawn_env`` (:func:`worker_env`) to those, and puts
      the previous values back as soon as no worker process is being
      spawned (the nannies of a cluster start their workers concurrently).
      Each worker process, restarted ones and those ``cluster.scale()``
      adds too, gets them all before Python starts in it.
    * Config: ``overrides`` (nested Dask config) are merged once, when the
      nanny is made, into a deep copy of the config it gives its worker
      process at every (re)start.
    """
    if _NANNY:
        return _NANNY[0]
    import asyncio

    import dask
    from distributed import Nanny

    state = _SPAWN  # its lock: clusters of one process may run on several loops

    def enter(names: Any) -> None:
        with state["lock"]:
            for k in names:
                state["saved"].setdefault(k, os.environ.get(k))
            state["spawning"] += 1

    def leave() -> None:
        with state["lock"]:
            state["spawning"] -= 1
            if state["spawning"]:
                return
            for k, v in state["saved"].items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            state["saved"] = {}

    class _Nanny(Nanny):
        def __init__(
            self,
            *args: Any,
            spawn_env: dict[str, str] | None = None,
            overrides: dict[str, Any] | None = None,
            **kw: Any,
        ) -> None:
            super().__init__(*args, **kw)
            self.pre_spawn_env = {**self.pre_spawn_env, **(spawn_env or {})}
            # a copy of its own: the nanny's is a shallow merge that shares
            # nested dicts with the global config
            self.config = dask.config.merge(self.config, overrides or {})

        def _spawned(self, before: Any) -> bool:
            proc = getattr(self.process, "process", None)  # a new one per start
            return proc is not None and proc is not before and proc.pid is not None

        async def instantiate(self) -> Any:
            before = getattr(self.process, "process", None)
            enter(self.pre_spawn_env)
            start = asyncio.ensure_future(super().instantiate())
            try:
                # the worker process has its environment once it has a pid;
                # instantiate itself waits until the worker has connected
                while not start.done() and not self._spawned(before):
                    await asyncio.wait({start}, timeout=0.01)
            except BaseException:
                start.cancel()
                # retrieved here: no "exception was never retrieved" later
                start.add_done_callback(lambda t: t.cancelled() or t.exception())
                raise
            finally:
                leave()
            return await start

    _NANNY.append(_Nanny)
    return _Nanny


# What the workers of a new LocalCluster import in the background as soon as
# they start (see warm_up): the modules the first run or predict would
# otherwise import inside its first tasks, in the order those tasks do.
WARM_MODULES = ("scaler.pipeline", "pyarrow.parquet", "xgboost.dask")


def warm_up(modules: tuple[str, ...] = WARM_MODULES, dask_worker: Any = None) -> bool:
    """Import ``modules`` in a background thread of this process and return
    at once (``Client.run`` calls it on each worker; ``dask_worker`` is not
    used). A new worker otherwise imports them inside its first tasks: on 2
    cores, importing ``xgboost.dask`` took 0.5 to 0.9 s of the first
    training stage, and a first scan took 0.4 s more than the next. This
    helps when the cluster is up before the work starts (a notebook, or one
    cluster for several runs); a run started at once finds the workers busy
    importing either way. A module that fails to import is left to the task
    that needs it, which reports the error."""
    import importlib
    import threading

    def imports() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the task that needs it says why
                log.debug("warm-up: could not import %s", name, exc_info=True)

    threading.Thread(target=imports, name="scaler-warm-up", daemon=True).start()
    return True


def workers(client: Any) -> list[dict[str, Any]]:
    """The scheduler's record of each of ``client``'s workers (all of them)."""
    return list(workers_by_address(client).values())


def workers_by_address(client: Any) -> dict[str, dict[str, Any]]:
    """:func:`workers`, keyed by each worker's address."""
    try:
        return dict(client.scheduler_info(n_workers=-1)["workers"])
    except TypeError:  # older distributed: no n_workers argument
        return dict(client.scheduler_info()["workers"])


def describe(client: Any) -> str:
    """``"1 worker x 2 threads"``: the shape of ``client``'s cluster."""
    workers_ = workers(client)
    threads = sorted({int(w["nthreads"]) for w in workers_})
    n = len(workers_)
    t = "/".join(map(str, threads)) or "0"
    return f"{n} worker{'s' if n != 1 else ''} x {t} thread{'s' if threads != [1] else ''}"


def current_client() -> Any | None:
    """The Dask client of this context, or ``None`` when there is none."""
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def resolve_address(explicit: str | None = None, config: ClusterConfig | None = None) -> str:
    """The scheduler address to use, by precedence: ``explicit`` (the
    ``--scheduler`` flag), ``[cluster] address``, ``DASK_SCHEDULER_ADDRESS``;
    an empty string means "start a LocalCluster"."""
    if explicit:
        return explicit
    if config is not None and config.address:
        return config.address
    return os.environ.get("DASK_SCHEDULER_ADDRESS", "")


def _warn_if_insecure(address: str) -> None:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host = parsed.hostname or ""
    if parsed.scheme != "tcp":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(
            f"Connecting to {address} over plain tcp://: the connection is neither "
            "authenticated nor encrypted. Use a tls:// scheduler with certificates "
            "for anything beyond a trusted network.",
            UserWarning,
            stacklevel=3,
        )


def security_from(config: ClusterConfig, address: str = "") -> Any:
    """``distributed.Security`` from ``[cluster] tls_*`` (None when unset).

    A ``tls://`` address without them is a :class:`ConfigError`."""
    from distributed import Security

    if config.tls_ca_file:
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(config, key)
            if not os.path.isfile(path):
                raise ConfigError(
                    f"[cluster] {key} = {path!r} does not exist. Give the path of a PEM file."
                )
        return Security(
            tls_ca_file=config.tls_ca_file,
            tls_client_cert=config.tls_cert_file,
            tls_client_key=config.tls_key_file,
            require_encryption=True,
        )
    if address.startswith("tls://"):
        raise ConfigError(
            f"The scheduler {address} speaks TLS: set [cluster] tls_ca_file, tls_cert_file "
            "and tls_key_file (PEM files) so that scaler can connect."
        )
    return None


def connect(
    address: str | None = None,
    *,
    config: ClusterConfig | None = None,
    timeout: str = "30s",
) -> Any:
    """Return a ``distributed.Client``.

    With an address (argument, ``config.address`` or the
    ``DASK_SCHEDULER_ADDRESS`` environment variable) it connects to that
    scheduler; otherwise it starts a LocalCluster whose scheduler, workers
    and dashboard listen on 127.0.0.1 only. Close the client (or use it as a
    context manager) to stop a cluster it started.

    Examples
    --------
    >>> from scaler import connect
    >>> with connect() as client:  # doctest: +SKIP
    ...     print(client.dashboard_link)
    """
    import dask
    from distributed import Client

    config = config or ClusterConfig()
    address = resolve_address(address, config)
    if address:
        _warn_if_insecure(address)
        security = security_from(config, address)
        try:
            return Client(address, timeout=timeout, security=security)
        except OSError as e:
            raise OSError(
                f"Could not reach the Dask scheduler at {address} within {timeout}: {e}. "
                "Check that it runs and that the address (tcp://HOST:PORT) is right, "
                "or leave [cluster] address empty to start a local cluster."
            ) from e
    from dask.system import CPU_COUNT  # the cores this process may use (affinity, cgroups)

    n_workers, threads = local_layout(config.n_workers, config.threads_per_worker, CPU_COUNT)
    kwargs: dict[str, Any] = dict(
        n_workers=n_workers,
        threads_per_worker=threads,
        memory_limit=config.memory_limit,
        processes=config.processes,
        # The scheduler's and workers' HTTP servers run even without the
        # dashboard: bind them to loopback on free ports (a threads-only
        # cluster cannot take host="127.0.0.1", so say it for each server).
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": config.dashboard},
    )
    settings: dict[str, Any] = {}  # Dask config for the workers
    if not config.dashboard:
        # Dask's profiler samples the stack of every running task 100 times
        # a second, taking the GIL from the tasks; the dashboard,
        # Client.profile() and performance_report read it. On 2 cores, the
        # two passes over 2M rows on a new cluster took 0.88-0.99 s without
        # it against 0.90-1.05 s, faster in six of six alternating pairs (by
        # 0.01 to 0.09 s); a plain parallel read before them took 0.59-0.75 s
        # against 0.70-0.82 s.
        settings["distributed.worker.profile.enabled"] = False
    if config.processes:
        kwargs["host"] = "127.0.0.1"
        kwargs["worker_class"] = _nanny_class()
        # In each worker process (restarted or added later too) before Python
        # starts there, so that NumPy, Arrow and mimalloc see them whatever
        # the caller's main module imports; Dask's env would come too late.
        kwargs["spawn_env"] = worker_env()
        kwargs["overrides"] = _nested(settings)
    # A Client that starts its own LocalCluster also stops it when closed
    # (also as a context manager), so no worker processes outlive it.
    # Threads-only workers read the settings when made: these, not those a
    # later cluster.scale() adds (which profile again).
    with dask.config.set(settings):
        client = Client(**kwargs)
    client._scaler_owns_cluster = True  # type: ignore[attr-defined]
    if config.processes:  # new worker processes: import while the caller gets ready
        client.run(warm_up)
    if config.dashboard:
        try:
            import bokeh  # noqa: F401
        except ImportError:
            warnings.warn(
                "[cluster] dashboard = true, but the Dask dashboard needs bokeh: "
                "pip install 'scaler[dashboard]'",
                UserWarning,
                stacklevel=2,
            )
        log.info("Dask dashboard: %s", client.dashboard_link)
    return client


def close(client: Any) -> None:
    """Close ``client`` and the LocalCluster behind it if :func:`connect` started it."""
    client.close()  # a LocalCluster started by connect() stops with its client
