"""A/B of two versions of scaler on the same data, alternating, a fresh
cluster per run (no baseline):

    python -m benchmarks.ab --rows 20000000 --refs 393c6c5 779c4a3 --pairs 2
    python -m benchmarks.ab --rows 20000000 --refs A B --stage prepare --before read
    python -m benchmarks.ab --rows 20000000 --refs A B --stage prepare --before free:17 --wait 20

Each run is its own process with ``scaler/`` of one git ref (extracted as
``benchmarks.run --scaler-ref`` does) on scaler's default LocalCluster:
``--stage run`` times a whole ``scaler.run``, ``--stage prepare`` only its
scan and transform (``scaler.prepare``). ``--before`` says what happens
first: ``nothing``; ``read``, a plain read of the data on the same cluster
(as the benchmark does before its scaler run); ``free:GB``, a separate
process that touches GB GiB and exits (then ``--wait`` seconds, then a
plain read), which puts this VM's memory in the state the scale benchmark
finds after the baseline's largest run. Prints one JSON line per run and a
markdown table; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(a: argparse.Namespace) -> None:
    from benchmarks.sides import _pin_scaler, plain_read, run_config

    _pin_scaler()
    import scaler

    data = os.path.join(a.data_dir, f"rows-{a.rows}")
    out = os.path.join(a.data_dir, "work", f"ab-{a.rows}")
    cfg = run_config(data, out, workers=0, threads=0, memory_limit="auto")
    cfg["output"]["overwrite"] = True
    lines: list[str] = []
    with scaler.connect(config=scaler.load_config(cfg).cluster) as client:
        client.run(lambda: __import__("xgboost.dask"))  # imports outside the timings
        warm = plain_read(client, data)["seconds"] if a.before != "nothing" else None
        if a.stage == "run":
            t = scaler.run(cfg, client=client, progress=False, echo=lines.append).timings
        else:
            prep = scaler.prepare(cfg, client=client, progress=False, echo=lines.append)
            t = dict(prep.timings)
            prep.release()
    held = next((x for x in lines if x.startswith("[scan]") and ":" in x and "..." not in x), "")
    print(
        json.dumps(
            {
                "scaler": scaler.__file__,
                "read_before_s": warm,
                "scan_transform_s": round(t["scan"] + t["transform"], 3),
                "timings": t,
                "scan_line": held,
            }
        ),
        flush=True,
    )


def _free(gb: float) -> None:
    code = f"import numpy as np; a = np.ones(int({gb} * 2**30) // 8); del a"
    subprocess.run([sys.executable, "-c", code], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--refs", nargs=2, metavar=("A", "B"))
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--stage", choices=("run", "prepare"), default="run")
    ap.add_argument("--before", default="nothing", help="nothing, read or free:GB")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds after free:GB")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "benchmarks", "data"))
    ap.add_argument("--out", help="write the runs here as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.before != "nothing" and a.before != "read" and not a.before.startswith("free:"):
        ap.error("--before must be nothing, read or free:GB")
    if a.child:
        child(a)
        return 0
    if not a.refs:
        ap.error("--refs A B is required")
    if not os.path.isdir(os.path.join(a.data_dir, f"rows-{a.rows}")):
        ap.error(f"no data at {a.data_dir}/rows-{a.rows}: run python -m benchmarks.run first")
    from benchmarks.run import pin_scaler

    pinned = {ref: pin_scaler(ref, a.data_dir) for ref in a.refs}
    runs: list[dict[str, Any]] = []
    for _ in range(a.pairs):
        for ref in a.refs:
            if a.before.startswith("free:"):
                _free(float(a.before.split(":", 1)[1]))
                time.sleep(a.wait)
            cmd = [sys.executable, "-m", "benchmarks.ab", "--child", "--rows", str(a.rows)]
            cmd += ["--stage", a.stage, "--before", a.before, "--data-dir", a.data_dir]
            env = {**os.environ, "BENCH_SCALER_SRC": pinned[ref]["path"]}
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            last = [x for x in p.stdout.splitlines() if x.startswith("{")]
            if p.returncode != 0 or not last:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            r = {"ref": ref, "commit": pinned[ref]["commit"], **json.loads(last[-1])}
            runs.append(r)
            print(json.dumps(r), flush=True)
    print()
    print(
        f"| {a.refs[0]} | {a.refs[1]} |  (scan + transform, s; --stage {a.stage}, --before {a.before})"
    )
    print("|---|---|")
    for ref_runs in zip(runs[0::2], runs[1::2], strict=True):  # A, B of each pair
        print("| " + " | ".join(f"{r['scan_transform_s']:.2f}" for r in ref_runs) + " |")
    if a.out:
        meta = {"command": " ".join(["python -m benchmarks.ab", *(argv or sys.argv[1:])])}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
