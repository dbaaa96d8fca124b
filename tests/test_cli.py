"""The command line through a real subprocess: exit codes, messages, outputs."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from . import toml_util
from .conftest import base_config

SCALER = [sys.executable, "-m", "scaler.cli"]


def scaler_cli(*args, env=None, timeout=240):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([*SCALER, *args], capture_output=True, text=True, timeout=timeout, env=e)


def write_config(tmp_path, cfg, name="run.toml"):
    p = tmp_path / name
    p.write_text(toml_util.dumps(cfg))
    return p


@pytest.mark.parametrize("cmd", [[], ["run"], ["predict"], ["demo"]])
def test_help(cmd):
    r = scaler_cli(*cmd, "--help")
    assert r.returncode == 0
    assert "usage: scaler" in r.stdout


def test_no_command_prints_help_and_exits_2():
    r = scaler_cli()
    assert r.returncode == 2 and "usage: scaler" in r.stdout


def test_run_and_predict(tmp_path, binary_data, scheduler_address):
    out = tmp_path / "out"
    cfg = write_config(tmp_path, base_config(binary_data, str(out)))
    r = scaler_cli("run", str(cfg), "--scheduler", scheduler_address)
    assert r.returncode == 0, r.stderr
    assert "Holdout metrics: n=" in r.stdout and "auc=" in r.stdout
    assert "Stage timings" in r.stdout and str(out / "model") in r.stdout
    assert (out / "model" / "manifest.json").exists()

    preds = tmp_path / "scored"
    r = scaler_cli(
        "predict", str(out / "model"), binary_data, str(preds), "--scheduler", scheduler_address
    )
    assert r.returncode == 0, r.stderr
    assert "Scored 6,000 rows" in r.stdout
    df = pd.read_parquet(preds)
    assert len(df) == 6000 and list(df.columns) == ["id", "prediction", "probability"]
    assert (preds / "_SUCCESS").exists()


def test_quiet_prints_only_the_summary(tmp_path, clean_data, scheduler_address):
    cfg = write_config(tmp_path, base_config(clean_data, str(tmp_path / "o"), model={"rounds": 3}))
    r = scaler_cli("run", str(cfg), "--scheduler", scheduler_address, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "[scan]" not in r.stdout and "Holdout metrics" in r.stdout


BAD = {
    "nonexistent URL": (lambda d: {"data": {"url": d + "-nope"}}, ["Nothing found at", "-nope"]),
    "missing target": (
        lambda d: {"data": {"target": "churned"}},
        ["Target column ['churned'] not found", "Available columns"],
    ),
    "missing feature": (
        lambda d: {"data": {"features": ["f00", "f99"]}},
        ["['f99'] not found", "f01"],
    ),
    "empty after filters": (
        lambda d: {"data": {"filters": [["f00", ">", 1e9]]}},
        ["No rows", "filters"],
    ),
    "pca too large": (lambda d: {"preprocess": {"pca": 50}}, ["pca = 50", "at most 12"]),
    "regression on strings": (
        lambda d: {
            "data": {"target": "region", "exclude": ["label"]},
            "model": {"objective": "reg:squarederror"},
        },
        ["'region'", "numeric target"],
    ),
    "unknown key": (
        lambda d: {"model": {"round": 10}},
        ["unknown key 'round'", "Did you mean 'rounds'"],
    ),
    "zero rounds": (lambda d: {"model": {"rounds": 0}}, ["'model.rounds'", "Got 0"]),
    "negative rounds": (lambda d: {"model": {"rounds": -5}}, ["'model.rounds'", "Got -5"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_clear_message_and_writes_nothing(
    case, tmp_path, binary_data, scheduler_address
):
    change, expected = BAD[case]
    cfg = base_config(binary_data, str(tmp_path / "out"))
    for section, values in change(binary_data).items():
        cfg.setdefault(section, {}).update(values)
    path = write_config(tmp_path, cfg)
    r = scaler_cli("run", str(path), "--scheduler", scheduler_address)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("error: ")
    for text in expected:
        assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_predict_with_missing_feature_exits_2(tmp_path, binary_data, scheduler_address, client):
    import scaler

    result = scaler.run(
        base_config(binary_data, str(tmp_path / "o"), model={"rounds": 3}), client=client
    )
    raw = pd.read_parquet(binary_data).drop(columns=["f03"])
    (tmp_path / "new").mkdir()
    raw.to_parquet(tmp_path / "new" / "x.parquet")
    r = scaler_cli(
        "predict",
        result.bundle_url,
        str(tmp_path / "new"),
        str(tmp_path / "p"),
        "--scheduler",
        scheduler_address,
    )
    assert r.returncode == 2
    assert "['f03']" in r.stderr
    assert not (tmp_path / "p").exists()


def test_predict_on_a_missing_bundle_exits_2(tmp_path, binary_data, scheduler_address):
    r = scaler_cli(
        "predict",
        str(tmp_path / "nothing"),
        binary_data,
        str(tmp_path / "p"),
        "--scheduler",
        scheduler_address,
    )
    assert r.returncode == 2
    assert "No committed scaler bundle" in r.stderr


def test_importing_scaler_leaves_the_heavy_libraries_for_later():
    # `scaler --help`, `import scaler` and every Dask worker a script starts
    # (spawned workers re-import the main module's imports) skip xgboost and
    # the scikit-learn it pulls in (about 0.7 s); training imports them
    code = (
        "import sys, scaler, scaler.cli, scaler.progress, scaler.train; "
        "print(sorted(m for m in ('xgboost', 'sklearn', 'dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # the callbacks are still where they were, importing xgboost on use
    import xgboost

    from scaler.progress import RoundReporter
    from scaler.train import Checkpointer, EarlyStop

    assert all(
        issubclass(c, xgboost.callback.TrainingCallback)
        for c in (RoundReporter, EarlyStop, Checkpointer)
    )
