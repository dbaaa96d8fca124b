import uuid

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


def test_group_bytes_groups_only_small_files_and_keeps_every_thread_busy():
    MiB = 2**20
    # 16 files of 40 MiB for 4 threads' worth of tasks: 4 partitions of 4 files
    assert storage.group_bytes([40 * MiB] * 16, 4) == 4 * 40 * MiB + 1
    # 1000 files of 1 MiB: partitions of at least 100 MiB, a multiple of 4 of them
    assert storage.group_bytes([MiB] * 1000, 4) == 125 * MiB + 1
    # tiny data still makes one partition per thread's worth
    assert storage.group_bytes([MiB] * 16, 8) == 2 * MiB + 1
    # a file as large as a partition, a single file, too few files, no sizes: no grouping
    assert storage.group_bytes([MiB] * 15 + [storage.PARTITION_BYTES], 4) is None
    assert storage.group_bytes([MiB], 4) is None
    assert storage.group_bytes([MiB] * 8, 16) is None
    assert storage.group_bytes(None, 4) is None


def _numbered_files(folder, n, rows):
    folder.mkdir()
    for i in range(n):
        pd.DataFrame(
            {"id": np.arange(i * rows, (i + 1) * rows), "x": np.random.default_rng(i).random(rows)}
        ).to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return str(folder)


def test_small_files_are_read_several_to_a_partition_in_order(tmp_path):
    url = _numbered_files(tmp_path / "d", 8, 1000)
    info = {}
    one_each = storage.read_dataset(url, info=info)
    assert one_each.npartitions == 8 and len(info["file_bytes"]) == 8
    gb = storage.group_bytes(info["file_bytes"], 2)
    grouped = storage.read_dataset(url, group_bytes=gb)
    assert grouped.npartitions == 2
    assert grouped.map_partitions(len).compute().tolist() == [4000, 4000]
    want = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "d").iterdir())])
    pd.testing.assert_frame_equal(
        grouped.compute().reset_index(drop=True), want.reset_index(drop=True)
    )
    # unchecked (no footers read by scaler), filters still apply
    got = storage.read_dataset(url, group_bytes=gb, check=False, filters=[["id", "<", 2500]])
    assert got.npartitions <= 2 and sorted(got.compute().id) == list(range(2500))


def test_hive_partitions_are_not_grouped(tree):
    info = {}
    storage.read_dataset(str(tree), info=info)
    assert info["file_bytes"] is None
    df = storage.read_dataset(str(tree), group_bytes=10 * 2**20)
    assert df.npartitions == 3
    assert sorted(df.compute().month.astype(int).unique()) == [1, 2, 3]


def test_small_files_on_s3_are_grouped_too(s3, client):
    so = s3.storage_options
    url = f"s3://scaler-data/group-{uuid.uuid4().hex[:8]}"
    for i in range(8):
        pd.DataFrame({"id": np.arange(i * 500, (i + 1) * 500), "x": np.ones(500)}).to_parquet(
            f"{url}/part-{i:05d}.parquet", index=False, storage_options=so
        )
    info = {}
    storage.read_dataset(url, storage_options=so, info=info)
    gb = storage.group_bytes(info["file_bytes"], 4)
    df = storage.read_dataset(url, storage_options=so, group_bytes=gb)
    with client.as_current():
        assert df.map_partitions(len).compute().tolist() == [1000] * 4  # 2 files each
        assert df.compute().id.tolist() == list(range(4000))


def test_arrow_floats_leave_float_columns_in_arrow_and_the_rest_as_usual(tmp_path):
    import pyarrow as pa

    url = _numbered_files(tmp_path / "d", 4, 500)
    frame = pd.read_parquet(url).reset_index(drop=True)
    frame["f"] = np.where(frame.id % 7 == 0, np.nan, frame.id / 3).astype(np.float32)
    frame["s"] = (frame.id % 3).astype(str)
    for i in range(4):  # four files again, now with a float and a string column
        frame.iloc[i * 500 : (i + 1) * 500].to_parquet(f"{url}/part-{i:05d}.parquet", index=False)
    plain = storage.read_dataset(url)
    got = storage.read_dataset(url, arrow_floats=True)
    for c in plain.columns:  # floats (x: float64, f: float32) in Arrow, the rest as usual
        want = plain.dtypes[c]
        if c in ("x", "f"):
            assert got.dtypes[c] == pd.ArrowDtype(pa.from_numpy_dtype(want)), c
        else:
            assert got.dtypes[c] == want, c
    back = got.compute(scheduler="sync").reset_index(drop=True)
    usual = plain.compute(scheduler="sync").reset_index(drop=True)
    for c in ("x", "f"):
        np.testing.assert_array_equal(back[c].to_numpy(frame[c].dtype, na_value=np.nan), frame[c])
    pd.testing.assert_frame_equal(back.drop(columns=["x", "f"]), usual.drop(columns=["x", "f"]))
    assert (
        np.isnan(back["f"].to_numpy(np.float32, na_value=np.nan)).sum() == (frame.id % 7 == 0).sum()
    )


