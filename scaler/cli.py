"""The ``scaler`` command line: parses arguments, builds a config, calls the
pipeline. Exit codes: 0 success, 2 bad config or bad input, 1 anything else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from scaler.config import ClusterConfig, RunConfig, redact
from scaler.errors import InputError

EXIT_OK, EXIT_ERROR, EXIT_INPUT = 0, 1, 2

DEMO_ROWS = 2_000_000


def _echo_factory(quiet: bool) -> Any:
    def echo(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    return echo


def _progress(args: argparse.Namespace) -> str:
    """Progress display: none with --quiet, a bar on a terminal, plain lines
    (no control characters) when output goes to a pipe or a CI log."""
    from scaler.progress import resolve_mode

    return "off" if args.quiet else resolve_mode("auto", fallback="plain")


def _storage_options(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InputError(f"--storage-options must be a JSON object: {e}.") from e
    if not isinstance(value, dict):
        raise InputError("--storage-options must be a JSON object, e.g. '{\"anon\": true}'.")
    return value


def demo_config(out: str, *, rows: int) -> dict[str, Any]:
    """The config of ``scaler demo`` for data under ``out``."""
    return {
        "data": {"url": f"{out.rstrip('/')}/data", "target": "label", "key": "id"},
        "split": {"holdout": 0.2, "seed": 0},
        "preprocess": {"scale": True, "pca": 20},
        "model": {
            "kind": "xgboost",
            "objective": "binary:logistic",
            "rounds": 100,
            "early_stopping": 10,
            "params": {"max_depth": 6, "learning_rate": 0.3},
        },
        "cluster": {"n_workers": 0, "threads_per_worker": 0},
        "output": {"url": f"{out.rstrip('/')}/output"},
    }


def cmd_run(args: argparse.Namespace) -> int:
    from scaler.pipeline import run

    cfg = RunConfig.from_toml(args.config)
    echo = _echo_factory(args.quiet)
    result = run(
        cfg, scheduler=args.scheduler, echo=echo, progress=_progress(args), resume=args.resume
    )
    print(result.summary(), flush=True)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from scaler.pipeline import predict

    so = _storage_options(args.storage_options)
    res = predict(
        args.bundle,
        args.data,
        args.out,
        scheduler=args.scheduler,
        storage_options=so,
        out_storage_options=so,
        bundle_storage_options=so,
        cluster=ClusterConfig(n_workers=args.workers),
    )
    print(f"Scored {res.rows:,} rows in {res.seconds:.2f} s -> {redact(res.url)}", flush=True)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from scaler.cluster import close, connect, describe
    from scaler.datasets import make_dataset
    from scaler.pipeline import run

    echo = _echo_factory(args.quiet)
    out = args.out
    so = _storage_options(args.storage_options)
    cfg_dict = demo_config(out, rows=args.rows)
    cfg_dict["cluster"]["n_workers"] = args.workers
    cfg_dict["cluster"]["dashboard"] = args.dashboard
    if so:
        cfg_dict["data"]["storage_options"] = so
        cfg_dict["output"]["storage_options"] = so
    cfg = RunConfig.from_dict(cfg_dict, source="demo")
    client = connect(args.scheduler, config=cfg.cluster)
    try:
        if args.dashboard:
            echo(f"Dask dashboard: {client.dashboard_link}")
        echo(f"Dask cluster: {describe(client)} at {client.scheduler.address}")
        data_url = cfg.data.url
        echo(f"[data] synthetic dataset of {args.rows:,} rows x 50 features at {redact(data_url)}")
        import time

        t0 = time.perf_counter()
        params = dict(rows=args.rows, files=16 if args.rows >= 16 * 1000 else 2)
        from scaler.datasets import dataset_exists

        full = dict(
            rows=params["rows"],
            n_features=50,
            files=params["files"],
            rank=8,
            task="binary",
            categorical=False,
            missing=0.0,
            seed=0,
        )
        if dataset_exists(data_url, full, so):
            echo("[data] already there, reusing it")
        else:
            with client.as_current():
                make_dataset(data_url, storage_options=so, **params)
            echo(f"[data] written in {time.perf_counter() - t0:.2f} s")
        result = run(cfg, client=client, echo=echo, progress=_progress(args))
    finally:
        close(client)
    print(result.summary(), flush=True)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from scaler.report import write_report

    rep = write_report(
        args.bundle,
        out_url=args.out,
        predictions_url=args.predictions,
        storage_options=_storage_options(args.storage_options),
    )
    print(f"Report: {redact(rep.html_url)} ({len(rep.images)} plots)", flush=True)
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from scaler.inspect import inspect_dataset

    info = inspect_dataset(args.url, _storage_options(args.storage_options))
    print(json.dumps(info.to_dict(), indent=2) if args.json else info.render(), flush=True)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from scaler import __version__

    parser = argparse.ArgumentParser(
        prog="scaler",
        description="Scalable data science on Dask: Parquet -> scaling + PCA -> "
        "distributed XGBoost -> evaluated, saved model and scored data.",
    )
    parser.add_argument("--version", action="version", version=f"scaler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            default=None,
            help="address of an existing Dask scheduler (tcp://HOST:PORT or tls://...); "
            "default: [cluster] address, then $DASK_SCHEDULER_ADDRESS, else a LocalCluster",
        )
        g = p.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
        g.add_argument("-v", "--verbose", action="store_true", help="add logs and tracebacks")

    p = sub.add_parser(
        "run",
        help="run the pipeline of a TOML config",
        description=(
            "Read the data, fit scaling + PCA, train XGBoost on the Dask cluster, evaluate on the "
            "holdout, and write the model bundle and the scored holdout under [output] url."
        ),
    )
    p.add_argument("config", help="path of the TOML config")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue training from the last checkpoint under [output] url "
        "(after a crash of this command, the scheduler or the machine)",
    )
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "predict",
        help="score Parquet data with a saved bundle",
        description=(
            "Apply a saved bundle (encodings, scaling, PCA, booster) to the Parquet data at "
            "DATA_URL on the cluster and write partitioned Parquet predictions to OUT_URL."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE_URL")
    p.add_argument("data", metavar="DATA_URL")
    p.add_argument("out", metavar="OUT_URL")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec options for all three URLs")
    p.add_argument(
        "--workers", type=int, default=0, help="LocalCluster workers (default 0: fit the machine)"
    )
    common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "demo",
        help="generate a synthetic dataset and run the pipeline on it",
        description="Generate (once) a synthetic classification dataset under "
        "OUT/data and run the whole pipeline on a local cluster, writing to OUT/output.",
    )
    p.add_argument("--rows", type=int, default=DEMO_ROWS, help=f"rows (default {DEMO_ROWS:,})")
    p.add_argument("--out", default="scaler-demo", help="folder or URL (default ./scaler-demo)")
    p.add_argument(
        "--workers", type=int, default=0, help="LocalCluster workers (default 0: fit the machine)"
    )
    p.add_argument("--dashboard", action="store_true", help="start the dashboard on 127.0.0.1")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec options for --out")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "report",
        help="(re)write report.html and the plots of a saved bundle",
        description="Write report.html (self-contained, images embedded) and one SVG per plot "
        "for the bundle at BUNDLE_URL, by default into the 'report' folder next to it, using "
        "the scored holdout in the 'holdout_predictions' folder next to it.",
    )
    p.add_argument("bundle", metavar="BUNDLE_URL")
    p.add_argument("--out", metavar="URL", help="report folder (default: BUNDLE_URL/../report)")
    p.add_argument(
        "--predictions",
        metavar="URL",
        help="scored holdout Parquet (default: BUNDLE_URL/../holdout_predictions)",
    )
    p.add_argument("--storage-options", metavar="JSON", help="fsspec options for the URLs")
    p.add_argument("-v", "--verbose", action="store_true", help="add logs and tracebacks")
    p.set_defaults(func=cmd_report, quiet=False)

    p = sub.add_parser(
        "inspect",
        help="describe a Parquet dataset from its footers (no data read)",
        description="List the files, hive partition keys and values, row counts, schema and "
        "sizes of the Parquet data at URL, reading only the files' footers, and suggest a "
        "better file size when partitions are far from the 100 MB-1 GB Dask works best with.",
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec options for URL")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("-v", "--verbose", action="store_true", help="add logs and tracebacks")
    p.set_defaults(func=cmd_inspect, quiet=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    if not args.verbose:
        # Read by distributed at import, here and in worker processes.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for name in ("distributed", "xgboost"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        if args.verbose:
            raise
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last resort
        if args.verbose:
            raise
        print(f"error: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        print("(run again with --verbose for the full traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
