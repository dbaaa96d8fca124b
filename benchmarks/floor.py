"""How far the preprocessing can get from the read: its kernels, and the BLAS
calls they cannot avoid, against a read of the same data, in one process.

    python -m benchmarks.floor [--rows 2000000] [--threads 2] [--repeat 3]

No Dask cluster: the 16 partitions go through a thread pool of
``--threads`` threads, in a process set up like a worker of scaler's
LocalCluster (glibc's ``MALLOC_TRIM_THRESHOLD_`` as Dask's nannies set it,
one BLAS thread, and scaler's own :func:`scaler.cluster.worker_env`:
Arrow's jemalloc pool, no NumPy huge pages; the script starts itself
again with them when they are not set). Each figure is the fastest of
``--repeat`` passes over all partitions:

* read: each partition of ``dask.dataframe.read_parquet(data)`` computed
  on its own (Dask's Parquet reader, no scheduler);
* statistics: :func:`scaler.pipeline.with_split` and
  :func:`scaler.pipeline.scan_partition` on the read partitions;
* transform: :func:`scaler.pipeline.featurize_split` (scaling + PCA, cut
  into the split parts, training's bin-edge sample);
* BLAS floor: only the matrix products those two kernels need, on arrays
  made ready beforehand: the float64 cross-products of the training rows
  (``syrk``, p + 1 columns) and the float32 projection onto the components;
  and, for comparison, the same cross-products in float32.

The read ratio of ``read + statistics + transform`` is what the benchmark's
preprocessing target (1.5x a plain read) asks of scaler on a cluster, here
without any scheduling; ``read + BLAS floor`` is its lower bound with exact
float64 statistics. Writes ``<out>/floor-<rows>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The environment Dask's nannies give a worker (see the module docstring);
# scaler.cluster.worker_env adds scaler's own when the process starts.
WORKER_ENV = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _passes(fn: Any, n: int, threads: int, repeat: int) -> tuple[float, list[Any]]:
    """The fastest of ``repeat`` passes of ``fn(i)`` over ``range(n)``, and
    the results of the last pass."""
    best, out = float("inf"), []
    for _ in range(repeat):
        out = []
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as ex:
            out = list(ex.map(fn, range(n)))
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(data: str, threads: int, repeat: int) -> dict[str, Any]:
    import numpy as np

    from benchmarks.sides import run_config
    from scaler import _heap
    from scaler import pipeline as P
    from scaler.config import load_config
    from scaler.preprocess import Preprocessor, ScalePCA

    _heap.keep()  # as during scaler's passes
    cfg = load_config(run_config(data, "unused", workers=1, threads=threads, memory_limit="auto"))
    df, spec, _ = P._read(cfg)
    parts = df.to_delayed()
    n = len(parts)
    sec: dict[str, float] = {}

    sec["read"], frames = _passes(lambda i: parts[i].compute(scheduler="sync"), n, threads, repeat)

    def stats(i: int) -> Any:
        f = P.with_split(frames[i], spec)
        return f, P.scan_partition(f, spec)

    sec["statistics"], out = _passes(stats, n, threads, repeat)
    held = [f for f, _ in out]
    scan = out[0][1]
    for _, s in out[1:]:
        scan = scan.merge(s)
    frames.clear()  # only the partitions with their split part stay
    out.clear()
    sp = ScalePCA(scale=True, n_components=cfg.preprocess.pca)
    sp._fit_moments(scan.moments, list(spec.numeric))
    pre = Preprocessor(list(spec.numeric), [], {}, sp)
    counts = {k: int(scan.parts[c]) for k, c in P.PART_CODES.items()}
    _, codes = P._part_codes(counts)
    sample = P._cut_fraction(cfg, spec, counts)
    classes = [P._py(v) for v in P._sorted_values(scan.classes)]
    sec["transform"], _ = _passes(
        lambda i: P.featurize_split(held[i], spec, pre, classes, codes, sample),
        n,
        threads,
        repeat,
    )

    # The BLAS floor: the products alone, on arrays made ready here.
    assert sp.components_ is not None
    proj = (sp.components_ / sp.scale_[None, :]).astype(np.float32)
    train64, all32 = [], []
    for f in held:
        x = f[list(spec.numeric)].to_numpy(dtype=np.float32)
        rows = np.flatnonzero(f[P.PART].to_numpy() == P.TRAIN)
        t = np.ones((x.shape[1] + 1, len(rows)))
        t[:-1] = x[rows].T - sp.mean_[:, None]
        train64.append(t)
        all32.append(np.ascontiguousarray((x - sp.mean_.astype(np.float32)).T))
    held.clear()
    train32 = [t.astype(np.float32) for t in train64]
    block = 4096  # rows per product, as the kernels go through a partition

    def syrk(arrays: list[Any]) -> Any:
        def one(i: int) -> Any:
            a = arrays[i]
            g = np.zeros((a.shape[0], a.shape[0]))
            for s in range(0, a.shape[1], block):
                b = a[:, s : s + block]
                g += b @ b.T
            return g

        return one

    def project(i: int) -> Any:
        a = all32[i]
        out = np.empty((proj.shape[0], a.shape[1]), dtype=np.float32)
        for s in range(0, a.shape[1], block):
            np.matmul(proj, a[:, s : s + block], out=out[:, s : s + block])
        return out

    sec["blas_syrk_float64"], _ = _passes(syrk(train64), n, threads, repeat)
    sec["blas_projection_float32"], _ = _passes(project, n, threads, repeat)
    sec["blas_syrk_float32"], _ = _passes(syrk(train32), n, threads, repeat)

    r = sec["read"]
    floor = sec["blas_syrk_float64"] + sec["blas_projection_float32"]
    return {
        "partitions": n,
        "features": len(spec.numeric),
        "train_rows": counts["train"],
        "threads": threads,
        "repeat": repeat,
        "seconds": {k: round(v, 4) for k, v in sec.items()},
        "ratios_to_read": {
            "read + statistics + transform": round(
                (r + sec["statistics"] + sec["transform"]) / r, 3
            ),
            "read + BLAS floor (float64 statistics)": round((r + floor) / r, 3),
            "read + BLAS floor (float32 statistics)": round(
                (r + sec["blas_syrk_float32"] + sec["blas_projection_float32"]) / r, 3
            ),
        },
    }


def markdown(res: dict[str, Any]) -> str:
    s, q = res["seconds"], res["ratios_to_read"]
    lines = [
        f"### Preprocessing kernels against the read, one process, {res['threads']} threads",
        "",
        f"{res['rows']:,} rows x {res['features']} float32 features, {res['partitions']} "
        f"partitions; fastest of {res['repeat']} passes; `{res['command']}`",
        "",
        "| pass over all partitions | seconds | / read |",
        "|---|---:|---:|",
    ]
    for k, v in s.items():
        lines.append(f"| {k.replace('_', ' ')} | {v:.3f} | {v / s['read']:.2f} |")
    lines += ["", "| read ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in q.items()]
    m = res["machine"]
    lines += ["", f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['ram_gib']} GiB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    from scaler.cluster import worker_env

    WORKER_ENV.update(worker_env())  # Arrow's pool, NumPy's huge pages: as scaler's workers
    missing = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
    if missing:  # glibc and the BLAS read these when the process starts
        env = {**os.environ, **missing}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.floor", *argv], env)
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", default=os.path.join(here, "data"))
    ap.add_argument("--out", default=os.path.join(here, "results"))
    a = ap.parse_args(argv)
    import scaler
    from benchmarks.run import MEMORY_ENV, save_result

    data = os.path.join(a.data_dir, f"rows-{a.rows}")
    scaler.make_dataset(data, rows=a.rows, n_features=50, files=16)  # reused when present
    res = {"rows": a.rows, **measure(data, a.threads, a.repeat)}
    res["command"] = "python -m benchmarks.floor " + " ".join(argv)
    keys = {*WORKER_ENV, *MEMORY_ENV}
    res["environment"] = {k: os.environ[k] for k in sorted(keys) if k in os.environ}
    save_result(a.out, f"floor-{a.rows}", res, markdown)


if __name__ == "__main__":
    main()
