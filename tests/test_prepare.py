"""prepare() once, train several models on the persisted features."""

import shutil
import uuid

import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream

import scaler
from scaler import ConfigError

from .conftest import base_config


def test_prepare_once_train_many_without_recomputing(client, binary_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(binary_data, data)
    cfg = base_config(str(data), str(tmp_path / "out"))
    prep = scaler.prepare(cfg, client=client, progress=False)
    assert prep.counts["rows_read"] == 6000
    assert prep.preprocessor.output_columns[:2] == ["pc1", "pc2"]
    # the features live in cluster memory: the raw data is no longer needed
    shutil.rmtree(data)
    with get_task_stream(client) as ts:
        models = [prep.train(rounds=15, params={"max_depth": d}) for d in (2, 4)]
    names = " ".join(str(t["key"]) for t in ts.data)
    assert "scan_partition" not in names and "_merge_many" not in names
    assert [m.info["params"]["max_depth"] for m in models] == [2, 4]
    assert all(m.info["valid_metric"] == "logloss" for m in models)
    assert all(m.info["best_score"] > 0 for m in models)
    best = min(models, key=lambda m: m.info["best_score"])
    metrics = prep.evaluate(best)
    assert set(metrics) == {"n", "auc", "logloss", "accuracy"} and metrics["auc"] > 0.7
    url = str(tmp_path / "best")
    scaler.save_bundle(best, url)
    loaded = scaler.load_bundle(url)
    assert loaded.info["metrics"]["auc"] == pytest.approx(metrics["auc"])
    with pytest.raises(ConfigError, match="cannot change \\[model\\] objective"):
        prep.train(objective="reg:squarederror")
    prep.release()


def test_prepare_needs_a_client(binary_data, tmp_path, monkeypatch):
    import scaler.pipeline

    monkeypatch.setattr(scaler.pipeline, "current_client", lambda: None)
    with pytest.raises(ValueError, match="needs a client"):
        scaler.prepare(base_config(binary_data, str(tmp_path)))


def _sorted_features(prep):
    return prep.features.compute().sort_values("id").reset_index(drop=True)


def _frames_with(dask_worker, cols):
    """Keys of the frames in a worker's memory that have any of ``cols``."""
    return [
        str(k)
        for k, v in dask_worker.data.items()
        if isinstance(v, pd.DataFrame) and cols & set(map(str, v.columns))
    ]


def test_hold_raw_reads_once_and_gives_the_same_features(s3, client, tmp_path, monkeypatch):
    so = s3.storage_options
    prefix = f"hold-{uuid.uuid4().hex[:8]}"
    data = f"s3://scaler-data/{prefix}"
    with client.as_current():
        scaler.make_dataset(data, rows=20_000, n_features=8, files=2, rank=4, storage_options=so)
    size = sum(s3.fs().du(f"scaler-data/{prefix}", total=False).values())
    decide = scaler.pipeline._hold_raw
    runs = {}
    for mode in ("held", "streamed", "partial"):
        cfg = base_config(
            data,
            str(tmp_path / mode),
            data={"storage_options": so},
            preprocess={"hold_raw": {"held": True, "streamed": False, "partial": "auto"}[mode]},
        )
        if mode == "partial":  # as "auto" decides when only the first partition fits
            monkeypatch.setattr(scaler.pipeline, "_hold_raw", lambda *a: (1, "one fits (test)"))
        s3.recorder.reset()
        lines = []
        prep = scaler.prepare(cfg, client=client, progress=False, echo=lines.append)
        monkeypatch.setattr(scaler.pipeline, "_hold_raw", decide)
        runs[mode] = (prep, s3.recorder.data_bytes("scaler-data", prefix), " ".join(lines))
        # only the features stay in cluster memory, never a raw partition
        raw_cols = set(prep.spec.numeric)
        kept = client.run(lambda dask_worker, cols=raw_cols: _frames_with(dask_worker, cols))
        assert not any(kept.values()) and sum(map(len, client.who_has().values())) > 0
    (held, read_held, said_held), (streamed, read_streamed, said_streamed) = (
        runs["held"],
        runs["streamed"],
    )
    partial, read_partial, said_partial = runs["partial"]
    assert "held in memory:" in said_held and "streamed, read again" in said_streamed
    assert "1 of 2 partitions held in memory, the rest read again" in said_partial
    # bytes fetched from the store: the data once when held (plus footers
    # and metadata), once more when streamed (statistics pass, then transform),
    # and the second of two files once more when only the first is held
    assert size <= read_held < 1.5 * size
    assert read_streamed - read_held > 0.95 * size
    assert 0.4 * size < read_partial - read_held < 0.6 * size
    assert held.counts == streamed.counts == partial.counts
    a = held.preprocessor.scaler_pca
    for other in (streamed, partial):
        b = other.preprocessor.scaler_pca
        np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12, atol=1e-15)
        pd.testing.assert_frame_equal(_sorted_features(held), _sorted_features(other))
    # the parts are disjoint and hold exactly their rows
    for prep in (held, partial):
        for name, code in scaler.pipeline.PART_CODES.items():
            part = prep.parts[name].compute()
            assert len(part) == prep.counts[name] and (part[scaler.pipeline.PART] == code).all()
    for prep in (held, streamed, partial):
        prep.release()


