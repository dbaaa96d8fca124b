"""Against the real S3 endpoint on 127.0.0.1: what crosses the wire
(projection and partition pruning), and the errors users see."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pandas as pd
import pytest

import scaler
from scaler import storage
from scaler.errors import DataError, DatasetNotFoundError, StorageAccessError

BUCKET = "scaler-data"


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def wide(s3_server, client):
    """3 files x 20,000 rows x 50 float32 features (+ id, label) on S3."""
    url = f"s3://{BUCKET}/wide-{uuid.uuid4().hex[:6]}"
    with client.as_current():
        scaler.make_dataset(
            url, rows=60_000, n_features=50, files=3, storage_options=s3_server.storage_options
        )
    return url


def test_projection_reads_a_fraction_of_the_bytes(s3, wide, client, capsys):
    so = s3.storage_options
    prefix = wide.split(f"{BUCKET}/")[1]
    with client.as_current():
        s3.recorder.reset()
        full = storage.read_dataset(wide, storage_options=so).compute()
        full_bytes = s3.recorder.data_bytes(BUCKET, prefix)
        s3.recorder.reset()
        cols = ["f00", "f10", "f20", "f30", "f40"]
        part = storage.read_dataset(wide, columns=cols, storage_options=so).compute()
        part_bytes = s3.recorder.data_bytes(BUCKET, prefix)
    assert len(full) == len(part) == 60_000 and full.shape[1] == 52
    np.testing.assert_array_equal(part.to_numpy(), full[cols].to_numpy())
    with capsys.disabled():
        print(
            f"\n[pushdown] full read {full_bytes:,} B, 5 of 50 features {part_bytes:,} B "
            f"({part_bytes / full_bytes:.1%})"
        )
    assert part_bytes < 0.25 * full_bytes


def test_partition_filter_opens_only_matching_files(s3, client, capsys):
    so = s3.storage_options
    prefix = _prefix() + "/hive"
    df = pd.DataFrame(
        {
            "month": np.repeat([1, 2, 3, 4], 2000),
            "x": np.arange(8000.0),
            "label": np.arange(8000) % 2,
        }
    )
    df.to_parquet(
        f"s3://{BUCKET}/{prefix}", partition_cols=["month"], index=False, storage_options=so
    )
    s3.recorder.reset()
    with client.as_current():
        got = storage.read_dataset(
            f"s3://{BUCKET}/{prefix}", filters=[["month", "in", [1, 2]]], storage_options=so
        ).compute()
    assert sorted(got["month"].astype(int).unique()) == [1, 2] and len(got) == 4000
    opened = {r.key.split("/")[2] for r in s3.recorder.data_requests(BUCKET, prefix)}
    with capsys.disabled():
        print(
            f"\n[pushdown] month in [1, 2]: opened {sorted(opened)}, "
            f"{s3.recorder.data_bytes(BUCKET, prefix):,} B"
        )
    assert opened == {"month=1", "month=2"}


def test_missing_bucket_and_prefix_name_the_url(s3):
    so = s3.storage_options
    for url in ("s3://no-such-bucket-scaler/data", f"s3://{BUCKET}/no/such/prefix"):
        with pytest.raises(DatasetNotFoundError, match=url) as e:
            storage.read_dataset(url, storage_options=so)
        assert isinstance(e.value, FileNotFoundError)


def test_denied_access_is_a_permission_error_with_a_hint(s3):
    s3.recorder.denied.add("scaler-denied")
    with pytest.raises(StorageAccessError, match="credentials") as e:
        storage.read_dataset("s3://scaler-denied/data", storage_options=s3.storage_options)
    assert isinstance(e.value, PermissionError) and "scaler-denied/data" in str(e.value)


def test_permission_error_of_any_filesystem_is_mapped(monkeypatch):
    class Denied:
        def isdir(self, path):
            raise PermissionError(13, "Forbidden")

    monkeypatch.setattr(storage, "get_fs", lambda url, so=None: (Denied(), "bucket/x"))
    with pytest.raises(StorageAccessError, match="storage_options"):
        storage.list_files("gcs://bucket/x")


def _good_file(seed: int) -> bytes:
    buf = io.BytesIO()
    pd.DataFrame({"a": np.arange(100.0) + seed, "b": np.arange(100) % 2}).to_parquet(buf)
    return buf.getvalue()


def test_corrupt_and_disagreeing_files_are_named(s3):
    fs, so = s3.fs(), s3.storage_options
    prefix = f"{BUCKET}/{_prefix()}"
    fs.pipe(f"{prefix}/bad/part-0.parquet", _good_file(0))
    fs.pipe(f"{prefix}/bad/part-1.parquet", _good_file(1)[:-300])  # truncated
    with pytest.raises(DataError, match=r"part-1\.parquet.*not a readable Parquet"):
        storage.read_dataset(f"s3://{prefix}/bad", storage_options=so)

    fs.pipe(f"{prefix}/schema/part-0.parquet", _good_file(0))
    buf = io.BytesIO()
    pd.DataFrame({"a": np.arange(10.0), "b": ["x"] * 10}).to_parquet(buf)
    fs.pipe(f"{prefix}/schema/part-1.parquet", buf.getvalue())
    with pytest.raises(DataError, match=r"Column 'b' is .* in file .*part-1\.parquet"):
        storage.read_dataset(f"s3://{prefix}/schema", storage_options=so)

    buf = io.BytesIO()
    pd.DataFrame({"a": np.arange(10.0)}).to_parquet(buf)
    fs.pipe(f"{prefix}/missing/part-0.parquet", _good_file(0))
    fs.pipe(f"{prefix}/missing/part-1.parquet", buf.getvalue())
    with pytest.raises(DataError, match=r"part-1\.parquet' has no column 'b'"):
        storage.read_dataset(f"s3://{prefix}/missing", storage_options=so)


def test_credentials_from_aws_environment_variables(s3, monkeypatch):
    """Only the endpoint in storage_options; key and secret from AWS_* (set by
    the fixture in this process; read here with the in-process scheduler,
    since worker processes started before do not see them)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.storage_options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.storage_options["secret"])
    prefix = f"{BUCKET}/{_prefix()}"
    s3.fs().pipe(f"{prefix}/part-0.parquet", _good_file(0))
    so = {"client_kwargs": {"endpoint_url": s3.endpoint_url}}
    df = storage.read_dataset(f"s3://{prefix}", storage_options=so)
    assert len(df.compute(scheduler="sync")) == 100
