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


def _arrow_pool():
    import os

    import pyarrow as pa

    return os.environ.get("ARROW_DEFAULT_MEMORY_POOL"), pa.default_memory_pool().backend_name


def _hugepage_setting(dask_worker=None):
    import os

    return os.environ.get("NUMPY_MADVISE_HUGEPAGE")


def test_workers_use_arrows_jemalloc_pool_unless_told_otherwise(monkeypatch):
    import pyarrow as pa

    from scaler.cluster import worker_env

    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    if "jemalloc" not in pa.supported_memory_backends():
        assert "ARROW_DEFAULT_MEMORY_POOL" not in worker_env()  # nothing to ask for
        return
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    assert worker_env() == {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc", "NUMPY_MADVISE_HUGEPAGE": "0"}
    with connect(config=ClusterConfig(n_workers=1, threads_per_worker=1)) as client:
        assert set(client.run(_arrow_pool).values()) == {("jemalloc", "jemalloc")}
        assert set(client.run(_hugepage_setting).values()) == {"0"}
    # the user's own choices reach the workers unchanged
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert worker_env() == {}
    with connect(config=ClusterConfig(n_workers=1, threads_per_worker=1)) as client:
        assert set(client.run(_arrow_pool).values()) == {("system", "system")}
        assert set(client.run(_hugepage_setting).values()) == {"1"}


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