class _FakeClient:
    def __init__(self, limits):
        self.limits = limits

    def scheduler_info(self, **kw):
        return {"workers": {f"w{i}": {"memory_limit": m} for i, m in enumerate(self.limits)}}


def test_hold_raw_auto_holds_only_what_fits_a_tenth_of_cluster_memory(binary_data):
    from scaler.config import load_config
    from scaler.pipeline import _hold_raw, _raw_bytes, _read

    cfg = load_config(base_config(binary_data, "unused"))
    df, _, info = _read(cfg)
    rows = info["rows"]
    assert rows == 6000 and len(info["file_bytes"]) == 4
    need = _raw_bytes(df, rows)
    widths = [dt.itemsize if isinstance(dt, np.dtype) else 32 for dt in df.dtypes]
    assert need == 6000 * sum(widths) and any(w == 32 for w in widths)  # a string column
    n = df.npartitions
    assert n == 4
    hold, why = _hold_raw(cfg, df, rows, _FakeClient([need * 5, need * 5]))
    assert hold == n and "at most 10%" in why
    # a tenth of 8x the data holds 0.8 of it: the first 3 of 4 partitions
    hold, why = _hold_raw(cfg, df, rows, _FakeClient([need * 4, need * 4]))
    assert hold == 3 and "more than 10%" in why
    assert _hold_raw(cfg, df, rows, _FakeClient([need, need]))[0] == 0  # not even one fits
    assert _hold_raw(cfg, df, rows, _FakeClient([0, need * 100]))[0] == 0  # no limit known
    assert _hold_raw(cfg, df, None, _FakeClient([need * 100]))[0] == 0
    forced = cfg.replace(preprocess={"hold_raw": False})
    assert _hold_raw(forced, df, rows, _FakeClient([need * 100]))[0] == 0
    forced = cfg.replace(preprocess={"hold_raw": True})
    assert _hold_raw(forced, df, rows, _FakeClient([need]))[0] == n


def test_hold_raw_is_checked():
    from scaler.config import load_config

    with pytest.raises(ConfigError, match="hold_raw"):
        load_config(base_config("x", "y", preprocess={"hold_raw": "always"}))
    with pytest.raises(ConfigError, match="bin_sample_rows"):
        load_config(base_config("x", "y", model={"bin_sample_rows": 500}))


@pytest.fixture(scope="module")
def large_data(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("large") / "data")
    scaler.make_dataset(url, rows=60_000, n_features=8, files=4, rank=4, seed=5)
    return url


def _thresholds(booster) -> np.ndarray:
    df = booster.trees_to_dataframe()
    return df["Split"].dropna().to_numpy(dtype=np.float32)


def test_bin_edges_from_a_sample_of_training_rows(client, large_data, tmp_path):
    import xgboost

    from scaler.train import _cuts_sample, _quantile_rows

    cfg = base_config(
        large_data,
        str(tmp_path),
        preprocess={"pca": False},
        model={
            "rounds": 15,
            "early_stopping": 0,
            "valid_fraction": 0.0,
            "bin_sample_rows": 10_000,
        },
    )
    prep = scaler.prepare(cfg, client=client, progress=False)
    fcols = prep.preprocessor.output_columns
    sample = _cuts_sample(client, prep.parts["train"][fcols], 10_000)
    # the transform took the same rows while making the features
    futs, n = prep._cut_samples
    assert n == 10_000 and len(futs) == len(prep._futures["train"])
    taken = pd.concat(client.gather(futs), ignore_index=True)
    pd.testing.assert_frame_equal(taken, sample.reset_index(drop=True))
    assert sample is not None and 10_000 <= len(sample) <= 10_050
    local = xgboost.QuantileDMatrix(_quantile_rows(sample, 256))
    _, cut_values = local.get_quantile_cut()
    cuts = np.asarray(cut_values, dtype=np.float32)

    sampled = prep.train(bin_sample_rows=10_000)
    exact = prep.train(bin_sample_rows=0)
    # every split of the sampled model sits on a bin edge of the sample ...
    assert np.isin(_thresholds(sampled.booster), cuts).all()
    # ... which the exact sketch of all rows does not give
    assert not np.isin(_thresholds(exact.booster), cuts).all()
    m_sampled, m_exact = prep.evaluate(sampled), prep.evaluate(exact)
    assert abs(m_sampled["auc"] - m_exact["auc"]) < 0.005
    # below four times the sample size, every row is sketched
    assert _cuts_sample(client, prep.parts["train"][fcols], 20_000) is None
    prep.release()