def test_arrow_floats_options_stay_put_across_partitions():
    """Dask's Parquet reader stores its own types_mapper, wrapping the one it
    is given, back into the ``arrow_to_pandas`` dict; partitions read in one
    process share that dict, and with a plain dict the wrappers nest one
    level per partition until a RecursionError (after about a thousand)."""
    import pyarrow as pa
    from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine

    table = pa.table({"f": pa.array([1.5, None], pa.float32()), "s": ["a", "b"], "i": [1, 2]})
    opts = storage._ArrowToPandas()
    for _ in range(1500):  # as many partitions, one after the other
        df = ArrowDatasetEngine._arrow_table_to_pandas(table, None, arrow_to_pandas=opts)
    assert isinstance(df.dtypes["f"], pd.ArrowDtype) and df.dtypes["i"] == np.int64
    assert opts.get("types_mapper") is storage._arrow_float
    with pytest.raises(RecursionError):  # what a plain dict does
        plain = {"types_mapper": storage._arrow_float}
        for _ in range(1500):
            ArrowDatasetEngine._arrow_table_to_pandas(table, None, arrow_to_pandas=plain)


def test_prune_cache_removes_only_other_versions_unused_for_the_given_days(tmp_path):
    import os
    import time

    data = tmp_path / "data"
    now = time.time()
    day = 86400.0
    cached = "0123456789abcdef" * 4  # a file as simplecache names it

    def folder(name, age, files=(cached,)):
        (data / name).mkdir(parents=True)
        for f in files:
            (data / name / f).write_bytes(b"x")
        os.utime(data / name, (now - age * day, now - age * day))

    folder("a" * 32, 40)
    folder("b" * 32, 31, files=())  # empty: a download that never happened
    folder("c" * 32, 29)  # used within the 30 days
    folder("d" * 32, 50)  # the version in use
    folder("f" * 32, 99, files=("notes.txt",))  # a 32-hex name, but not scaler's
    folder("mine", 99)  # not a name scaler gives
    (data / ("e" * 32)).write_bytes(b"a file, not a folder")
    folder("7" * 32 + ".pruning-0123abcd", 0)  # renamed by a process that ended mid-removal
    keep = str(data / ("d" * 32))
    removed = storage.prune_cache(keep, 30, now=now)
    assert sorted(os.path.basename(p) for p in removed) == ["a" * 32, "b" * 32]
    assert sorted(os.listdir(data)) == sorted(["c" * 32, "d" * 32, "e" * 32, "f" * 32, "mine"])
    assert os.path.getmtime(keep) >= now - 1  # marked as used from now
    # in the background: returns at once, the folder goes soon after
    folder("9" * 32, 45)
    assert storage.prune_cache(keep, 30, background=True) == []
    deadline = time.monotonic() + 10
    while ("9" * 32) in os.listdir(data) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("9" * 32) not in os.listdir(data)
    assert not [n for n in os.listdir(data) if ".pruning-" in n]
    assert storage.prune_cache(str(tmp_path / "none" / ("1" * 32)), 30) == []  # no cache yet


@pytest.fixture
def arrow_reads(monkeypatch):
    """The pre_buffer setting of every Parquet file Dask's reader opens in
    this process: through ``pq.ParquetFile`` (plain reads) or through
    ``pyarrow.dataset`` (reads with row filters)."""
    import pyarrow.dataset as pa_ds
    import pyarrow.parquet as pq

    seen = []

    class Recording(pq.ParquetFile):
        def __init__(self, *args, **kwargs):
            seen.append(("file", kwargs.get("pre_buffer")))  # Dask always passes it
            super().__init__(*args, **kwargs)

    dataset = pa_ds.dataset

    def recording_dataset(*args, **kwargs):
        fmt = kwargs.get("format")
        opts = getattr(fmt, "default_fragment_scan_options", None)
        seen.append(("dataset", opts.pre_buffer if opts is not None else True))
        return dataset(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Recording)
    monkeypatch.setattr(pa_ds, "dataset", recording_dataset)
    return seen


def test_local_files_are_read_without_pre_buffering_and_remote_ones_with_it(
    tmp_path, s3, arrow_reads
):
    # Arrow's pre-buffering pays on object stores; from a local file (or a
    # whole file in the local cache) it only adds a copy before decoding.
    import dask

    url = _numbered_files(tmp_path / "d", 4, 1000)
    files = sorted((tmp_path / "d").iterdir())
    want = pd.concat([pd.read_parquet(f) for f in files]).reset_index(drop=True)
    so = s3.storage_options
    remote = f"s3://scaler-data/prebuffer-{uuid.uuid4().hex[:8]}"
    for i, f in enumerate(files):
        storage.write_bytes(f"{remote}/part-{i}.parquet", f.read_bytes(), so)
    cache = tmp_path / "cache"
    reads = {
        "local": lambda **kw: storage.read_dataset(url, **kw),
        "file://": lambda **kw: storage.read_dataset(f"file://{url}", **kw),
        "remote": lambda **kw: storage.read_dataset(remote, storage_options=so, **kw),
        "cached": lambda **kw: storage.read_dataset(
            remote, storage_options=so, cache="local", cache_dir=str(cache), check=False, **kw
        ),
    }
    with dask.config.set(scheduler="sync"):  # the reads run in this process
        for name, read in reads.items():
            for filters, expect in ((None, want), ([["id", ">=", 2500]], want[want.id >= 2500])):
                df = read(filters=filters)
                arrow_reads.clear()  # what reading the partitions opens, not the footers
                got = df.compute().reset_index(drop=True)
                pd.testing.assert_frame_equal(got, expect.reset_index(drop=True))
                opened = {how for how, _ in arrow_reads}
                assert opened == ({"dataset"} if filters else {"file"}), (name, arrow_reads)
                buffered = {pre for _, pre in arrow_reads}
                assert buffered == {name == "remote"}, (name, filters, arrow_reads)
    assert len([f for f in cache.rglob("*") if f.is_file()]) >= 4  # read through the cache
