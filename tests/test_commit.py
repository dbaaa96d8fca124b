"""Committed writes: a writer killed midway (SIGKILL) leaves the previous
bundle and the previous predictions readable, and nothing partial that a
scaler reader would take for complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

import scaler
from scaler import storage
from scaler.errors import IncompleteOutputError
from tests.conftest import ROOT, base_config

SLOW_PARQUET = textwrap.dedent(
    """
    import sys, time
    import dask, dask.dataframe as dd, pandas as pd
    from scaler import storage

    calls = {}

    def slow(df, partition_info=None):
        i = (partition_info or {}).get("number", -1)
        calls[i] = calls.get(i, 0) + 1
        if i == 2 and calls[i] >= 2:  # second pass = the write itself
            print("WRITING", flush=True)
            time.sleep(600)
        return df

    ddf = dd.from_pandas(pd.DataFrame({"a": range(400)}), npartitions=4)
    with dask.config.set(scheduler="sync"):
        storage.write_parquet(ddf.map_partitions(slow, meta=ddf._meta), sys.argv[1])
    """
)

SLOW_BUNDLE = textwrap.dedent(
    """
    import sys, time
    import scaler
    from scaler import storage

    model = scaler.load_bundle(sys.argv[1])
    write = storage.write_bytes

    def slow_write(url, data, so=None):
        write(url, data, so)
        if url.endswith("booster.ubj"):
            print("WRITING", flush=True)
            time.sleep(600)

    storage.write_bytes = slow_write
    scaler.save_bundle(model, sys.argv[1])
    """
)


def _kill_midway(script: str, arg: str, watch: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, arg], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", line
        deadline = time.time() + 10
        while watch is not None and time.time() < deadline:
            if any(watch.glob("v-*/*.parquet")):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_writers_leave_previous_outputs_readable(client, clean_data, tmp_path):
    out = tmp_path / "out"
    result = scaler.run(
        base_config(clean_data, str(out), model={"rounds": 5}, preprocess={"pca": 3}),
        client=client,
    )
    preds = Path(result.predictions_url)
    before = storage.read_dataset(str(preds)).compute()
    manifest = json.loads((Path(result.bundle_url) / "manifest.json").read_text())

    # predictions overwritten by a process killed while writing parts
    _kill_midway(SLOW_PARQUET, str(preds), watch=preds)
    versions = sorted(p.name for p in preds.glob("v-*"))
    assert len(versions) == 2  # the committed one and the killed write's orphan
    after = storage.read_dataset(str(preds)).compute()
    pd.testing.assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True))

    # a first write to a fresh URL killed midway is refused by readers
    fresh = tmp_path / "fresh"
    _kill_midway(SLOW_PARQUET, str(fresh), watch=fresh)
    assert any(fresh.glob("v-*/*.parquet"))
    with pytest.raises(IncompleteOutputError, match="never committed"):
        storage.read_dataset(str(fresh))

    # a bundle save killed after the booster was written: the old bundle loads
    _kill_midway(SLOW_BUNDLE, result.bundle_url)
    assert len(list(Path(result.bundle_url).glob("v-*"))) == 2
    model = scaler.load_bundle(result.bundle_url)
    assert model.info["manifest"]["version_dir"] == manifest["version_dir"]

    # the next write commits and removes the orphans
    ddf = dd.from_pandas(pd.DataFrame({"a": range(10)}), npartitions=2)
    assert storage.write_parquet(ddf, str(preds)) == 10
    assert len(list(preds.glob("v-*"))) == 1
    assert len(storage.read_dataset(str(preds)).compute()) == 10
    assert storage.write_parquet(ddf, str(fresh)) == 10
    assert not (fresh / storage.WRITING).exists()


def test_partial_committed_output_is_refused(tmp_path, client):
    ddf = dd.from_pandas(pd.DataFrame({"a": range(100)}), npartitions=4)
    url = tmp_path / "out"
    storage.write_parquet(ddf, str(url))
    info = json.loads((url / storage.SUCCESS).read_text())
    assert info["rows"] == 100 and len(info["files"]) == 4
    os.remove(url / info["files"][1])
    with pytest.raises(IncompleteOutputError, match="partial"):
        storage.read_dataset(str(url))
