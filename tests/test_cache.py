"""Caching: remote Parquet on local disk (``[data] cache = "local"``) and
the feature cache (``[preprocess] feature_cache = true``)."""

from __future__ import annotations

import os
import time
import uuid

import pandas as pd
import pytest

import scaler
from tests.conftest import base_config

SMALL = {
    "preprocess": {"pca": 3},
    "model": {"rounds": 5, "early_stopping": 0, "valid_fraction": 0.0},
}


def _cfg(data_url, out, **sections):
    cfg = base_config(data_url, out, **SMALL)
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.mark.slow
def test_local_cache_second_run_makes_no_data_requests(s3, client, tmp_path, capsys):
    so = s3.storage_options
    prefix = f"cache-{uuid.uuid4().hex[:8]}"
    data = f"s3://scaler-data/{prefix}"
    with client.as_current():
        scaler.make_dataset(data, rows=3000, n_features=6, files=3, rank=3, storage_options=so)
    cfg = _cfg(
        data,
        str(tmp_path / "out"),
        data={"storage_options": so, "cache": "local", "cache_dir": str(tmp_path / "cache")},
    )
    counts = []
    for _ in range(2):
        s3.recorder.reset()
        first = scaler.run(cfg, client=client)
        counts.append(
            (
                len(s3.recorder.data_requests("scaler-data", prefix)),
                s3.recorder.data_bytes("scaler-data", prefix),
            )
        )
    with capsys.disabled():
        print(f"\n[cache=local] data GETs/bytes: first run {counts[0]}, second run {counts[1]}")
    assert counts[0][0] > 0 and counts[1] == (0, 0)
    # a changed file (new ETag) gets a fresh cache entry, not a stale one
    fs = s3.fs()
    fs.pipe(
        f"scaler-data/{prefix}/part-00000.parquet",
        fs.cat(f"scaler-data/{prefix}/part-00001.parquet"),
    )
    s3.recorder.reset()
    again = scaler.run(cfg, client=client)
    assert s3.recorder.data_requests("scaler-data", prefix)
    assert again.counts["rows_read"] == first.counts["rows_read"]
    # one folder per version of the files; a run removes those of other
    # versions that nothing used for [data] cache_keep_days (30) days
    folders = tmp_path / "cache" / "data"
    assert len(os.listdir(folders)) == 2
    month = 40 * 86400
    for f in os.listdir(folders):
        st = os.stat(folders / f)
        os.utime(folders / f, (st.st_atime - month, st.st_mtime - month))
    s3.recorder.reset()
    scaler.run(cfg, client=client)
    deadline = time.monotonic() + 10  # removed in the background
    while len(os.listdir(folders)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(folders)) == 1  # the version in use stays, and is complete
    assert s3.recorder.data_requests("scaler-data", prefix) == []


@pytest.mark.slow
def test_feature_cache_hit_and_misses(client, tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    with client.as_current():
        scaler.make_dataset(data, rows=3000, n_features=6, files=3, rank=3)
    cfg = _cfg(data, out, preprocess={"feature_cache": True})

    def run(c):
        lines: list[str] = []
        res = scaler.run(c, client=client, echo=lines.append, progress=False)
        return res, "\n".join(lines)

    r1, log1 = run(cfg)
    assert "cache miss (no feature cache yet" in log1 and "scan" in r1.timings
    assert os.path.exists(os.path.join(out, "feature_cache", "manifest.json"))
    r2, log2 = run(cfg)
    assert "cache hit" in log2 and "skipped reading, fitting and transforming" in log2
    assert "scan" not in r2.timings and "transform" not in r2.timings
    assert r2.counts == r1.counts
    assert r2.model.feature_names == r1.model.feature_names
    # The cache gives back exactly the features a fresh pass computes. (Models
    # trained on them may differ a little: distributed XGBoost's bin edges
    # depend on which worker holds which partition, which is not fixed.)
    fresh_cfg = _cfg(data, str(tmp_path / "fresh"), preprocess={"feature_cache": False})
    fresh = scaler.prepare(fresh_cfg, client=client, progress=False)
    hit = scaler.prepare(cfg, client=client, progress=False)
    assert "scan" not in hit.timings  # read from the cache
    a, b = (p.features.compute().sort_values("id").reset_index(drop=True) for p in (fresh, hit))
    pd.testing.assert_frame_equal(a, b)
    fresh.release()
    hit.release()
    assert abs(r2.metrics["auc"] - r1.metrics["auc"]) < 0.05
    # a touched input file misses
    f = os.path.join(data, "part-00001.parquet")
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    r3, log3 = run(cfg)
    assert "cache miss (the input files or the preprocessing config changed" in log3
    assert "scan" in r3.timings
    # and so does a change of the preprocessing config, or of the split
    _, log4 = run(_cfg(data, out, preprocess={"feature_cache": True, "pca": 2}))
    assert "cache miss" in log4
    _, log5 = run(_cfg(data, out, preprocess={"feature_cache": True}, split={"seed": 3}))
    assert "cache miss" in log5
