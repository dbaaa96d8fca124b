"""Attaching to an existing Dask scheduler by address.

    dask scheduler --host 127.0.0.1 --port 8786 &
    dask worker tcp://127.0.0.1:8786 --host 127.0.0.1 &
    python examples/remote_scheduler.py tcp://127.0.0.1:8786 [OUT_DIR]

Any scheduler works the same way: dask-jobqueue's
``SLURMCluster(...).scheduler_address``, dask-kubernetes' ``KubeCluster``,
a managed Dask service. The data URL must be reachable from the workers
(an object store, or a shared filesystem; here they run on this machine).
"""

import os
import sys

import scaler


def main(address: str, out: str = "scaler-remote") -> None:
    out = os.path.abspath(out)  # the workers resolve paths themselves
    with scaler.connect(address) as client:
        workers = client.scheduler_info()["workers"]
        print(f"Connected to {address}: {len(workers)} worker(s)")
        scaler.make_dataset(f"{out}/data", rows=10_000, n_features=10, files=4, rank=3)
        result = scaler.run(
            {
                "data": {"url": f"{out}/data", "target": "label", "key": "id"},
                "preprocess": {"pca": 4},
                "model": {"rounds": 30},
                "output": {"url": f"{out}/output"},
            },
            client=client,  # or [cluster] address / --scheduler / $DASK_SCHEDULER_ADDRESS
        )
        print(result.summary())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python examples/remote_scheduler.py tcp://HOST:PORT [OUT_DIR]")
    main(*sys.argv[1:3])
