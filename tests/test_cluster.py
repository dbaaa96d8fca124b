"""The LocalCluster that scaler.connect starts."""

from distributed.deploy.utils import CPU_COUNT, nprocesses_nthreads

from scaler import connect
from scaler.config import ClusterConfig


def _layout(client):
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return len(workers), sorted({w["nthreads"] for w in workers})


def test_default_local_cluster_fits_the_machine():
    # one single-threaded worker per core up to 4 cores, as LocalCluster() does
    # (this used to be 2 x 1 whatever the machine)
    procs, threads = nprocesses_nthreads(CPU_COUNT)
    with connect(config=ClusterConfig()) as client:
        assert _layout(client) == (procs, [threads])
        assert (
            sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values())
            == procs * threads
        )


def test_threads_alone_set_the_workers_from_the_cores():
    with connect(config=ClusterConfig(threads_per_worker=1, n_workers=0)) as client:
        assert _layout(client) == (CPU_COUNT, [1])
    with connect(config=ClusterConfig(n_workers=1, threads_per_worker=0)) as client:
        assert _layout(client)[0] == 1
