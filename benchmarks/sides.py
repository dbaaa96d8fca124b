"""The two sides of the benchmark (and the dataset generation), each run as
its own process by :mod:`benchmarks.run` so that its memory is measured
apart: ``python -m benchmarks.sides {generate,baseline,scaler} ...``.

Each writes one JSON file with its timings and results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

# The same model on both sides: XGBoost hist, depth 6, eta 0.3, 100 rounds,
# no early stopping (scaler: early_stopping = 0, valid_fraction = 0, so both
# sides train on the same 80 % of the rows and score the same 20 % holdout).
ROUNDS = 100
MAX_DEPTH = 6
ETA = 0.3
PCA = 20
HOLDOUT = 0.2
SEED = 0


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def run_config(
    data_url: str, out_url: str, *, workers: int, threads: int, memory_limit: str
) -> dict[str, Any]:
    """The scaler config of the benchmark; the baseline reuses its split."""
    cfg: dict[str, Any] = {
        "data": {"url": data_url, "target": "label", "key": "id"},
        "split": {"holdout": HOLDOUT, "seed": SEED},
        "preprocess": {"scale": True, "pca": PCA},
        "model": {
            "objective": "binary:logistic",
            "rounds": ROUNDS,
            "early_stopping": 0,
            "valid_fraction": 0.0,
            # The baseline evaluates nothing during boosting; neither does scaler here
            # (its default measures a per-round train curve on 50,000 rows).
            "train_eval_rows": 0,
            "params": {"max_depth": MAX_DEPTH, "learning_rate": ETA},
        },
        "cluster": {
            "n_workers": workers,
            "threads_per_worker": threads,
            "memory_limit": memory_limit,
        },
        "output": {"url": out_url},
    }
    from scaler.config import ModelConfig  # the scaler under test (maybe an older snapshot)

    if "train_eval_rows" not in {f.name for f in dataclasses.fields(ModelConfig)}:
        del cfg["model"]["train_eval_rows"]
        cfg["model"]["train_eval_fraction"] = 0.0  # its name before 2026-11-28
    return cfg


def write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


# ------------------------------------------------------------------ generate
def generate(a: argparse.Namespace) -> None:
    import scaler
    from scaler.datasets import dataset_exists

    params = dict(rows=a.rows, n_features=50, files=16)
    t0 = time.perf_counter()
    full = dict(params, rank=8, task="binary", categorical=False, missing=0.0, seed=0)
    existed = dataset_exists(a.data, full)
    scaler.make_dataset(a.data, **params)
    write_json(
        a.result,
        {"existed": existed, "seconds": round(time.perf_counter() - t0, 3), "params": full},
    )


# ------------------------------------------------------------------ baseline
def baseline(a: argparse.Namespace) -> None:
    """pandas read -> StandardScaler + PCA(20) -> xgboost.train -> predict,
    all in this one process, written as one would by hand."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from scaler.config import load_config
    from scaler.pipeline import HOLDOUT as P_HOLDOUT
    from scaler.pipeline import TRAIN as P_TRAIN
    from scaler.pipeline import assign_split, resolve_columns

    ncores = os.cpu_count() or 1
    cfg = load_config(run_config(a.data, "unused", workers=1, threads=1, memory_limit="auto"))
    res: dict[str, Any] = {"nthread": ncores, "status": "running", "scaler_source": scaler_source()}
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    try:
        # ---- read: every file of the folder, all columns
        t = time.perf_counter()
        df = pd.read_parquet(a.data)
        timings["read"] = time.perf_counter() - t
        log(f"baseline read {len(df):,} rows x {df.shape[1]} columns in {timings['read']:.2f} s")

        # ---- preprocess: the split (scaler's seeded hash of the key), then
        # StandardScaler + PCA(20) fitted on the training rows, transform
        # train and holdout
        t = time.perf_counter()
        spec = resolve_columns(df.dtypes, cfg)
        part = assign_split(df, spec)
        X = df[spec.features].to_numpy(dtype=np.float32)
        y = df[spec.target].to_numpy()
        del df
        tr, ho = part == P_TRAIN, part == P_HOLDOUT
        X_tr, y_tr, X_ho, y_ho = X[tr], y[tr], X[ho], y[ho]
        del X
        sc = StandardScaler().fit(X_tr)
        Xs_tr = sc.transform(X_tr)
        del X_tr
        pca = SkPCA(n_components=PCA, random_state=SEED).fit(Xs_tr)
        Z_tr = pca.transform(Xs_tr)
        del Xs_tr
        Z_ho = pca.transform(sc.transform(X_ho))
        del X_ho
        timings["preprocess"] = time.perf_counter() - t
        res["pca_solver"] = getattr(pca, "_fit_svd_solver", pca.svd_solver)
        res["explained_variance_ratio_sum"] = float(pca.explained_variance_ratio_.sum())
        res["counts"] = {"train": int(tr.sum()), "holdout": int(ho.sum())}
        log(f"baseline preprocess in {timings['preprocess']:.2f} s ({res['pca_solver']})")

        # ---- train
        t = time.perf_counter()
        params = {
            "tree_method": "hist",
            "objective": "binary:logistic",
            "max_depth": MAX_DEPTH,
            "eta": ETA,
            "nthread": ncores,
        }
        evals = []
        dtrain = xgb.QuantileDMatrix(Z_tr, y_tr, nthread=ncores)
        if a.train_eval:  # what scaler does: auc + logloss on the train matrix every round
            params["eval_metric"] = ["auc", "logloss"]
            evals = [(dtrain, "train")]
        t_boost = time.perf_counter()
        bst = xgb.train(params, dtrain, num_boost_round=ROUNDS, evals=evals, verbose_eval=False)
        timings["train"] = time.perf_counter() - t
        # the boosting alone: the same work on scaler's side (compare's lower bound),
        # unless it evaluated the training matrix every round (scaler does not here)
        res["train_split_s"] = {
            "matrix": round(t_boost - t, 3),
            "boost": round(time.perf_counter() - t_boost, 3),
            "evaluated": bool(evals),
        }
        log(f"baseline train in {timings['train']:.2f} s")

        # ---- predict the holdout + AUC
        t = time.perf_counter()
        p = bst.inplace_predict(Z_ho)
        auc = float(roc_auc_score(y_ho, p))
        timings["predict"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        res.update(status="ok", auc=auc)
        log(f"baseline predict in {timings['predict']:.2f} s, AUC {auc:.5f}")
    except MemoryError as e:
        res.update(status="MemoryError", error=repr(e))
        timings["total"] = time.perf_counter() - t_start
    res["timings"] = {k: round(v, 3) for k, v in timings.items()}
    write_json(a.result, res)


# ------------------------------------------------------------------ scaler
def _touch_partition(df: Any) -> int:
    # Materialise every column of the partition; return its size.
    return int(df.memory_usage(index=False, deep=False).sum())


def plain_read(client: Any, url: str, read_kw: dict[str, Any] | None = None) -> dict[str, Any]:
    """One plain parallel read of the same data on the same cluster:
    ``dd.read_parquet(url, **read_kw)``, every partition materialised (all
    columns) on the workers, only its size sent back."""
    import dask
    import dask.dataframe as dd

    t = time.perf_counter()
    # a copy of each option's dict: Dask adds to the ones it is given
    kw = {k: dict(v) if isinstance(v, dict) else v for k, v in (read_kw or {}).items()}
    ddf = dd.read_parquet(url, **kw)
    sizes = dask.compute(*[dask.delayed(_touch_partition)(p) for p in ddf.to_delayed()])
    return {
        "seconds": round(time.perf_counter() - t, 3),
        "partitions": ddf.npartitions,
        "bytes_in_memory": int(sum(sizes)),
    }


def scaler_grouping(client: Any, url: str) -> dict[str, Any]:
    """The ``dd.read_parquet`` options with which scaler reads ``url`` on
    ``client``'s cluster, beyond Dask's defaults: its grouping of small
    files into partitions (:func:`scaler.storage.group_bytes`) and its
    reader options (:func:`scaler.storage.read_options`: no pre-buffering
    of local files); empty when it has none (or this version of scaler
    has neither). Taken from scaler itself, so that the reference reads
    follow its rules."""
    from scaler import pipeline, storage

    out: dict[str, Any] = {}
    if hasattr(storage, "read_options"):
        out.update(storage.read_options(storage.get_fs(url)[0]))
    if not hasattr(storage, "group_bytes"):
        return out
    info: dict[str, Any] = {}
    storage.read_dataset(url, info=info)
    if hasattr(pipeline, "_group_bytes_for"):
        gb = pipeline._group_bytes_for(client, info.get("file_bytes"))
    else:  # versions before the helper: the same rule, written out
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        threads = sum(int(w["nthreads"]) for w in workers)
        gb = storage.group_bytes(info.get("file_bytes"), 2 * threads)
    if not gb:
        return out
    if hasattr(storage, "grouping_options"):
        return {**storage.grouping_options(gb), **out}
    return {"split_row_groups": "adaptive", "blocksize": gb, "aggregate_files": True, **out}


def _described(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for the JSON result: the pyarrow objects in them (the
    file format of :func:`scaler.storage.read_options`) as their settings."""
    out = dict(options)
    fmt = out.get("dataset", {}).get("format")
    if fmt is not None:
        scan = fmt.default_fragment_scan_options
        out["dataset"] = {
            **out["dataset"],
            "format": {"parquet_scan_options": {"pre_buffer": scan.pre_buffer}},
        }
    return out


def plain_read_default_cluster(
    url: str,
    workers: int,
    threads: int,
    memory_limit: Any,
    reads: int = 2,
    read_kw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`plain_read` on a LocalCluster with Dask's defaults and the
    shape of scaler's (scaler's own sets its workers' Arrow memory pool,
    :func:`scaler.cluster.worker_env`): the preprocessing target is taken
    against the fastest of all the reads. With ``read_kw`` (scaler's
    read options), as many reads again with those options."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            memory_limit=memory_limit,
            host="127.0.0.1",
            dashboard_address=None,
        ) as lc,
        Client(lc) as c,
    ):
        runs = [plain_read(c, url)["seconds"] for _ in range(reads)]
        grouped = [plain_read(c, url, read_kw)["seconds"] for _ in range(reads)] if read_kw else []
    return {"seconds": min(runs + grouped), "runs_s": runs, "grouped_runs_s": grouped}


def _scaler_path() -> str:
    # Imports are outside both sides' timings (the baseline imports xgboost
    # before its clock starts): scaler imports xgboost only when training
    # starts, so the workers import it here, with scaler.
    import xgboost.dask  # noqa: F401

    import scaler

    return os.path.dirname(os.path.abspath(scaler.__file__))


def _worker_memory_report(dask_worker: Any) -> dict[str, Any]:
    data = dask_worker.data
    out: dict[str, Any] = {
        "memory_limit": dask_worker.memory_manager.memory_limit,
        "managed_in_memory_bytes": int(getattr(getattr(data, "fast", None), "total_weight", 0)),
    }
    if hasattr(data, "cumulative_metrics"):  # a SpillBuffer: memory_limit is set
        m = data.cumulative_metrics
        out["spilled_now_bytes"] = list(data.spilled_total)
        out["disk_write_count"] = int(m.get(("disk-write", "count"), 0))
        out["disk_write_bytes"] = int(m.get(("disk-write", "bytes"), 0))
        out["disk_read_count"] = int(m.get(("disk-read", "count"), 0))
        out["disk_read_bytes"] = int(m.get(("disk-read", "bytes"), 0))
    else:
        out["spill"] = "no SpillBuffer (memory_limit unset)"
    return out


def scaler_side(a: argparse.Namespace) -> None:
    import contextlib

    import scaler
    from scaler.config import ClusterConfig

    res: dict[str, Any] = {"status": "running", "scaler_source": scaler_source()}
    t = time.perf_counter()
    client = scaler.connect(
        config=ClusterConfig(
            n_workers=a.workers, threads_per_worker=a.threads, memory_limit=a.memory_limit
        )
    )
    res["cluster_start_s"] = round(time.perf_counter() - t, 3)
    # The baseline imports xgboost before its clock starts; the workers do too,
    # outside every timing (scaler.connect starts these imports in the
    # background; this waits for them).
    t = time.perf_counter()
    client.run(lambda: __import__("xgboost.dask"))
    res["worker_imports_s"] = round(time.perf_counter() - t, 3)
    res["cluster"] = {
        "workers": a.workers,
        "threads_per_worker": a.threads,
        "memory_limit": a.memory_limit,
        "worker_memory_limits": list(
            client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit).values()
        ),
        "started_workers": len(client.scheduler_info(n_workers=-1)["workers"]),
        "started_threads": sorted(
            {w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
        ),
    }
    res["scaler_source"]["worker_paths"] = sorted(set(client.run(_scaler_path).values()))
    import xgboost.dask  # noqa: F401 - imported before the clock, as on the baseline side

    log(
        f"cluster up in {res['cluster_start_s']:.2f} s: {client}; scaler from {res['scaler_source']}"
    )
    try:
        grouping = scaler_grouping(client, a.data)
        res["read_grouping"] = _described(grouping)
        res["plain_read_before"] = plain_read(client, a.data)
        log(f"plain parallel read {res['plain_read_before']}")
        if grouping:
            res["plain_read_grouped_before"] = plain_read(client, a.data, grouping)
            log(
                f"plain parallel read with scaler's read options {res['plain_read_grouped_before']}"
            )
        cfg = run_config(
            a.data, a.out, workers=a.workers, threads=a.threads, memory_limit=a.memory_limit
        )
        report = contextlib.nullcontext()
        if a.performance_report:
            from distributed import performance_report

            report = performance_report(filename=a.performance_report)
        t = time.perf_counter()
        with report:
            result = scaler.run(cfg, client=client, echo=log)
        res["run_wall_s"] = round(time.perf_counter() - t, 3)
        res["timings"] = dict(result.timings)
        res["metrics"] = {k: float(v) for k, v in result.metrics.items()}
        res["auc"] = float(result.metrics["auc"])
        res["counts"] = dict(result.counts)
        res["workers"] = {str(k): v for k, v in client.run(_worker_memory_report).items()}
        res["plain_read_after"] = plain_read(client, a.data)
        log(f"plain parallel read {res['plain_read_after']}")
        if grouping:
            res["plain_read_grouped_after"] = plain_read(client, a.data, grouping)
            log(f"plain parallel read with scaler's read options {res['plain_read_grouped_after']}")
        res["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        res.update(status="error", error=f"{type(e).__name__}: {e}")
        log(f"scaler side failed: {res['error']}")
        with contextlib.suppress(Exception):
            res["workers"] = {str(k): v for k, v in client.run(_worker_memory_report).items()}
    finally:
        with contextlib.suppress(Exception):
            scaler.cluster.close(client)
    if res["status"] == "ok":
        try:
            res["plain_read_default_cluster"] = plain_read_default_cluster(
                a.data,
                res["cluster"]["started_workers"],
                res["cluster"]["started_threads"][0],
                a.memory_limit,
                read_kw=grouping or None,
            )
            log(
                f"plain parallel read, Dask's default LocalCluster {res['plain_read_default_cluster']}"
            )
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            res["plain_read_default_cluster"] = {"error": f"{type(e).__name__}: {e}"}
    write_json(a.result, res)


def _pin_scaler() -> None:
    """Import scaler from BENCH_SCALER_SRC (a snapshot of one commit) when set;
    spawned Dask workers inherit this sys.path."""
    src = os.environ.get("BENCH_SCALER_SRC")
    if src:
        sys.path.insert(0, src)


def scaler_source() -> dict[str, str]:
    import hashlib

    import scaler

    root = os.path.dirname(os.path.abspath(scaler.__file__))
    h = hashlib.sha256()
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return {"path": root, "sources_sha256": h.hexdigest()[:16]}


def main(argv: list[str] | None = None) -> None:
    _pin_scaler()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sides")
    ap.add_argument("side", choices=["generate", "baseline", "scaler"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--memory-limit", default="auto")
    ap.add_argument("--train-eval", action="store_true")
    ap.add_argument("--performance-report", default="")
    a = ap.parse_args(argv)
    {"generate": generate, "baseline": baseline, "scaler": scaler_side}[a.side](a)


if __name__ == "__main__":
    main()
