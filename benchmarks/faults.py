"""Page faults against time: reads and a prepare on scaler's default cluster.

    python -m benchmarks.faults [--rows 2000000]

On some VMs the first touch of new memory costs about as much as decoding
it (0.4 to 0.5 s per GiB in 4 KiB pages where the latest figures ran), so
the time of a read depends on whether the worker's allocators still hold
memory an earlier step freed. This runs, on one LocalCluster as
``scaler.connect`` starts it, in order: a plain read of the data with
Dask's defaults, two reads with scaler's reader options (as the
benchmark's reference reads do), ``scaler.prepare``, a read while its
features are held, and two reads after they are released; and prints the
seconds of each step and the minor page faults of the worker processes
during it (``getrusage``). The data is the benchmark's
(``benchmarks/data/rows-N``; ``python -m benchmarks.run`` makes it).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    a = ap.parse_args(argv)
    data = os.path.join(a.data_dir, f"rows-{a.rows}")
    if not os.path.isdir(data):
        ap.error(f"no data at {data}: run python -m benchmarks.run --rows {a.rows} first")

    import scaler
    from benchmarks.sides import plain_read, run_config, scaler_grouping

    cfg = run_config(
        data, os.path.join(a.data_dir, "work", "faults"), workers=0, threads=0, memory_limit="auto"
    )
    cfg["output"]["overwrite"] = True
    with scaler.connect(config=scaler.load_config(cfg).cluster) as client:
        client.run(lambda: __import__("xgboost.dask"))  # imports outside the figures
        options = scaler_grouping(client, data)

        def faults() -> int:
            return sum(client.run(_faults).values())

        def step(name: str, fn: Any) -> Any:
            f0 = faults()
            t = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t
            print(f"| {name} | {seconds:.3f} | {faults() - f0:,} |", flush=True)
            return out

        print(f"{a.rows:,} rows on {client}\n")
        print("| step | seconds | worker page faults |\n|---|---:|---:|")
        step("plain read, Dask's defaults", lambda: plain_read(client, data))
        step("read as scaler reads", lambda: plain_read(client, data, options))
        step("read as scaler reads, again", lambda: plain_read(client, data, options))
        prep = step(
            "scaler.prepare (scan + transform)",
            lambda: scaler.prepare(cfg, client=client, progress=False, echo=lambda s: None),
        )
        step("read as scaler reads, features held", lambda: plain_read(client, data, options))
        prep.release()
        time.sleep(0.5)
        step("read as scaler reads, features released", lambda: plain_read(client, data, options))
        step("read as scaler reads, again", lambda: plain_read(client, data, options))


if __name__ == "__main__":
    main()
