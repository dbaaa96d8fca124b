"""scaler against a hand-written single-machine baseline, in one run.

    python -m benchmarks.run --rows 2000000
    python -m benchmarks.run --rows 2000000,10000000,20000000 --memory-limit 3GB --workers 2
    python -m benchmarks.run --rows 2000000 --repeat 3 --scaler-ref HEAD
    python -m benchmarks.run --render benchmarks/results/rows-2000000.json

For each size it generates the dataset with scaler's own generator if it is
missing (``benchmarks/data/rows-N``, 50 float32 features, 16 files), then runs,
each in its own process so that memory is measured apart:

* baseline: pandas read of all files, scikit-learn StandardScaler + PCA(20)
  fitted on the training rows, ``xgboost.train`` (hist, depth 6, eta 0.3,
  100 rounds, nthread = all cores), predict the holdout, sklearn AUC;
* scaler: ``scaler.run`` with the same parameters on a LocalCluster of
  ``--workers`` x ``--threads`` (by default scaler's own layout for the
  machine, ``scaler.cluster.local_layout``: 1 x 2 on 2 cores), plus
  a plain parallel read of the same data on the same cluster, before and
  after the run, and two on a LocalCluster of the same shape with Dask's
  defaults (scaler's sets its workers' Arrow memory pool): the fastest of
  them is the reference for the preprocessing target.

Both sides use scaler's split (a seeded hash of the ``id`` key, 20 % holdout)
and no early stopping, so they train on the same rows and score the same
holdout. Peak memory is the RSS (and PSS) of each side's whole process tree,
sampled every 0.1 s from this process.

It writes ``<out>/<tag>.json`` and ``<out>/<tag>.md`` for one size; with
several sizes, those of each size and ``scale.json`` / ``scale.md`` go to
``<out>/scale<suffix>/`` (``scale-auto`` for the default cluster). ``--repeat N`` runs the
sides N times, alternating, and reports the median run and every pair's
ratio; ``--scaler-ref REF`` measures ``scaler/`` as of a git commit;
``--render FILE.json...`` rebuilds the markdown from saved results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

from benchmarks.monitor import run_monitored

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GiB = 2**30
# The plain reads with scaler's read options (grouping of small files, no
# pre-buffering), on scaler's cluster. The names (and "read_grouping",
# "grouped_runs_s") say "grouped" from when grouping was the only option:
# they stay for the results written then.
GROUPED_READS = ("plain_read_grouped_before", "plain_read_grouped_after")


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import psutil

    vm = psutil.virtual_memory()
    return {
        "cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "ram_bytes": vm.total,
        "ram_gib": round(vm.total / GiB, 1),
        "available_at_start_gib": round(vm.available / GiB, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "transparent_hugepages": _thp_mode(),
        # Memory settings both sides inherit (scaler's workers add theirs,
        # scaler.cluster.worker_env, where these are unset).
        "environment": {k: os.environ[k] for k in MEMORY_ENV if k in os.environ},
    }


MEMORY_ENV = (
    "NUMPY_MADVISE_HUGEPAGE",
    "MIMALLOC_ALLOW_THP",
    "ARROW_DEFAULT_MEMORY_POOL",
    "MALLOC_TRIM_THRESHOLD_",
)


def _thp_mode() -> str:
    """The kernel's transparent huge page mode (the bracketed word), if known."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "unknown"
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "scaler",
        "dask",
        "distributed",
        "dask-ml",
        "xgboost",
        "pandas",
        "pyarrow",
        "scikit-learn",
        "numpy",
        "psutil",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "scaler"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        out["git_commit"] = commit + (" (scaler/ has uncommitted changes)" if dirty else "")
    except OSError:
        pass
    return out


def env_prefix() -> str:
    """The memory variables of this environment (:data:`MEMORY_ENV`) as they
    go in front of a recorded command."""
    return "".join(f"{k}={shlex.quote(os.environ[k])} " for k in MEMORY_ENV if k in os.environ)


