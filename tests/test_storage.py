import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from scaler import storage
from scaler.errors import DataError, DatasetNotFoundError, InputError


@pytest.fixture
def tree(tmp_path):
    df = pd.DataFrame(
        {"month": np.repeat([1, 2, 3], 100), "x": np.arange(300.0), "y": np.arange(300) % 2}
    )
    df.to_parquet(tmp_path / "t", partition_cols=["month"], index=False)
    (tmp_path / "t" / "_SUCCESS").write_text("{}")
    (tmp_path / "t" / ".hidden").write_text("x")
    return tmp_path / "t"


def test_missing_url_names_it(tmp_path):
    url = str(tmp_path / "no-such-folder")
    with pytest.raises(DatasetNotFoundError, match="no-such-folder") as e:
        storage.read_dataset(url)
    assert isinstance(e.value, FileNotFoundError)


def test_list_files_skips_markers(tree):
    files = storage.list_files(str(tree))
    assert len(files) == 3 and all(f.endswith(".parquet") for f in files)


def test_filters_prune_hive_partitions(tree):
    df = storage.read_dataset(str(tree), filters=[["month", "in", [1, 3]]])
    got = df.compute()
    assert sorted(got.month.astype(int).unique()) == [1, 3] and len(got) == 200
    df = storage.read_dataset(str(tree), filters=[["x", ">=", 250]])
    assert len(df.compute()) == 50


def test_unknown_columns_are_named(tree):
    with pytest.raises(DataError, match=r"\['z'\].*Available columns: x, y, month"):
        storage.read_dataset(str(tree), columns=["x", "z"])
    with pytest.raises(DataError, match="Filter column"):
        storage.read_dataset(str(tree), filters=[["nope", "==", 1]])


def test_missing_backend_says_what_to_install(monkeypatch):
    def boom(*a, **k):
        raise ImportError("no module gcsfs")

    monkeypatch.setattr(storage, "url_to_fs", boom)
    with pytest.raises(InputError, match="pip install gcsfs"):
        storage.get_fs("gcs://bucket/data")


def test_write_parquet_commits_with_success_marker(tmp_path, client):
    ddf = dd.from_pandas(pd.DataFrame({"a": range(100)}), npartitions=4)
    url = str(tmp_path / "out")
    assert storage.write_parquet(ddf, url) == 100
    assert (tmp_path / "out" / "_SUCCESS").exists()
    assert pd.read_parquet(url).a.sum() == sum(range(100))
    # overwrite replaces the old output
    assert storage.write_parquet(ddf.head(10, npartitions=-1, compute=False), url) == 10
    assert len(pd.read_parquet(url)) == 10


def test_bytes_round_trip_memory():
    storage.write_bytes("memory://scaler-test/a/b.bin", b"hello")
    assert storage.read_bytes("memory://scaler-test/a/b.bin") == b"hello"
    with pytest.raises(DatasetNotFoundError):
        storage.read_bytes("memory://scaler-test/missing.bin")