def test_a_feature_cache_hit_takes_the_bin_edge_sample_too(client, large_data, tmp_path):
    # features read back from the cache are cut the same way as fresh ones,
    # and the bin-edge sample comes with them: training rows, about
    # bin_sample_rows of them
    cfg = base_config(
        large_data,
        str(tmp_path),
        preprocess={"pca": False, "feature_cache": True},
        model={"early_stopping": 0, "valid_fraction": 0.0, "bin_sample_rows": 10_000},
    )
    scaler.prepare(cfg, client=client, progress=False).release()  # writes the cache
    hit = scaler.prepare(cfg, client=client, progress=False)
    assert "scan" not in hit.timings
    futs, n = hit._cut_samples
    assert n == 10_000
    taken = pd.concat(client.gather(futs), ignore_index=True)
    fcols = hit.preprocessor.output_columns
    assert list(taken.columns) == fcols and 10_000 <= len(taken) <= 10_000 + len(futs)
    train = hit.parts["train"][fcols].compute()
    assert len(taken.merge(train.drop_duplicates(), on=fcols)) == len(taken)
    hit.release()


def test_quantile_rows_give_the_bin_edges_of_the_whole_sample():
    import xgboost

    from scaler.train import _quantile_rows

    rng = np.random.default_rng(3)
    n = 50_000
    sample = pd.DataFrame(
        {
            "skewed": (rng.standard_normal(n) ** 3).astype(np.float32),
            "holes": rng.standard_normal(n).astype(np.float32),
            "few": rng.integers(0, 7, n).astype(np.float32),
        }
    )
    sample.loc[::5, "holes"] = np.nan
    rows = _quantile_rows(sample, 64)
    assert list(rows.columns) == list(sample.columns) and len(rows) == 64
    assert (rows.dtypes == sample.dtypes).all()
    ours = xgboost.QuantileDMatrix(rows, max_bin=64).get_quantile_cut()
    sketch = xgboost.QuantileDMatrix(sample, max_bin=64).get_quantile_cut()
    for j, c in enumerate(sample.columns):
        a = ours[1][ours[0][j] : ours[0][j + 1]]
        b = sketch[1][sketch[0][j] : sketch[0][j + 1]]
        if c == "few":  # fewer distinct values than bins: every value is an edge
            np.testing.assert_array_equal(a, b)
            continue
        assert len(a) == len(b)
        col = np.sort(sample[c].dropna().to_numpy())

        def shares(cuts, col=col):
            return np.diff(np.searchsorted(col, cuts[:-1])) / len(col)

        # bins hold equal shares of the non-missing values, at least as
        # evenly as the sketch of every row gives them
        ours_s, sketch_s = shares(a), shares(b)
        assert ours_s.max() - ours_s.min() <= sketch_s.max() - sketch_s.min() + 1e-3
        assert abs(ours_s.mean() - sketch_s.mean()) < 1e-3
        assert a[-1] > col[-1] and b[-1] > col[-1]


def test_the_parts_of_a_partition_live_on_one_worker(client, binary_data, tmp_path):
    # every worker that trains also holds validation rows (XGBoost refuses
    # an empty evaluation matrix on a worker when a feature is categorical)
    prep = scaler.prepare(base_config(binary_data, str(tmp_path)), client=client, progress=False)
    futs = prep._futures
    assert set(futs) == {"train", "valid", "holdout"}
    who = client.who_has([f for fs in futs.values() for f in fs])
    for i in range(len(futs["train"])):
        holders = [set(who[fs[i].key]) for fs in futs.values()]
        assert holders[0] and all(h == holders[0] for h in holders)
    prep.release()


def _heap_state(dask_worker=None):
    import os

    from scaler import _heap

    return (
        _heap._state["holders"],
        _heap._state["libc"] is not None,
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    )


