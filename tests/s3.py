"""A real S3 HTTP endpoint on 127.0.0.1 for the tests: moto's server in a
thread (as in s3fs's own test-suite), wrapped in a WSGI layer that records
every request (method, bucket, key, bytes sent back) so that tests can
measure what crosses the wire, and that can answer ``AccessDenied`` for
chosen buckets.

The server runs in the test process, so requests from the Dask worker
processes are counted too: they reach it over TCP like any S3 client.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from urllib.parse import unquote

import pytest

KEY = "scaler-test-key"
SECRET = "scaler-test-secret"
BUCKETS = ("scaler-data", "scaler-out", "scaler-denied")


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: str
    status: int
    sent: int  # response body bytes

    @property
    def is_data(self) -> bool:
        """A GET of an object's bytes (not a listing, HEAD or bucket call)."""
        return (
            self.method == "GET"
            and bool(self.key)
            and "list-type" not in self.query
            and self.status < 300
        )


class Recorder:
    """WSGI middleware: records requests and can deny whole buckets."""

    def __init__(self, app):
        self.app = app
        self.requests: list[Request] = []
        self.denied: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
        bucket, _, key = path.partition("/")
        method = environ.get("REQUEST_METHOD", "")
        query = environ.get("QUERY_STRING", "")
        status = [0]

        def start(status_line, headers, exc_info=None):
            status[0] = int(status_line.split()[0])
            return start_response(status_line, headers, exc_info)

        if bucket in self.denied:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>"
            )
            start("403 Forbidden", [("Content-Type", "application/xml")])
            chunks = [body] if method != "HEAD" else [b""]
        else:
            chunks = self.app(environ, start)
        sent = 0
        try:
            for chunk in chunks:
                sent += len(chunk)
                yield chunk
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
            with self.lock:
                self.requests.append(Request(method, bucket, key, query, status[0], sent))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def data_requests(self, bucket: str | None = None, prefix: str = "") -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.is_data and (bucket is None or r.bucket == bucket) and r.key.startswith(prefix)
            ]

    def data_bytes(self, bucket: str | None = None, prefix: str = "") -> int:
        return sum(r.sent for r in self.data_requests(bucket, prefix))


class S3Server:
    """moto's server on 127.0.0.1 and a free port, behind a :class:`Recorder`."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.recorder = Recorder(DomainDispatcherApplication(create_backend_app))

        class Quiet(MotoRequestHandler):
            def log_request(self, *args, **kwargs):
                pass

        self._server = make_server(
            "127.0.0.1", 0, self.recorder, threaded=True, request_handler=Quiet
        )
        self.port = self._server.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    @property
    def storage_options(self) -> dict:
        return {"client_kwargs": {"endpoint_url": self.endpoint_url}, "key": KEY, "secret": SECRET}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)


@pytest.fixture(scope="session")
def s3_server():
    """The S3 endpoint for the session with the buckets of :data:`BUCKETS`.

    Fake credentials are set in this process's environment as well (the
    AWS variables), but the Dask worker processes started before do not
    see them: tests pass ``storage_options``, which travel with the tasks.
    """
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    server = S3Server().start()
    fs = server.fs()
    for b in BUCKETS:
        fs.mkdir(b)
    try:
        yield server
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3(s3_server):
    """The session's S3 endpoint with a cleared request log."""
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    s3_server.recorder.reset()
    s3_server.recorder.denied.clear()
    return s3_server
