"""What checkpoints cost: training time with and without them, in one run.

    python -m benchmarks.checkpoint_cost [--rows 1000000] [--rounds 100] [--repeats 2]

Trains the same booster (persisted 20 float32 features, 2 workers x 1
thread, hist, depth 6) with checkpoints off, every 10 rounds and every
round, interleaved ``--repeats`` times, and prints the medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

from scaler.train import train_booster


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    params = {"tree_method": "hist", "objective": "binary:logistic", "max_depth": 6, "eta": 0.3}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as c,
        Client(c) as client,
    ):
        rng = da.random.default_rng(0)
        X = rng.normal(size=(args.rows, 20), chunks=(args.rows // 16, 20)).astype(np.float32)
        y = ((X[:, 0] + X[:, 1] * X[:, 2]) > 0).astype(np.float32)
        X, y = client.persist([X, y])
        times: dict[str, list[float]] = {"off": [], "every 10": [], "every 1": []}
        sizes = {}
        for _ in range(args.repeats):
            for name, every in (("off", 0), ("every 10", 10), ("every 1", 1)):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    res = train_booster(
                        client,
                        X,
                        y,
                        params=params,
                        rounds=args.rounds,
                        checkpoint_url=f"{tmp}/ckpt" if every else None,
                        checkpoint_every=every,
                        fingerprint="bench",
                    )
                    times[name].append(time.perf_counter() - t0)
                    sizes[name] = len(bytes(res.booster.save_raw("ubj")))
        med = {k: statistics.median(v) for k, v in times.items()}
        out = {
            "machine": {
                "cpus": __import__("os").cpu_count(),
                "processor": platform.processor(),
                "python": platform.python_version(),
            },
            "rows": args.rows,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "seconds": times,
            "median_seconds": med,
            "ratio_vs_off": {k: round(v / med["off"], 3) for k, v in med.items()},
            "final_booster_bytes": sizes["off"],
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
