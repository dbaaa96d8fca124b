"""Every script in examples/ runs as `python examples/NAME.py`, as a user
would run it, against real services on 127.0.0.1."""

import os
import subprocess
import sys

import pytest
from dask.system import CPU_COUNT

from scaler.cluster import local_layout

from .conftest import ROOT
from .processes import DaskProcesses

EXAMPLES = ROOT / "examples"


def run_example(name, *args, cwd, env=None, timeout=240):
    e = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    e.update(env or {})
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
    )
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.slow
def test_quickstart_on_its_own_local_cluster(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    # the default LocalCluster: fitted to this machine's cores
    w, t = local_layout(0, 0, CPU_COUNT)
    assert f"Dask cluster: {w} worker{'s' if w > 1 else ''} x {t} thread" in out
    assert "[train] round" in out and "auc=" in out
    assert (tmp_path / "scaler-quickstart/output/report/report.html").exists()
    assert "probability" in out  # the reloaded bundle scored new rows


@pytest.fixture
def moto_endpoint():
    """moto's S3 server on 127.0.0.1 and a free port, with a bucket."""
    from moto.server import ThreadedMotoServer

    from .processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.slow
def test_s3_example_against_a_local_endpoint(tmp_path, moto_endpoint, scheduler_address):
    import s3fs

    key, secret = "example-key", "example-secret"
    fs = s3fs.S3FileSystem(
        key=key,
        secret=secret,
        client_kwargs={"endpoint_url": moto_endpoint},
        skip_instance_cache=True,
    )
    fs.mkdir("examples-bucket")
    out = run_example(
        "s3_data.py",
        cwd=tmp_path,
        env={
            "SCALER_S3_ENDPOINT": moto_endpoint,
            "SCALER_S3_BUCKET": "examples-bucket",
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "DASK_SCHEDULER_ADDRESS": scheduler_address,
        },
    )
    assert "Loaded back from S3: binary model with 4 features" in out
    assert secret not in out
    fs.invalidate_cache()
    assert fs.exists("examples-bucket/examples/data")
    assert fs.exists("examples-bucket/examples/output/model/manifest.json")
    assert fs.exists("examples-bucket/examples/output/report/report.html")


@pytest.mark.slow
def test_remote_scheduler_example_against_dask_processes(tmp_path):
    with DaskProcesses(n_workers=2) as procs:
        out = run_example("remote_scheduler.py", procs.address, str(tmp_path / "o"), cwd=tmp_path)
    assert f"Connected to {procs.address}: 2 worker(s)" in out
    assert "auc=" in out


def test_batch_scoring_example(tmp_path, scheduler_address):
    out = run_example(
        "batch_scoring.py", cwd=tmp_path, env={"DASK_SCHEDULER_ADDRESS": scheduler_address}
    )
    assert "Scored 8,000 rows" in out
    assert (tmp_path / "scaler-scoring/scored/_SUCCESS").exists()


def test_hyperparameter_search_example(tmp_path, scheduler_address):
    out = run_example(
        "hyperparameter_search.py",
        cwd=tmp_path,
        env={"DASK_SCHEDULER_ADDRESS": scheduler_address},
    )
    lines = [line for line in out.splitlines() if line.startswith("max_depth=")]
    assert len(lines) == 4 and all("valid logloss=" in line for line in lines)
    assert "Holdout:" in out
    assert (tmp_path / "scaler-search/best-model/manifest.json").exists()


def test_example_config_still_parses():
    import scaler

    cfg = scaler.RunConfig.from_toml(EXAMPLES / "config.toml")
    assert cfg.preprocess.pca == 20 and cfg.output.report is True
