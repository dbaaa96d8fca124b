"""The same end-to-end run (train, save the bundle, predict, read back) on
every kind of store: plain paths, file://, memory://, s3:// against a real
S3 endpoint on 127.0.0.1, http:// (read-only) and simplecache::s3://.
Only the URLs and the storage options change between stores."""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import threading
import uuid

import pytest

import scaler
from scaler import storage
from tests.conftest import base_config

ROWS = 3000


def _dataset(url, so=None):
    scaler.make_dataset(url, rows=ROWS, n_features=6, files=3, rank=3, storage_options=so)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """http.server plus single ``Range: bytes=a-b`` requests, as any real
    web server or CDN answers them (Parquet readers need them)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        size = os.path.getsize(path)
        if not m:
            self.send_error(416)
            return None
        a, b = m.groups()
        start = int(a) if a else max(0, size - int(b))
        end = min(int(b), size - 1) if a and b else size - 1
        f = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        f.seek(start)
        body = f.read(end - start + 1)
        f.close()
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@pytest.fixture(scope="module")
def http_data(tmp_path_factory, client):
    """A Parquet folder served by Python's http.server (its directory
    pages are the file list fsspec's HTTPFileSystem reads)."""
    root = tmp_path_factory.mktemp("http")
    _dataset(str(root / "data"))

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data/"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def threads_client():
    """memory:// lives in one process: a threads-only cluster for it."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        ) as c,
        Client(c, set_as_default=False) as cl,
    ):
        yield cl


def _end_to_end(data_url, out_url, so, client):
    cfg = base_config(
        data_url,
        out_url,
        preprocess={"pca": 3},
        model={"rounds": 5, "early_stopping": 0, "valid_fraction": 0.0},
    )
    if so:
        cfg["data"]["storage_options"] = so
        cfg["output"]["storage_options"] = so
    result = scaler.run(cfg, client=client)
    assert result.metrics["n"] > 0 and result.metrics["auc"] > 0.6
    with client.as_current():
        holdout = storage.read_dataset(result.predictions_url, storage_options=so).compute()
    assert len(holdout) == result.counts["holdout"]
    model = scaler.load_bundle(result.bundle_url, storage_options=so)
    assert model.feature_names == result.model.feature_names
    scored_url = storage.join(out_url, "scored")
    res = scaler.predict(
        result.bundle_url,
        data_url,
        scored_url,
        client=client,
        storage_options=so,
        out_storage_options=so,
        bundle_storage_options=so,
    )
    assert res.rows == ROWS
    with client.as_current():
        back = storage.read_dataset(scored_url, storage_options=so).compute()
    assert len(back) == ROWS and back["id"].nunique() == ROWS
    assert back["probability"].between(0, 1).all()
    return result


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["path", "file"])
def test_local_stores(kind, tmp_path, client):
    prefix = "" if kind == "path" else "file://"
    data = prefix + str(tmp_path / "data")
    with client.as_current():
        _dataset(data)
    _end_to_end(data, prefix + str(tmp_path / "out"), None, client)


@pytest.mark.slow
def test_memory_store(threads_client):
    root = f"memory://stores-{uuid.uuid4().hex[:8]}"
    with threads_client.as_current():
        _dataset(root + "/data")
    _end_to_end(root + "/data", root + "/out", None, threads_client)


@pytest.mark.slow
@pytest.mark.parametrize("chain", ["", "simplecache::"])
def test_s3_store(chain, s3, client):
    run_id = uuid.uuid4().hex[:8]
    data = f"s3://scaler-data/stores-{run_id}/data"
    with client.as_current():
        _dataset(data, s3.storage_options)
    s3.recorder.reset()
    _end_to_end(chain + data, f"s3://scaler-out/stores-{run_id}/out", s3.storage_options, client)
    # everything went through the endpoint: data read, bundle and predictions written
    assert s3.recorder.data_requests("scaler-data")
    written = s3.fs().find(f"scaler-out/stores-{run_id}/out")
    assert any(f.endswith("/model/manifest.json") for f in written)
    assert any(f.endswith("/scored/_SUCCESS") for f in written)


@pytest.mark.slow
def test_http_store_read_only(http_data, tmp_path, client):
    _end_to_end(http_data, str(tmp_path / "out"), None, client)