def test_the_passes_hold_the_workers_heap_and_give_it_back(client, binary_data, tmp_path):
    calls = []
    run = client.run

    def spy(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return run(fn, *args, **kwargs)

    client.run = spy
    try:
        prep = scaler.prepare(base_config(binary_data, str(tmp_path)), client=client)
        # with infinite values, the run stops between the two passes
        bad = tmp_path / "bad"
        bad.mkdir()
        df = pd.read_parquet(binary_data)
        df.loc[df.index[3], "x1"] = np.inf
        df.to_parquet(bad / "part-0.parquet")
        with pytest.raises(scaler.DataError, match="infinite"):
            scaler.prepare(base_config(str(bad), str(tmp_path / "o2")), client=client)
    finally:
        client.run = run
    assert calls.count("keep") == 2 and calls.count("_after_passes") == 2
    assert calls.index("keep") < calls.index("_after_passes")
    states = client.run(_heap_state).values()
    # Dask's nannies set the variable, so the settings were really changed and put back
    assert all(env == "65536" and held == 0 and not raised for held, raised, env in states)
    prep.release()


class _FakeWorker:
    def __init__(self, used, limit):
        self.memory_manager = type("M", (), {"memory_limit": limit})()
        self.monitor = type("Mon", (), {"get_process_memory": lambda _self: used})()


def test_memory_is_trimmed_only_on_workers_near_their_limit(monkeypatch):
    import gc

    from scaler import pipeline

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(1) or 0)
    gib = 2**30
    # 2M rows on 12 GiB workers: nothing to gain, skip the ~0.1 s full collection
    assert pipeline._trim_memory(_FakeWorker(int(0.7 * gib), 12 * gib)) == 0
    assert pipeline._trim_memory(_FakeWorker(int(0.7 * gib), 0)) == 0  # no limit
    assert calls == []
    # 20M rows on 3 GB workers: give freed memory back before training
    pipeline._trim_memory(_FakeWorker(int(1.5 * gib), 3 * gib))
    pipeline._trim_memory()  # called outside a worker: always trims
    assert calls == [1, 1]


def test_small_files_are_grouped_into_partitions_with_the_same_results(
    client, tmp_path, monkeypatch
):
    # 16 small files on 2 threads: read four to a partition (4 partitions, a
    # task each per pass instead of 16), with the same statistics and features.
    data = str(tmp_path / "data")
    with client.as_current():
        scaler.make_dataset(data, rows=8000, n_features=6, files=16, rank=3)
    cfg = base_config(data, str(tmp_path / "out"))
    lines = []
    grouped = scaler.prepare(cfg, client=client, progress=False, echo=lines.append)
    assert any("16 files in 4 partitions" in line for line in lines), lines
    assert grouped.parts["train"].npartitions == 4
    monkeypatch.setattr(scaler.storage, "PARTITION_BYTES", 1)  # every file is "large"
    lines.clear()
    one_each = scaler.prepare(cfg, client=client, progress=False, echo=lines.append)
    assert not any("partitions" in line for line in lines), lines
    assert one_each.parts["train"].npartitions == 16
    assert grouped.counts == one_each.counts
    a, b = grouped.preprocessor.scaler_pca, one_each.preprocessor.scaler_pca
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12)
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(_sorted_features(grouped), _sorted_features(one_each), rtol=1e-6)
    grouped.release()
    one_each.release()


@pytest.mark.parametrize("key_is_a_feature", [False, True])
def test_a_float_key_keeps_its_dtype_in_the_features(client, tmp_path, key_is_a_feature):
    """The passes read float columns Arrow-backed; a float key column comes
    out NumPy-backed, as declared in each part's meta (also when it is a
    feature too), and as a feature-cache hit restores it."""
    rng = np.random.default_rng(4)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        n = 400
        pd.DataFrame(
            {
                "id": np.arange(i * n, (i + 1) * n) + 0.5,
                "a": rng.normal(size=n).astype(np.float32),
                "b": rng.normal(size=n).astype(np.float32),
                "label": rng.integers(0, 2, n),
            }
        ).to_parquet(data / f"part-{i}.parquet", index=False)
    features = ["a", "b", "id"] if key_is_a_feature else ["a", "b"]
    cfg = base_config(str(data), str(tmp_path / "out"), preprocess={"pca": False})
    cfg["data"]["features"] = features
    cfg["preprocess"]["feature_cache"] = True
    for _ in range(2):  # a miss, then a hit
        prep = scaler.prepare(cfg, client=client, progress=False)
        for name, part in prep.parts.items():
            got = part.compute()
            assert got.dtypes["id"] == np.float64 == part._meta.dtypes["id"], name
            pd.testing.assert_series_equal(got.dtypes, part._meta.dtypes, check_names=False)
        prep.release()
