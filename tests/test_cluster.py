"""The LocalCluster that scaler.connect starts."""

import pytest
from dask.system import CPU_COUNT

from scaler import connect
from scaler.cluster import local_layout
from scaler.config import ClusterConfig


@pytest.mark.parametrize(
    "workers, threads, cores, expected",
    [
        (0, 0, 1, (1, 1)),
        (0, 0, 2, (1, 2)),
        (0, 0, 4, (1, 4)),
        (0, 0, 8, (2, 4)),
        (0, 0, 10, (3, 3)),
        (0, 0, 64, (16, 4)),
        (2, 0, 2, (2, 1)),  # workers set: they share the cores
        (3, 0, 2, (3, 1)),  # never fewer than one thread
        (0, 1, 4, (4, 1)),  # threads set: as many workers as fit
        (0, 3, 2, (1, 3)),
        (2, 2, 64, (2, 2)),  # both set: as given
    ],
)
def test_local_layout(workers, threads, cores, expected):
    assert local_layout(workers, threads, cores) == expected


def _layout(client):
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return len(workers), sorted({w["nthreads"] for w in workers})


def test_default_local_cluster_fits_the_machine():
    # every usable core, as threads of as few worker processes as fit
    procs, threads = local_layout(0, 0, CPU_COUNT)
    with connect(config=ClusterConfig()) as client:
        assert _layout(client) == (procs, [threads])
        assert procs * threads >= CPU_COUNT


def test_explicit_layout_is_kept():
    with connect(config=ClusterConfig(n_workers=2, threads_per_worker=1)) as client:
        assert _layout(client) == (2, [1])


def test_worker_env_leaves_the_users_choice(monkeypatch):
    import pyarrow as pa

    from scaler.cluster import worker_env

    names = ("ARROW_DEFAULT_MEMORY_POOL", "MIMALLOC_ALLOW_THP", "NUMPY_MADVISE_HUGEPAGE")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    want = {"MIMALLOC_ALLOW_THP": "0", "NUMPY_MADVISE_HUGEPAGE": "0"}
    if "jemalloc" in pa.supported_memory_backends():
        want["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
    assert worker_env() == want
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert worker_env() == {k: v for k, v in want.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    monkeypatch.setenv("MIMALLOC_ALLOW_THP", "1")
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    assert worker_env() == {}
    # While a nanny of this process spawns a worker, the environment holds
    # the workers' settings; what the user set is what they replaced.
    from scaler import cluster

    monkeypatch.setitem(cluster._SPAWN, "saved", {k: None for k in names})
    assert worker_env() == want


# A main module that imports NumPy and pyarrow before it starts the cluster, as
# the `scaler` command and most scripts do: each new worker process imports it
# again before Dask's `env` reaches the process.
_MAIN = """
import json
import sys

import numpy
import pyarrow

import scaler
from scaler.config import ClusterConfig


def probe(dask_worker=None):
    import os

    import numpy as np
    import pyarrow as pa

    pa.allocate_buffer(1 << 20)  # the pool starts (and mimalloc reads its options)
    with open("/proc/self/status") as f:  # 0 once the process has turned huge pages off
        thp = [line.split()[1] for line in f if line.startswith("THP_enabled:")]
    return [
        bool(np._core.multiarray._get_madvise_hugepage()),
        thp[0] if thp else None,
        pa.default_memory_pool().backend_name,
        os.environ.get("NUMPY_MADVISE_HUGEPAGE"),
        os.environ.get("MIMALLOC_ALLOW_THP"),
        os.environ.get("OMP_NUM_THREADS"),
        "profile" in dask_worker.periodic_callbacks,
    ]


NAMES = ("NUMPY_MADVISE_HUGEPAGE", "MIMALLOC_ALLOW_THP")  # and Dask's own:
NAMES += ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
NAMES += ("MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")


def here():
    import os

    return [os.environ.get(k) for k in NAMES]


if __name__ == "__main__":
    before = here()
    with scaler.connect(config=ClusterConfig(n_workers=2, threads_per_worker=1)) as client:
        workers = list(client.run(probe).values())
        started = here()
        client.restart()
        restarted = list(client.run(probe).values())
        client.cluster.scale(3)  # a worker added later
        client.wait_for_workers(3)
        grown = list(client.run(probe).values())
        print(json.dumps([before, started, here(), workers, restarted + grown]))
"""


def test_workers_start_without_huge_pages_whatever_the_main_module_imports(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import pyarrow as pa

    script = tmp_path / "main.py"
    script.write_text(_MAIN)
    names = ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE", "MIMALLOC_ALLOW_THP")
    names += ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    names += ("MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["DASK_LOGGING__DISTRIBUTED"] = "error"
    own = {"NUMPY_MADVISE_HUGEPAGE": "1", "MIMALLOC_ALLOW_THP": "1"}
    own["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    procs = {  # both at once: each starts a cluster
        setting: subprocess.Popen(
            [sys.executable, str(script)],
            env=env if setting is None else {**env, **own},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for setting in (None, "1")
    }
    seen = {}
    for setting, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        seen[setting] = json.loads(out.strip().splitlines()[-1])
    pool = "jemalloc" if "jemalloc" in pa.supported_memory_backends() else None
    pool = pool or pa.default_memory_pool().backend_name
    # scaler's defaults reach NumPy, Arrow and mimalloc in the workers, those
    # restarted and one added later too, Dask's OMP_NUM_THREADS as well, and
    # Dask's profiler is off (no dashboard) ...
    before, started, after, workers, later = seen[None]
    assert workers == [[False, "0", pool, "0", "0", "1", False]] * 2
    assert later == workers[:1] * 5  # 2 restarted, then 3 after one is added
    # ... and so do the user's own choices
    before1, started1, after1, workers1, later1 = seen["1"]
    assert workers1 == [[True, "1", "system", "1", "1", "1", False]] * 2
    assert later1 == workers1[:1] * 5
    # The process that started the cluster keeps its own environment: none of
    # the workers' settings, nor Dask's, leak into it (OpenMP loaded later
    # would run on one core), neither at the start nor after restarts.
    assert before == started == after == [None] * 7
    assert before1 == started1 == after1 == ["1", "1"] + [None] * 5


def _imported(dask_worker=None):
    import sys

    from scaler.cluster import WARM_MODULES

    return tuple(name in sys.modules for name in WARM_MODULES)


def test_new_workers_import_what_the_first_run_needs_in_the_background():
    import time

    from scaler.cluster import WARM_MODULES

    with connect(config=ClusterConfig(n_workers=2, threads_per_worker=1)) as client:
        # connect returned before the imports finished; no task has run since
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = set(client.run(_imported).values())
            if states == {(True,) * len(WARM_MODULES)}:
                break
            time.sleep(0.2)
        assert states == {(True,) * len(WARM_MODULES)}
        assert "xgboost.dask" in WARM_MODULES


def _profiling(dask_worker=None):
    return "profile" in dask_worker.periodic_callbacks


def test_dask_profiles_tasks_only_for_a_dashboard():
    import warnings

    with connect(config=ClusterConfig(n_workers=1, threads_per_worker=1)) as client:
        assert list(client.run(_profiling).values()) == [False]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without bokeh, scaler warns that the dashboard needs it
        cfg = ClusterConfig(n_workers=1, threads_per_worker=1, dashboard=True)
        with connect(config=cfg) as client:
            assert list(client.run(_profiling).values()) == [True]
