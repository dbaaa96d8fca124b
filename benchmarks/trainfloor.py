"""scaler's train stage against XGBoost alone, on the same features.

    python -m benchmarks.trainfloor [--rows 2000000] [--repeat 3]

On scaler's default LocalCluster (the benchmark's config), the features are
prepared once (``scaler.prepare``); then, ``--repeat`` times, in turn:

* **scaler**: ``Prepared.train()``, the train stage of a run: bin edges from
  a sample of the training rows, ``xgboost.dask.DaskQuantileDMatrix``,
  ``xgboost.dask.train``;
* **worker**: XGBoost alone, in one task on the worker that holds the
  features: the training rows joined into one frame, bin edges from the
  same number of sampled rows (``scaler.train._quantile_rows``),
  ``xgboost.QuantileDMatrix`` and ``xgboost.train`` with the same
  parameters on every thread of the worker, glibc's heap kept while
  boosting as scaler keeps it; no scheduler, no collective;
* **process**: the same in the client process (no Dask worker: glibc's
  defaults, though the scheduler runs there too), on the features
  gathered there before the clock.

"matrix" is the sample's bin edges plus the binning; "boost" the 100
rounds. The difference between scaler and worker is what Dask and
``xgboost.dask`` add to XGBoost's own work; worker against process shows
what the worker's environment adds.

A pitfall this avoids: a Dask worker's threads take OpenMP's thread count
from ``OMP_NUM_THREADS``, which Dask's nannies set to 1, and XGBoost never
runs more OpenMP threads than that, whatever ``nthread`` says
(``common::OmpGetNumThreads``). ``xgboost.dask`` raises it for its tasks
with ``xgboost.config_context(nthread=...)``; so does the worker task here.
Without it, the same task boosted on one core (11.2 to 11.9 s against 6.3
to 7.4 s with it, in a one-off run on 2M rows and 2 cores), except on a
thread where an ``xgboost.dask`` task had run before. Writes ``<out>/trainfloor-<rows>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _alone(parts: list[Any], params: dict[str, Any], rounds: int, sample_rows: int) -> dict:
    """XGBoost alone on the training rows of ``parts`` (in a worker task or
    the client process): seconds of the matrix and of the boosting."""
    import pandas as pd
    import xgboost as xgb

    from scaler import _heap
    from scaler.pipeline import LABEL
    from scaler.train import _quantile_rows, _SampleCuts, _spread

    threads = os.cpu_count() or 1
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except ValueError:  # not in a worker: the client process
        pass
    df = pd.concat(parts, ignore_index=True)
    feats = [c for c in df.columns if c.startswith("pc")]
    X, y = df[feats], df[LABEL]
    out: dict[str, float] = {}
    with xgb.config_context(nthread=threads):
        t0 = time.perf_counter()
        max_bin = params.get("max_bin")
        rows = _quantile_rows(_spread(X, sample_rows / len(X)), max_bin)
        kw = {"max_bin": max_bin} if max_bin else {}
        dtrain = xgb.QuantileDMatrix(X, y, ref=_SampleCuts(rows, max_bin), nthread=threads, **kw)
        out["matrix"] = time.perf_counter() - t0
        _heap.keep()  # as scaler's _HeapForTraining: a no-op where glibc's defaults hold
        try:
            t0 = time.perf_counter()
            xgb.train({**params, "nthread": threads}, dtrain, rounds)
            out["boost"] = time.perf_counter() - t0
        finally:
            _heap.release()
    out["threads"] = threads
    return out


def measure(data: str, repeat: int) -> dict[str, Any]:
    import scaler
    from benchmarks.sides import run_config
    from scaler.train import xgb_params

    cfg = run_config(
        data,
        os.path.join(HERE, "data", "work", "trainfloor"),
        workers=0,
        threads=0,
        memory_limit="auto",
    )
    cfg["output"]["overwrite"] = True
    rc = scaler.load_config(cfg)
    params, rounds = xgb_params(rc.model, task="binary")
    runs: list[dict[str, Any]] = []
    with scaler.connect(config=rc.cluster) as client:
        client.run(lambda: __import__("xgboost.dask"))  # imports outside the figures
        import xgboost.dask  # noqa: F401

        prep = scaler.prepare(cfg, client=client, progress=False, echo=lambda s: None)
        # the persisted training parts, one future per partition (Client.futures_of
        # finds none in a persisted dask-expr frame)
        futures = prep._futures["train"]
        local = client.gather(futures)
        sample = rc.model.bin_sample_rows
        order = ["scaler", "worker", "process"]
        for i in range(repeat):
            for side in order[i % 3 :] + order[: i % 3]:
                t0 = time.perf_counter()
                if side == "scaler":
                    prep.train()
                    r: dict[str, Any] = {}
                elif side == "worker":
                    r = client.submit(_alone, futures, params, rounds, sample, pure=False).result()
                else:
                    r = _alone(local, params, rounds, sample)
                r = {"side": side, "run": i + 1, "total": time.perf_counter() - t0, **r}
                runs.append(r)
                print(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()},
                    flush=True,
                )
        prep.release()
    med: dict[str, dict[str, float]] = {}
    for side in ("scaler", "worker", "process"):
        rs = [r for r in runs if r["side"] == side]
        med[side] = {
            k: round(statistics.median(r[k] for r in rs), 4)
            for k in ("total", "matrix", "boost")
            if k in rs[0]
        }
    return {
        "train_rows": prep.counts["train"],
        "features": len(prep.preprocessor.output_columns),
        "params": params,
        "rounds": rounds,
        "bin_sample_rows": sample,
        "repeat": repeat,
        "runs": [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in runs
        ],
        "median": med,
    }


def markdown(res: dict[str, Any]) -> str:
    med = res["median"]
    lines = [
        "### scaler's train stage against XGBoost alone, same features, same cluster",
        "",
        f"{res['train_rows']:,} training rows x {res.get('features', 20)} features, "
        f"{res['rounds']} rounds; "
        f"median of {res['repeat']} runs each, in turn; `{res['command']}`",
        "",
        "| where | matrix (s) | boost (s) | total (s) | / scaler |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {
        "scaler": "scaler: `Prepared.train()` (xgboost.dask)",
        "worker": "XGBoost alone in a task on the worker",
        "process": "XGBoost alone in the client process",
    }
    for side, name in names.items():
        m = med[side]
        cells = [f"{m[k]:.2f}" if k in m else "—" for k in ("matrix", "boost")]
        ratio = m["total"] / med["scaler"]["total"]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {m['total']:.2f} | {ratio:.2f} |")
    totals = {
        side: ", ".join(f"{r['total']:.2f}" for r in res["runs"] if r["side"] == side)
        for side in names
    }
    lines += ["", "Totals: " + "; ".join(f"{s} {t}" for s, t in totals.items()) + " s."]
    m = res["machine"]
    lines += ["", f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['ram_gib']} GiB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args(argv)
    data = os.path.join(a.data_dir, f"rows-{a.rows}")
    if not os.path.isdir(data):
        ap.error(f"no data at {data}: run python -m benchmarks.run --rows {a.rows} first")
    from benchmarks.run import MEMORY_ENV, env_prefix, save_result

    res = {"rows": a.rows, **measure(data, a.repeat)}
    res["command"] = env_prefix() + "python -m benchmarks.trainfloor " + " ".join(argv)
    res["environment"] = {k: os.environ[k] for k in sorted(MEMORY_ENV) if k in os.environ}
    save_result(a.out, f"trainfloor-{a.rows}", res, markdown)


if __name__ == "__main__":
    main()
