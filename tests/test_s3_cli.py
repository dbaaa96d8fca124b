"""The command line against the S3 endpoint: `scaler demo --out s3://...`,
and no planted secret in any output (stdout, stderr, manifest, files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests import toml_util
from tests.conftest import base_config

SCALER = [sys.executable, "-m", "scaler.cli"]


def _cli(*args, timeout=300):
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "error"}
    return subprocess.run(
        [*SCALER, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_demo_on_s3(s3, scheduler_address):
    out = f"s3://scaler-out/demo-{uuid.uuid4().hex[:8]}"
    so = json.dumps(s3.storage_options)
    r = _cli(
        "demo",
        "--rows",
        "4000",
        "--out",
        out,
        "--storage-options",
        so,
        "--scheduler",
        scheduler_address,
        "-q",
    )
    assert r.returncode == 0, r.stderr
    assert "auc=" in r.stdout
    files = s3.fs().find(out.removeprefix("s3://"))
    names = {f.split("/", 2)[2] for f in files}
    assert "data/_scaler_dataset.json" in names
    assert "output/model/manifest.json" in names
    assert "output/holdout_predictions/_SUCCESS" in names
    assert any(n.startswith("data/part-") for n in names)


@pytest.mark.slow
def test_planted_secret_appears_nowhere(s3, scheduler_address, tmp_path):
    key, secret = "AKIAPLANTEDKEY" + uuid.uuid4().hex[:6], "pl4nted-s3cret-" + uuid.uuid4().hex
    so = {"client_kwargs": {"endpoint_url": s3.endpoint_url}, "key": key, "secret": secret}
    fs = s3.fs()
    prefix = f"secret-{uuid.uuid4().hex[:8]}"
    import scaler

    scaler.make_dataset(
        f"s3://scaler-data/{prefix}", rows=2000, n_features=5, files=2, storage_options=so
    )
    cfg = base_config(
        f"s3://scaler-data/{prefix}",
        f"s3://scaler-out/{prefix}",
        preprocess={"pca": 2, "feature_cache": True},
        model={"rounds": 3, "early_stopping": 0, "valid_fraction": 0.0},
    )
    cfg["data"]["storage_options"] = so
    cfg["output"]["storage_options"] = so
    path = tmp_path / "run.toml"
    path.write_text(toml_util.dumps(cfg))
    texts = []
    ok = _cli("run", str(path), "--scheduler", scheduler_address, "--verbose")
    assert ok.returncode == 0, ok.stderr
    texts += [ok.stdout, ok.stderr]
    # failures print the URL, never the credentials
    cfg["data"]["url"] = f"s3://scaler-data/{prefix}-missing"
    path.write_text(toml_util.dumps(cfg))
    bad = _cli("run", str(path), "--scheduler", scheduler_address)
    assert bad.returncode == 2 and f"{prefix}-missing" in bad.stderr
    texts += [bad.stdout, bad.stderr]
    r = _cli("inspect", f"s3://scaler-data/{prefix}", "--storage-options", json.dumps(so))
    assert r.returncode == 0, r.stderr
    texts += [r.stdout, r.stderr]
    written = fs.find(f"scaler-out/{prefix}")
    assert any(w.endswith("model/manifest.json") for w in written)
    assert any("feature_cache" in w for w in written)
    blobs = [fs.cat(w) for w in written]
    for text in texts:
        assert secret not in text and key not in text
    for name, blob in zip(written, blobs, strict=True):
        assert secret.encode() not in blob and key.encode() not in blob, name