def save_result(out_dir: str, name: str, res: dict[str, Any], markdown: Any) -> None:
    """Add the machine and the versions to ``res``, write it to
    ``<out_dir>/<name>.json`` and ``markdown(res)`` to ``<name>.md``, and
    print the markdown (the one-process scripts' results)."""
    res["machine"], res["versions"] = machine_info(), versions()
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, name)
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=2)
    md = markdown(res)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md)


# ------------------------------------------------------------------ one size
def pin_scaler(ref: str, data_dir: str) -> dict[str, str]:
    """Extract ``scaler/`` of git ``ref`` into ``data_dir/src/<sha>`` so that a
    long run measures one fixed version even while the working tree changes."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", ref + "^{commit}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = os.path.join(data_dir, "src", sha)
    if not os.path.isdir(os.path.join(dest, "scaler")):
        os.makedirs(dest, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "scaler"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return {"ref": ref, "commit": sha, "path": dest}


def _side_env(a: argparse.Namespace) -> dict[str, str] | None:
    if not getattr(a, "pinned", None):
        return None
    return {**os.environ, "BENCH_SCALER_SRC": a.pinned["path"]}


def _side_cmd(side: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.sides", side, *args]


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_side(
    side: str, rows: int, data: str, work: str, logf: str, tag: str, a: argparse.Namespace, i: int
) -> dict[str, Any]:
    out_json = os.path.join(work, f"{side}.json")
    if os.path.exists(out_json):
        os.remove(out_json)
    args = ["--data", data, "--result", out_json]
    if side == "baseline" and a.baseline_train_eval:
        args.append("--train-eval")
    if side == "scaler":
        args += [
            "--out",
            os.path.join(work, "scaler-output"),
            "--workers",
            str(a.workers),
            "--threads",
            str(a.threads),
            "--memory-limit",
            a.memory_limit,
        ]
        if a.performance_report and i == 0:
            args += ["--performance-report", os.path.join(a.out, f"{tag}-performance-report.html")]
    log(f"[{rows:,} rows] {side} (run {i + 1}/{a.repeat}) ...")
    load = [round(x, 2) for x in os.getloadavg()]
    m = run_monitored(
        _side_cmd(side, *args),
        cwd=ROOT,
        env=_side_env(a),
        log_path=logf,
        kill_above=int(a.kill_above_gb * GiB),
        timeout=a.timeout,
    )
    r = _read_json(out_json)
    if m.killed:
        r["status"] = m.killed
    elif m.returncode != 0 and r.get("status") in (None, "running"):
        r["status"] = f"process exited with code {m.returncode} (see {os.path.relpath(logf, ROOT)})"
    r["process"] = m.to_dict()
    r["load_before"] = load
    log(
        f"[{rows:,} rows] {side}: {r.get('status')} in {m.wall_s:.1f} s, "
        f"peak RSS {m.peak_rss / GiB:.2f} GiB, PSS {m.peak_pss / GiB:.2f} GiB, "
        f"timings {r.get('timings')}"
    )
    return r


def run_size(rows: int, a: argparse.Namespace, tag: str) -> dict[str, Any]:
    data = os.path.join(a.data_dir, f"rows-{rows}")
    work = os.path.join(a.data_dir, "work", tag)
    os.makedirs(work, exist_ok=True)
    logf = os.path.join(a.out, f"{tag}.log")
    if os.path.exists(logf):
        os.remove(logf)
    res: dict[str, Any] = {"rows": rows, "data": os.path.relpath(data, ROOT)}

    log(f"[{rows:,} rows] dataset {data}")
    gen = os.path.join(work, "generate.json")
    g = run_monitored(
        _side_cmd("generate", "--data", data, "--rows", str(rows), "--result", gen),
        cwd=ROOT,
        env=_side_env(a),
        log_path=logf,
    )
    res["generate"] = {**_read_json(gen), "returncode": g.returncode}
    if g.returncode != 0:
        raise SystemExit(f"dataset generation failed (rc={g.returncode}); see {logf}")
    log(
        f"[{rows:,} rows] dataset ready ({'reused' if res['generate'].get('existed') else 'generated'})"
    )

    sides = []
    if not a.skip_baseline:
        sides.append("baseline")
    if not a.skip_scaler:
        sides.append("scaler")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for i in range(a.repeat):
        for side in sides:  # alternate the sides so that load changes hit both
            runs[side].append(run_side(side, rows, data, work, logf, tag, a, i))
    for side in sides:
        ok = [r for r in runs[side] if r.get("status") == "ok"]
        if ok:  # the run with the median total stands for the side
            ok.sort(key=lambda r: r["timings"]["total"])
            res[side] = ok[(len(ok) - 1) // 2]
        else:
            res[side] = runs[side][-1]
        if a.repeat > 1:
            res[side + "_all_runs"] = [
                {
                    k: r.get(k)
                    for k in (
                        "status",
                        "timings",
                        "train_split_s",
                        "auc",
                        "load_before",
                        "plain_read_before",
                        "plain_read_after",
                        *GROUPED_READS,
                        "plain_read_default_cluster",
                    )
                }
                | {
                    "peak_rss_bytes": r["process"]["peak_rss_bytes"],
                    "peak_pss_bytes": r["process"]["peak_pss_bytes"],
                }
                for r in runs[side]
            ]
    res["comparison"] = compare(res)
    return res


# ------------------------------------------------------------------ tables
def _f(x: Any, nd: int = 2) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _ratio(s: float | None, b: float | None) -> float | None:
    return None if s is None or b is None or b == 0 else s / b


def compare(res: dict[str, Any]) -> dict[str, Any]:
    """Stage mapping, ratios and the targets of issue 4."""
    b, s = res.get("baseline", {}), res.get("scaler", {})
    bt, st = b.get("timings", {}), s.get("timings", {})
    b_ok, s_ok = b.get("status") == "ok", s.get("status") == "ok"
    rows: list[dict[str, Any]] = []

    def row(stage: str, bv: float | None, sv: float | None, note: str = "") -> None:
        rows.append(
            {
                "stage": stage,
                "baseline_s": bv,
                "scaler_s": sv,
                "ratio": _ratio(sv, bv),
                "note": note,
            }
        )

    scan, transform = st.get("scan"), st.get("transform")
    s_pre = scan + transform if scan is not None and transform is not None else None
    b_rp = bt["read"] + bt["preprocess"] if "read" in bt and "preprocess" in bt else None
    row(
        "read",
        bt.get("read"),
        None,
        "scaler: fused into its scan stage (one pass reads and computes all statistics)",
    )
    row(
        "preprocess",
        bt.get("preprocess"),
        s_pre,
        "scaler: scan (read + split + moments) + transform (2nd read + scale/PCA, persisted); baseline: split + fit + transform, no read",
    )
    row("read + preprocess", b_rp, s_pre, "the comparable figure")
    row(
        "train",
        bt.get("train"),
        st.get("train"),
        "scaler: DaskQuantileDMatrix + xgboost.dask.train; baseline: QuantileDMatrix + xgboost.train",
    )
    row(
        "predict",
        bt.get("predict"),
        st.get("evaluate"),
        "scaler: evaluate stage (score holdout on the cluster + metrics)",
    )
    known = {"scan", "transform", "train", "evaluate", "write", "total"}
    extra = {k: v for k, v in st.items() if k not in known}
    w = st.get("write")
    if w is not None and extra:
        w += sum(extra.values())
    row(
        "write",
        None,
        w,
        "scaler only: scored holdout Parquet + model bundle"
        + "".join(f" + {k} stage ({v:.2f} s)" for k, v in extra.items()),
    )
    row(
        "total",
        bt.get("total"),
        st.get("total"),
        "scaler: RunResult.timings['total'] on a running cluster",
    )
    cs = s.get("cluster_start_s")
    row(
        "total + cluster start",
        bt.get("total"),
        (st["total"] + cs) if "total" in st and cs is not None else None,
        "scaler: plus starting the LocalCluster"
        + (
            f" ({cs:.2f} s; the workers' imports, {s['worker_imports_s']:.2f} s after it, are"
            " outside both sides' figures, as the baseline's are)"
            if cs is not None and s.get("worker_imports_s") is not None
            else ""
        ),
    )

    pr = [s.get(k, {}).get("seconds") for k in ("plain_read_before", "plain_read_after")]
    pr = [x for x in pr if x is not None]
    pr_grouped = [s.get(k, {}).get("seconds") for k in GROUPED_READS]
    pr_grouped = [x for x in pr_grouped if x is not None]
    dc = s.get("plain_read_default_cluster") or {}
    pr_default = dc.get("runs_s") or []
    pr_default_grouped = dc.get("grouped_runs_s") or []
    reads_all = pr + pr_grouped + pr_default + pr_default_grouped
    plain = min(reads_all) if reads_all else None  # the fastest read: the strictest reference
    bp, sp = b.get("process", {}), s.get("process", {})
    out: dict[str, Any] = {
        "stages": rows,
        "plain_read_s": plain,
        "plain_read_runs_s": pr,
        "plain_read_default_cluster_runs_s": pr_default,
        "plain_read_grouped_runs_s": pr_grouped,
        "plain_read_default_cluster_grouped_runs_s": pr_default_grouped,
        "read_grouping": s.get("read_grouping") or {},
        "auc": {
            "baseline": b.get("auc"),
            "scaler": s.get("auc"),
            "diff": (s["auc"] - b["auc"]) if "auc" in s and "auc" in b else None,
        },
        "peak_rss_bytes": {
            "baseline": bp.get("peak_rss_bytes"),
            "scaler": sp.get("peak_rss_bytes"),
        },
        "peak_pss_bytes": {
            "baseline": bp.get("peak_pss_bytes"),
            "scaler": sp.get("peak_pss_bytes"),
        },
    }
    targets: dict[str, Any] = {}
    if b_ok and s_ok:
        r_total = st["total"] / bt["total"]
        targets["total <= 0.75 x baseline"] = {"value": r_total, "holds": r_total <= 0.75}
        r_total_cs = (st["total"] + (cs or 0)) / bt["total"]
        targets["total incl. cluster start <= 0.75 x baseline"] = {
            "value": r_total_cs,
            "holds": r_total_cs <= 0.75,
        }
        d = abs(s["auc"] - b["auc"])
        targets["AUC difference (absolute) <= 0.003"] = {"value": d, "holds": d <= 0.003}
        for k in ("peak_rss_bytes", "peak_pss_bytes"):
            bv, sv = out[k]["baseline"], out[k]["scaler"]
            if bv and sv:
                targets[f"peak memory ({k[5:8].upper()} sum) <= baseline"] = {
                    "value": sv / bv,
                    "holds": sv <= bv,
                }
    split = b.get("train_split_s") or {}
    boost = None if split.get("evaluated") else split.get("boost")
    if b_ok and boost and plain:
        # scaler boosts the same rows, rounds and parameters on the same cores, and
        # reads the data at least once: its total cannot go much below this
        out["total_bound"] = {
            "baseline_boost_s": boost,
            "plain_read_s": plain,
            "ratio": (boost + plain) / bt["total"],
        }
    if s_ok and plain and s_pre is not None:
        r = s_pre / plain
        targets["preprocess <= 1.5 x plain parallel read"] = {"value": r, "holds": r <= 1.5}
    ba, sa = res.get("baseline_all_runs") or [], res.get("scaler_all_runs") or []
    pairs = [
        (y["timings"]["total"] / x["timings"]["total"])
        for x, y in zip(ba, sa, strict=False)  # pairs as far as both sides ran
        if x.get("status") == "ok" and y.get("status") == "ok"
    ]
    per_run = []
    for y in sa:
        t = y.get("timings") or {}
        reads = [
            (y.get(k) or {}).get("seconds")
            for k in ("plain_read_before", "plain_read_after", *GROUPED_READS)
        ]
        dc = y.get("plain_read_default_cluster") or {}
        reads += (dc.get("runs_s") or []) + (dc.get("grouped_runs_s") or [])
        reads = [x for x in reads if x]
        if y.get("status") == "ok" and reads and "scan" in t and "transform" in t:
            per_run.append((t["scan"] + t["transform"]) / min(reads))
    if per_run:
        per_run.sort()
        out["preprocess_over_read_per_run"] = per_run
        med = per_run[len(per_run) // 2]
        targets[
            "preprocess <= 1.5 x plain parallel read (median over runs, each vs its own reads)"
        ] = {"value": med, "holds": med <= 1.5}
    if pairs:
        out["paired_total_ratios"] = pairs
        med = (
            sorted(pairs)[len(pairs) // 2]
            if len(pairs) % 2
            else sum(sorted(pairs)[len(pairs) // 2 - 1 : len(pairs) // 2 + 1]) / 2
        )
        targets["total <= 0.75 x baseline (median of paired runs)"] = {
            "value": med,
            "holds": med <= 0.75,
        }
    out["targets"] = targets
    return out


def _layout(s: dict[str, Any], meta: dict[str, Any]) -> str:
    """The LocalCluster the scaler side ran on (as started, when known)."""
    c = s.get("cluster") or {}
    w, t = c.get("started_workers"), c.get("started_threads")
    if w is None:
        w, t = meta["workers"] or "default", meta["threads"] or "default"
    elif isinstance(t, list):
        t = "/".join(str(x) for x in t)
    how = "" if (meta["workers"] or meta["threads"]) else " (scaler's default)"
    return f"{w} workers x {t} thread(s){how}"


def markdown(res: dict[str, Any], meta: dict[str, Any]) -> str:
    c = res["comparison"]
    b, s = res.get("baseline", {}), res.get("scaler", {})
    L = [f"### {res['rows']:,} rows x 50 float32 features, 16 files", ""]
    L.append(
        f"baseline: {b.get('status', 'skipped')}; scaler: {s.get('status', 'skipped')}; "
        f"cluster {_layout(s, meta)}, memory_limit {meta['memory_limit']}"
    )
    L += [
        "",
        "| stage | baseline (s) | scaler (s) | scaler / baseline | note |",
        "|---|---:|---:|---:|---|",
    ]
    for r in c["stages"]:
        L.append(
            f"| {r['stage']} | {_f(r['baseline_s'])} | {_f(r['scaler_s'])} | {_f(r['ratio'])} | {r['note']} |"
        )
    pr = c["plain_read_s"]
    runs = ", ".join(_f(x) for x in c["plain_read_runs_s"])
    default = ", ".join(_f(x) for x in c.get("plain_read_default_cluster_runs_s") or [])
    grouped = ""
    if c.get("read_grouping"):
        g = ", ".join(_f(x) for x in c.get("plain_read_grouped_runs_s") or [])
        gd = ", ".join(_f(x) for x in c.get("plain_read_default_cluster_grouped_runs_s") or [])
        opts = []
        if c["read_grouping"].get("blocksize"):
            opts.append(
                "files grouped into partitions of up to"
                f" {c['read_grouping']['blocksize'] / 2**20:.0f} MiB with aggregate_files"
            )
        if c["read_grouping"].get("read", {}).get("pre_buffer") is False:
            opts.append("no pre-buffering")
        if not opts:
            opts = sorted(c["read_grouping"])
        grouped = f"; read as scaler reads ({'; '.join(opts)}), {g or '—'} and {gd or '—'} s"
    L.append(
        f"| plain parallel read (the reference) | | {_f(pr)} | | fastest of {runs} s on scaler's"
        f" cluster (before / after the run) and {default or '—'} s on a LocalCluster with Dask's"
        f" defaults, same shape{grouped} |"
    )
    a = c["auc"]
    L.append(
        f"| holdout AUC | {_f(a['baseline'], 5)} | {_f(a['scaler'], 5)} | diff {_f(a['diff'], 5)} | same split (hash of id), same holdout rows |"
    )
    for k, name in (
        ("peak_rss_bytes", "peak RSS, all processes (GiB)"),
        ("peak_pss_bytes", "peak PSS, all processes (GiB)"),
    ):
        bv, sv = c[k]["baseline"], c[k]["scaler"]
        L.append(
            f"| {name} | {_f(bv / GiB if bv else None)} | {_f(sv / GiB if sv else None)} | "
            f"{_f(_ratio(sv, bv))} | sampled every 0.1 s (PSS every 0.5 s) |"
        )
    if c["targets"]:
        L += ["", "| target (issue 4) | measured | holds |", "|---|---:|:---:|"]
        for k, v in c["targets"].items():
            L.append(f"| {k} | {v['value']:.3f} | {'yes' if v['holds'] else '**no**'} |")
    tb = c.get("total_bound")
    if tb:
        L += [
            "",
            f"Bound on the total: the baseline's boosting alone ({tb['baseline_boost_s']:.2f} s; "
            "scaler boosts the same rows with the same parameters on the same cores) plus the "
            f"plain read ({tb['plain_read_s']:.2f} s) is {tb['ratio']:.3f} x the baseline's "
            "total: scaler's total cannot be much below that.",
        ]
    allr = [(k, res.get(f"{k}_all_runs")) for k in ("baseline", "scaler")]
    if any(v for _, v in allr):
        L += [
            "",
            "Each side ran "
            + str(max(len(v or []) for _, v in allr))
            + " times, alternating; the table shows the run "
            "with the median total. All totals (s), with the 1-min load average before each run: "
            + "; ".join(
                f"{k}: "
                + ", ".join(
                    f"{_f((r.get('timings') or {}).get('total'))} (load {r.get('load_before', ['?'])[0]})"
                    for r in v
                )
                for k, v in allr
                if v
            ),
        ]
    w = s.get("workers")
    if w:
        L += [
            "",
            "Workers after the run: "
            + "; ".join(
                f"limit {_gb(v.get('memory_limit'))}, spilled {_gb(v.get('disk_write_bytes'))} in "
                f"{v.get('disk_write_count', 0)} writes, read back {_gb(v.get('disk_read_bytes'))}"
                if "disk_write_bytes" in v
                else f"limit {_gb(v.get('memory_limit'))}, {v.get('spill')}"
                for v in w.values()
            ),
        ]
    return "\n".join(L) + "\n"


def _gb(x: Any) -> str:
    return "none" if not x else f"{x / GiB:.2f} GiB"


def scale_table(results: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    base = results[0]
    s0 = base.get("scaler", {}).get("timings", {}).get("total")
    spm0 = s0 / (base["rows"] / 1e6) if s0 else None
    L = [
        "| rows | scaler total (s) | scaler s / M rows | vs smallest | scaler scan / transform / train / evaluate / write (s) "
        "| scaler peak RSS (GiB) | scaler peak PSS (GiB) "
        "| largest worker RSS (GiB) | worker memory_limit | spilled to disk | baseline total (s) | baseline peak RSS (GiB) | baseline status |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    pts = []
    summary = []
    for r in results:
        s, b = r.get("scaler", {}), r.get("baseline", {})
        st = s.get("timings", {}).get("total")
        spm = st / (r["rows"] / 1e6) if st else None
        sp = s.get("process", {})
        workers_rss = [
            v for k, v in sp.get("per_process_peak_rss_bytes", {}).items() if k.startswith("worker")
        ]
        spilled = sum(v.get("disk_write_bytes", 0) for v in s.get("workers", {}).values())
        lim = s.get("cluster", {}).get("worker_memory_limits") or []
        bp = b.get("process", {})
        if b.get("status") == "ok" and bp.get("peak_rss_bytes"):
            pts.append((r["rows"], bp["peak_rss_bytes"]))
        row = {
            "rows": r["rows"],
            "scaler_total_s": st,
            "scaler_s_per_mrow": spm,
            "vs_smallest": _ratio(spm, spm0),
            "scaler_peak_rss": sp.get("peak_rss_bytes"),
            "scaler_peak_pss": sp.get("peak_pss_bytes"),
            "largest_worker_rss": max(workers_rss) if workers_rss else None,
            "worker_memory_limit": lim[0] if lim else None,
            "spilled_bytes": spilled,
            "scaler_status": s.get("status"),
            "baseline_total_s": b.get("timings", {}).get("total"),
            "baseline_peak_rss": bp.get("peak_rss_bytes"),
            "baseline_status": b.get("status", "skipped"),
        }
        row["scaler_timings"] = s.get("timings", {})
        stages = " / ".join(
            _f(row["scaler_timings"].get(k), 1)
            for k in ("scan", "transform", "train", "evaluate", "write")
        )
        summary.append(row)
        L.append(
            f"| {r['rows']:,} | {_f(st)} | {_f(spm)} | {_f(row['vs_smallest'])} | {stages} | {_f((row['scaler_peak_rss'] or 0) / GiB)} "
            f"| {_f((row['scaler_peak_pss'] or 0) / GiB)} | {_f(row['largest_worker_rss'] / GiB if row['largest_worker_rss'] else None)} "
            f"| {_gb(row['worker_memory_limit'])} | {_gb(spilled)} | {_f(row['baseline_total_s'])} "
            f"| {_f(bp['peak_rss_bytes'] / GiB if bp.get('peak_rss_bytes') else None)} | {row['baseline_status']} |"
        )
    extra: dict[str, Any] = {"rows": summary}
    if len(pts) >= 2:
        # least-squares line of baseline peak RSS against rows
        n = len(pts)
        mx = sum(p[0] for p in pts) / n
        my = sum(p[1] for p in pts) / n
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        icpt = my - slope * mx
        fits = (24 * GiB - icpt) / slope if slope > 0 else None
        extra["baseline_rss_per_mrow_gib"] = slope * 1e6 / GiB
        extra["baseline_rows_at_24gib"] = fits
        L += [
            "",
            f"Baseline peak RSS grows by {slope * 1e6 / GiB:.2f} GiB per million rows "
            f"(least squares over {n} sizes); on that line it reaches 24 GiB at about "
            f"{fits / 1e6:.0f} M rows."
            if fits
            else "",
        ]
    return "\n".join(L) + "\n", extra


# ------------------------------------------------------------------ main
def render(paths: list[str]) -> None:
    """Rebuild the markdown of saved result JSON files (after a change of the tables)."""
    results = []
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        res["comparison"] = compare(res)
        md = markdown(res, res["meta"])
        with open(p[: -len(".json")] + ".md", "w") as f:
            f.write(md + _meta_md(res["meta"]))
        results.append(res)
        print(md)
    if len(results) > 1:
        print(scale_table(results, results[0]["meta"])[0])


def main(argv: list[str] | None = None) -> int:
    if (argv if argv is not None else sys.argv[1:])[:1] == ["--render"]:
        render((argv if argv is not None else sys.argv[1:])[1:])
        return 0
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--rows", required=True, help="rows, or a comma-separated list for the scale table"
    )
    ap.add_argument(
        "--out", default=os.path.join(HERE, "results"), help="folder for the JSON/markdown results"
    )
    ap.add_argument(
        "--data-dir",
        default=os.path.join(HERE, "data"),
        help="folder for the datasets (git-ignored)",
    )
    ap.add_argument(
        "--workers", type=int, default=0, help="LocalCluster workers (0: scaler's default)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="threads per worker (0: scaler's default)"
    )
    ap.add_argument("--memory-limit", default="auto", help="per-worker memory_limit, e.g. 3GB")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each side N times, alternating; the run with the median total is reported",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-scaler", action="store_true")
    ap.add_argument(
        "--baseline-train-eval",
        action="store_true",
        help="baseline also computes auc+logloss on the train matrix every round, as scaler does",
    )
    ap.add_argument(
        "--performance-report",
        action="store_true",
        help="write a Dask performance_report of the scaler run",
    )
    ap.add_argument(
        "--kill-above-gb",
        type=float,
        default=20.0,
        help="kill a side whose process tree passes this RSS",
    )
    ap.add_argument(
        "--timeout", type=float, default=None, help="kill a side after this many seconds"
    )
    ap.add_argument(
        "--scaler-ref",
        default="",
        help="benchmark scaler/ as of this git commit (extracted under --data-dir/src) instead of the working tree",
    )
    a = ap.parse_args(argv)
    a.pinned = pin_scaler(a.scaler_ref, a.data_dir) if a.scaler_ref else None
    sizes = [int(float(x)) for x in a.rows.split(",") if x.strip()]
    os.makedirs(a.out, exist_ok=True)
    # the memory settings in the environment are part of how to reproduce it
    env = env_prefix()
    command = f"{env}python -m benchmarks.run " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])
    )
    suffix = ""
    if a.workers or a.threads:  # not scaler's default layout: name the one it resolves to
        from dask.system import CPU_COUNT

        from scaler.cluster import local_layout

        suffix += "-{}x{}".format(*local_layout(a.workers, a.threads, CPU_COUNT))
    if a.memory_limit != "auto":
        suffix += f"-mem{a.memory_limit}"
    meta = {
        "command": command,
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "workers": a.workers,
        "threads": a.threads,
        "memory_limit": a.memory_limit,
        "scaler_under_test": (
            f"git {a.pinned['ref']} = {a.pinned['commit'][:10]} (extracted snapshot)"
            if a.pinned
            else "working tree"
        ),
        "model": {
            "tree_method": "hist",
            "max_depth": 6,
            "eta": 0.3,
            "rounds": 100,
            "early_stopping": "none (both sides)",
            "objective": "binary:logistic",
            "pca": 20,
            "holdout": 0.2,
            "split": "scaler.pipeline.assign_split, key id, seed 0",
        },
    }
    m = meta["machine"]
    log(
        f"machine: {m['cores']} cores, {m['ram_gib']} GiB, {m['cpu_model']}, load {m['load_average_at_start']}"
    )
    if len(sizes) > 1:  # a scale run keeps its files together, apart from single-size results
        a.out = os.path.join(a.out, f"scale{suffix or '-auto'}")
        os.makedirs(a.out, exist_ok=True)
    results = []
    for rows in sizes:
        tag = f"rows-{rows}{suffix}"
        res = run_size(rows, a, tag)
        res["meta"] = meta
        with open(os.path.join(a.out, f"{tag}.json"), "w") as f:
            json.dump(res, f, indent=2, default=str)
        md = markdown(res, meta)
        with open(os.path.join(a.out, f"{tag}.md"), "w") as f:
            f.write(md + _meta_md(meta))
        print(md, flush=True)
        results.append(res)
    if len(sizes) > 1:
        md, extra = scale_table(results, meta)
        with open(os.path.join(a.out, "scale.json"), "w") as f:
            json.dump(
                {"meta": meta, "scale": extra, "runs": [r["comparison"] for r in results]},
                f,
                indent=2,
                default=str,
            )
        with open(os.path.join(a.out, "scale.md"), "w") as f:
            f.write(md + "\n" + _meta_md(meta))
        print(md, flush=True)
    return 0


def _meta_md(meta: dict[str, Any]) -> str:
    m, v = meta["machine"], meta["versions"]
    return (
        f"\nMachine: {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, {m['os']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']} (shared machine); transparent huge"
        f" pages: {m.get('transparent_hugepages', 'unknown')}; memory settings in the environment"
        f" of both sides: {m.get('environment') or 'none'}.  \n"
        f"scaler under test: {meta['scaler_under_test']}.  \n"
        "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + f".  \n"
        f"Command: `{meta['command']}` (started {meta['started']}).\n"
    )


if __name__ == "__main__":
    sys.exit(main())
