"""End-to-end runs on the shared cluster, checked against references."""

import json
import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn import metrics as skm
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

import scaler
from scaler.config import RunConfig
from scaler.pipeline import HOLDOUT, TRAIN, VALID, assign_split, resolve_columns

from .conftest import base_config


def read_pandas(url):
    return pd.read_parquet(url)


def split_of(df, cfg_dict):
    cfg = RunConfig.from_dict(cfg_dict)
    spec = resolve_columns(df.dtypes, cfg)
    return assign_split(df[spec.columns], spec), spec


def sklearn_reference(url, cfg_dict, n_components):
    """scikit-learn's StandardScaler and PCA(n_components) fitted on the
    training rows of the data at ``url``, as ``cfg_dict`` splits them."""
    raw = read_pandas(url)
    part, spec = split_of(raw, cfg_dict)
    x = raw.loc[part == TRAIN, list(spec.numeric)].to_numpy(dtype=np.float64)
    ss = StandardScaler().fit(x)
    return ss, PCA(n_components).fit(ss.transform(x))


def aligned(components, reference):
    """``components`` with each row's sign flipped to match ``reference``."""
    signs = np.sign(np.sum(components * reference, axis=1))
    return components * signs[:, None]


@pytest.fixture(scope="module")
def binary_run(client, binary_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("binary_run"))
    cfg = base_config(binary_data, out)
    return scaler.run(cfg, client=client), cfg


def test_binary_run_outputs(binary_run):
    result, cfg = binary_run
    c = result.counts
    assert c["rows_read"] == 6000 and c["missing_target_dropped"] == 0
    assert c["train"] + c["valid"] + c["holdout"] == 6000
    assert 0.15 < c["holdout"] / 6000 < 0.25
    assert set(result.metrics) == {"n", "auc", "logloss", "accuracy"}
    assert result.metrics["auc"] > 0.7  # a real signal was learned
    assert set(result.timings) >= {"scan", "transform", "train", "evaluate", "write", "total"}
    # region is a string column: encoded as a categorical feature
    pre = result.model.preprocessor
    assert pre.categorical == ["region"]
    assert pre.categories["region"] == ["east", "north", "south", "west"]
    assert result.model.feature_names == [f"pc{i}" for i in range(1, 6)] + ["region"]


def test_holdout_predictions_file_and_metrics_equal_sklearn(binary_run, binary_data):
    result, cfg = binary_run
    url = result.predictions_url
    assert os.path.exists(os.path.join(url, "_SUCCESS"))
    pred = pd.read_parquet(url)
    assert list(pred.columns) == ["id", "label", "prediction", "probability"]
    assert len(pred) == result.counts["holdout"] == result.metrics["n"]
    m = result.metrics
    assert m["auc"] == pytest.approx(skm.roc_auc_score(pred.label, pred.probability), rel=1e-6)
    assert m["logloss"] == pytest.approx(
        skm.log_loss(pred.label, y_proba=pred.probability.astype("float64")), rel=1e-6
    )
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(pred.label, pred.prediction), rel=1e-6)
    # the holdout rows are exactly those the split rule picks
    raw = read_pandas(binary_data)
    part, _ = split_of(raw, cfg)
    assert set(raw.id[part == HOLDOUT]) == set(pred.id)


def test_bundle_round_trip_predicts_identically(binary_run, binary_data, client):
    result, _ = binary_run
    loaded = scaler.load_bundle(result.bundle_url)
    raw = read_pandas(binary_data)
    a = result.model.predict(raw)
    b = loaded.predict(raw)
    pd.testing.assert_frame_equal(a, b)
    # the same through Dask, partition by partition
    c = loaded.predict(dd.read_parquet(binary_data)).compute()
    np.testing.assert_array_equal(
        c.sort_values("id").probability.to_numpy(), a.sort_values("id").probability.to_numpy()
    )
    manifest = json.load(open(os.path.join(result.bundle_url, "manifest.json")))
    assert manifest["versions"]["xgboost"] == xgboost.__version__
    assert manifest["feature_names"] == result.model.feature_names
    assert manifest["metrics"]["auc"] == pytest.approx(result.metrics["auc"])
    assert {"scan", "train", "total"} <= set(manifest["timings"])
    assert {c["name"] for c in manifest["input_columns"]} == {f"f{i:02d}" for i in range(12)} | {
        "region"
    }


def test_predict_reads_small_files_several_to_a_partition(
    binary_run, binary_data, tmp_path, client
):
    import glob

    result, _ = binary_run
    raw = read_pandas(binary_data)
    many = tmp_path / "many"
    many.mkdir()
    for i, a in enumerate(range(0, len(raw), 750)):  # 8 files of 750 rows
        raw.iloc[a : a + 750].to_parquet(many / f"part-{i:05d}.parquet", index=False)
    out = tmp_path / "scored"
    res = scaler.predict(result.bundle_url, str(many), str(out), client=client)
    assert res.rows == len(raw)
    # 2 single-thread workers: 4 partitions of 2 files, one output file each
    assert len(glob.glob(str(out / "**" / "*.parquet"), recursive=True)) == 4
    with client.as_current():
        back = scaler.read_dataset(str(out)).compute().reset_index(drop=True)
    expected = result.model.predict(raw).reset_index(drop=True)
    np.testing.assert_array_equal(back["id"].to_numpy(), raw["id"].to_numpy())  # in order
    np.testing.assert_allclose(back["probability"], expected["probability"], rtol=1e-6)


def test_distributed_training_matches_single_process_xgboost(binary_run, binary_data):
    """Same transformed rows and parameters, trained by plain xgboost.train."""
    result, cfg = binary_run
    raw = read_pandas(binary_data)
    part, spec = split_of(raw, cfg)
    feats = result.model.preprocessor.transform_frame(raw)
    y = raw.label.to_numpy()
    params = dict(result.model.info["params"])
    rounds = result.model.booster.num_boosted_rounds()
    dtrain = xgboost.QuantileDMatrix(
        feats[part == TRAIN], y[part == TRAIN], enable_categorical=True
    )
    local = xgboost.train(params, dtrain, num_boost_round=rounds)
    ho = part == HOLDOUT
    p_local = local.predict(xgboost.DMatrix(feats[ho], enable_categorical=True))
    auc_local = skm.roc_auc_score(y[ho], p_local)
    assert abs(auc_local - result.metrics["auc"]) < 0.01
    # Histogram cut points come from a merged distributed sketch, so trees
    # differ slightly; the models must still agree closely row by row.
    p_dist = result.model.booster.inplace_predict(feats[ho])
    assert np.corrcoef(p_local, p_dist)[0, 1] > 0.95


def test_trained_booster_predicts_with_every_core_it_may_use(binary_run):
    # training pins nthread to each worker's threads; the returned booster
    # must not keep that (nthread 0: all cores the process may use)
    import json
    import pickle

    result, _ = binary_run
    conf = json.loads(result.model.booster.save_config())
    assert conf["learner"]["generic_param"]["nthread"] == "0"
    # what Dask tasks get: one thread each (they run side by side on the
    # worker's threads), kept through pickling, the caller's model untouched
    shipped = pickle.loads(pickle.dumps(result.model._for_tasks()))
    conf = json.loads(shipped.booster.save_config())
    assert conf["learner"]["generic_param"]["nthread"] == "1"
    conf = json.loads(result.model.booster.save_config())
    assert conf["learner"]["generic_param"]["nthread"] == "0"
    raw = pd.read_parquet(result.config.data.url).head(300)
    pd.testing.assert_frame_equal(shipped.score_frame(raw), result.model.score_frame(raw))


def test_pipeline_preprocessing_matches_sklearn_on_training_rows(client, clean_data, tmp_path):
    cfg = base_config(clean_data, str(tmp_path), preprocess={"pca": 0.9}, model={"rounds": 5})
    result = scaler.run(cfg, client=client)
    ss, pca = sklearn_reference(clean_data, cfg, 0.9)
    sp = result.model.preprocessor.scaler_pca
    np.testing.assert_allclose(sp.mean_, ss.mean_, rtol=1e-6)
    np.testing.assert_allclose(sp.scale_, ss.scale_, rtol=1e-6)
    assert sp.n_components_ == pca.n_components_
    np.testing.assert_allclose(
        sp.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=1e-6
    )
    np.testing.assert_allclose(aligned(sp.components_, pca.components_), pca.components_, atol=1e-6)


def test_incremental_method_in_a_run(client, clean_data, binary_data, tmp_path):
    """[preprocess] method = "incremental" fits dask-ml's StandardScaler and
    IncrementalPCA on the training rows; with missing values there, the
    run stops before fitting with an error that names the columns."""
    pre = {"pca": 3, "method": "incremental", "batch_size": 1000}
    cfg = base_config(clean_data, str(tmp_path / "a"), preprocess=pre, model={"rounds": 5})
    result = scaler.run(cfg, client=client)
    ss, pca = sklearn_reference(clean_data, cfg, 3)
    sp = result.model.preprocessor.scaler_pca
    np.testing.assert_allclose(sp.mean_, ss.mean_, rtol=1e-6)
    np.testing.assert_allclose(sp.scale_, ss.scale_, rtol=1e-6)
    # incremental SVD keeps 3 directions per batch: close, not exact
    np.testing.assert_allclose(
        sp.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=1e-2
    )
    got = aligned(sp.components_, pca.components_)
    np.testing.assert_allclose(got[:2], pca.components_[:2], atol=1e-3)
    out = tmp_path / "b"
    cfg = base_config(binary_data, str(out), preprocess=pre, model={"rounds": 5})
    with pytest.raises(scaler.DataError, match=r"f\d\d.*missing values.*method = \"covariance\""):
        scaler.run(cfg, client=client)
    assert not out.exists() or not any(out.iterdir())


def test_the_passes_over_the_data_read_floats_in_place(client, binary_data):
    """The frames the scan and the transform read keep float features in
    the Arrow buffers the Parquet reader decoded (no NumPy copy of them),
    and every other column as a default read has it."""
    import scaler.pipeline as pl
    from scaler.preprocess import Columns

    cfg = RunConfig.from_dict(base_config(binary_data, "unused"))
    df, spec, info = pl._read(cfg)
    assert not any(isinstance(t, pd.ArrowDtype) for t in df.dtypes)
    passes, _ = pl._grouped(cfg, info["file_bytes"], client)
    src = passes.map_partitions(pl.with_split, spec, meta=pl.with_split(passes._meta, spec))
    part = src.partitions[0].compute()
    assert all(isinstance(part.dtypes[c], pd.ArrowDtype) for c in spec.numeric)
    for c in [c for c in df.columns if c not in spec.numeric]:
        assert part.dtypes[c] == df.dtypes[c], c
    np.testing.assert_array_equal(part[pl.PART], assign_split(part, spec))
    cols = Columns.of_frame(part, list(spec.numeric))
    assert cols is not None and cols.shape == (len(part), len(spec.numeric))
    want = part[list(spec.numeric)].to_numpy(dtype=cols.dtype, na_value=np.nan)
    assert np.isnan(want).any()  # missing values: NaN in the columns too
    np.testing.assert_array_equal(cols.to_array(), want)


def test_split_is_independent_of_partitioning(binary_data):
    raw = read_pandas(binary_data)
    cfg = base_config(binary_data, "unused")
    whole, spec = split_of(raw, cfg)
    pieces = np.concatenate(
        [assign_split(raw[spec.columns].iloc[i : i + 701], spec) for i in range(0, len(raw), 701)]
    )
    np.testing.assert_array_equal(whole, pieces)
    shuffled = raw.sample(frac=1.0, random_state=3)
    again = pd.Series(assign_split(shuffled[spec.columns], spec), index=shuffled.index).sort_index()
    np.testing.assert_array_equal(whole, again.to_numpy())
    cfg["split"]["seed"] = 1
    other, _ = split_of(raw, cfg)
    assert (other != whole).mean() > 0.1  # a different seed gives a different split
    assert {TRAIN, VALID, HOLDOUT} == set(np.unique(whole))


def test_split_without_key_uses_row_values(binary_data):
    raw = read_pandas(binary_data)
    cfg = base_config(binary_data, "unused")
    cfg["data"]["key"] = None
    del cfg["data"]["key"]
    a, spec = split_of(raw, cfg)
    b = np.concatenate(
        [assign_split(raw[spec.columns].iloc[i : i + 999], spec) for i in range(0, len(raw), 999)]
    )
    np.testing.assert_array_equal(a, b)
    assert 0.15 < (a == HOLDOUT).mean() < 0.25
    # the passes over the data read floats Arrow-backed: the same hashes
    import pyarrow as pa

    from scaler.storage import _arrow_float

    arrow = pa.Table.from_pandas(raw[spec.columns]).to_pandas(types_mapper=_arrow_float)
    assert any(isinstance(t, pd.ArrowDtype) for t in arrow.dtypes)
    np.testing.assert_array_equal(assign_split(arrow, spec), a)


def test_multiclass(client, multiclass_data, tmp_path):
    cfg = base_config(
        multiclass_data,
        str(tmp_path),
        model={"objective": "multi:softprob"},
        preprocess={"pca": False},
    )
    result = scaler.run(cfg, client=client)
    assert result.model.classes == [0, 1, 2]
    pred = pd.read_parquet(result.predictions_url)
    cols = ["proba_0", "proba_1", "proba_2"]
    assert list(pred.columns) == ["id", "label", "prediction", *cols]
    proba = pred[cols].to_numpy(dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 sums are 1 to ~1e-7
    assert result.metrics["logloss"] == pytest.approx(
        skm.log_loss(pred.label, y_proba=proba, labels=[0, 1, 2]), rel=1e-6
    )
    assert result.metrics["accuracy"] == pytest.approx(
        skm.accuracy_score(pred.label, pred.prediction), rel=1e-6
    )
    assert result.metrics["accuracy"] > 0.5


def test_regression_and_missing_targets(client, regression_data, tmp_path):
    raw = read_pandas(regression_data)
    raw.loc[raw.index[::50], "label"] = np.nan  # 100 rows without a target
    data = tmp_path / "data"
    data.mkdir()
    for i, start in enumerate(range(0, len(raw), 2000)):
        raw.iloc[start : start + 2000].to_parquet(data / f"p{i}.parquet", index=False)
    cfg = base_config(str(data), str(tmp_path / "out"), model={"objective": "reg:squarederror"})
    result = scaler.run(cfg, client=client)
    assert result.counts["missing_target_dropped"] == 100
    assert result.counts["rows_read"] == 5000
    pred = pd.read_parquet(result.predictions_url)
    m = result.metrics
    assert m["rmse"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(pred.label, pred.prediction)), rel=1e-6
    )
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(pred.label, pred.prediction), rel=1e-6)
    assert m["r2"] == pytest.approx(skm.r2_score(pred.label, pred.prediction), rel=1e-6)
    assert m["r2"] > 0.3


def test_random_forest_mode(client, clean_data, tmp_path):
    cfg = base_config(clean_data, str(tmp_path), model={"kind": "random_forest", "rounds": 8})
    result = scaler.run(cfg, client=client)
    booster = result.model.booster
    assert booster.num_boosted_rounds() == 1
    assert len(booster.get_dump()) == 8  # 8 parallel trees in one round
    assert result.model.info["params"]["num_parallel_tree"] == 8
    assert result.metrics["auc"] > 0.65


def test_early_stopping_cuts_to_best_round(client, clean_data, tmp_path):
    cfg = base_config(
        clean_data,
        str(tmp_path),
        model={
            "rounds": 300,
            "early_stopping": 3,
            "params": {"max_depth": 6, "learning_rate": 0.5},
        },
    )
    result = scaler.run(cfg, client=client)
    best = result.model.info["best_iteration"]
    assert best is not None and best < 299
    assert result.model.booster.num_boosted_rounds() == best + 1
    hist = result.model.info["history"]
    assert set(hist) == {"train", "valid"}
    assert len(hist["valid"]["logloss"]) == best + 4  # stopped 3 rounds after the best


def test_string_target_and_filters_on_hive_partitions(client, tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame(
        {
            "month": np.repeat([1, 2, 3], n // 3),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
        }
    )
    df["churn"] = np.where(df.a + 0.5 * rng.normal(size=n) > 0, "yes", "no")
    df["churn"] = df["churn"].astype("str")
    df.to_parquet(tmp_path / "tree", partition_cols=["month"], index=False)
    cfg = {
        "data": {
            "url": str(tmp_path / "tree"),
            "target": "churn",
            "filters": [["month", "in", [1, 2]]],
            "exclude": ["month"],
        },
        "model": {"rounds": 10},
        "output": {"url": str(tmp_path / "out")},
    }
    result = scaler.run(cfg, client=client)
    assert result.counts["rows_read"] == 2000  # month 3 pruned
    assert result.model.classes == ["no", "yes"]
    pred = pd.read_parquet(result.predictions_url)
    assert set(pred.prediction) <= {"no", "yes"}
    assert result.metrics["auc"] > 0.8


def test_split_draws_compare_exactly_as_floats():
    from scaler.pipeline import _below, _mix

    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**64, size=5000, dtype=np.uint64)
    z = h + np.uint64((7 * 0x9E3779B97F4A7C15) % 2**64)  # splitmix64, step by step
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    np.testing.assert_array_equal(_mix(h, 7), z ^ (z >> np.uint64(31)))
    k = np.concatenate([_mix(h, 7) >> np.uint64(11), np.array([0, 1, 2**53 - 1], np.uint64)])
    u = k.astype(np.float64) * 2.0**-53
    cuts = [0.0, -0.5, np.nan, 5e-324, 1e-300, 0.2, 0.5, 1 - 2**-53, 1.0, 1.5, np.inf]
    cuts += [float(v) for v in u[:20]] + [float(np.nextafter(v, 2)) for v in u[:20]]
    for cut in cuts:
        np.testing.assert_array_equal(k < _below(cut), u < cut, err_msg=str(cut))


def test_scan_partition_moments_equal_direct(monkeypatch):
    import scaler.pipeline as pl

    monkeypatch.setattr(pl, "SCAN_BLOCK_ROWS", 700)  # several slices per partition
    rng = np.random.default_rng(1)
    n = 3000
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "label": rng.integers(0, 2, n).astype(np.float64),
            "f32": (rng.normal(size=n) + 1e4).astype(np.float32),
            "f64": rng.normal(size=n) * 1e3 + 1e9,
            "i64": rng.integers(-5, 5, n),
            "i8": rng.integers(-5, 5, n).astype(np.int8),
            "flag": rng.random(n) < 0.3,
            "nullable": pd.array(
                np.where(rng.random(n) < 0.1, None, rng.integers(0, 100, n)), dtype="Int64"
            ),
        }
    )
    df.loc[rng.random(n) < 0.05, "f64"] = np.nan
    df.loc[rng.random(n) < 0.02, "label"] = np.nan  # rows without a target are dropped
    for pca in (5, False):
        cfg = RunConfig.from_dict(base_config("unused", "unused", preprocess={"pca": pca}))
        spec = resolve_columns(df.dtypes, cfg)
        assert spec.covariance == (pca is not False)
        kept = df[df["label"].notna()]
        train = kept[assign_split(kept, spec) == TRAIN][list(spec.numeric)]
        x = train.to_numpy(dtype=np.float64, na_value=np.nan)
        mean = np.nanmean(x, axis=0)
        z = np.where(np.isnan(x), 0.0, x - mean)
        scan = pl.scan_partition(df, spec)
        assert scan.missing_target == n - len(kept) and scan.parts[TRAIN] == len(train)
        m = scan.moments.shifted(mean)
        np.testing.assert_allclose(scan.moments.mean, mean, rtol=1e-12)
        np.testing.assert_array_equal(m.count, (~np.isnan(x)).sum(axis=0))
        want = z.T @ z if spec.covariance else (z * z).sum(axis=0)
        np.testing.assert_allclose(m.zz, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
        pieces = [pl.scan_partition(df.iloc[i : i + 1100], spec) for i in range(0, n, 1100)]
        merged = pieces[0].merge(pieces[1]).merge(pieces[2])
        np.testing.assert_allclose(merged.moments.shifted(mean).zz, want, rtol=1e-9)
        # the split part computed once with the read (all rows, before rows
        # without a target are dropped) is the part each pass would compute
        held = pl.with_split(df, spec)
        np.testing.assert_array_equal(held[pl.PART][df["label"].notna()], assign_split(kept, spec))
        again = pl.scan_partition(held, spec)
        np.testing.assert_array_equal(again.parts, scan.parts)
        np.testing.assert_array_equal(again.moments.zz, scan.moments.zz)
        for none in (df.iloc[:0], df[assign_split(df, spec) == HOLDOUT]):  # no training rows
            empty = pl.scan_partition(none, spec).moments
            assert empty.n == 0 and not empty.zz.any()
            assert scan.merge(pl.scan_partition(none, spec)).moments.n == scan.moments.n


@pytest.mark.parametrize("task", ["binary", "regression"])
@pytest.mark.parametrize("backend", ["numpy", "arrow", "arrow-mixed"])
def test_featurize_split_equals_the_featurized_partition_cut(task, backend, monkeypatch):
    """Each split part is transformed straight into its own frame: the same
    frames (values, dtypes, index, columns) as featurizing the whole
    partition and cutting it, and the same bin-edge sample. A partition
    read with Arrow-backed floats (as the passes over the data read it)
    gives the same frames as a NumPy-backed one: through
    :class:`scaler.preprocess.Columns` when its features are floats of one
    dtype ("arrow"), through a 2-D array otherwise ("arrow-mixed")."""
    import pyarrow as pa

    import scaler.pipeline as pl
    import scaler.preprocess as pp
    from scaler.preprocess import Preprocessor, ScalePCA
    from scaler.storage import _arrow_float

    monkeypatch.setattr(pp, "BLOCK_BYTES", 1)  # many blocks per part
    monkeypatch.setattr(pp, "GATHER_BYTES", 700 * 3 * 4)  # 700 rows per gather of 3 float32
    rng = np.random.default_rng(3)
    n = 4000
    df = pd.DataFrame(
        {
            "id": np.arange(n) * 7,
            "label": rng.integers(0, 2, n).astype(float)
            if task == "binary"
            else rng.normal(size=n),
            "a": rng.normal(size=n).astype(np.float32),
            "b": (rng.normal(size=n) * 10 + 3).astype(np.float32 if backend == "arrow" else float),
            "c": rng.integers(0, 9, n).astype(np.float32),
            "color": pd.Series(rng.choice(["red", "green", "blue"], n), dtype="str"),
        },
        index=pd.RangeIndex(100, 100 + n),
    )
    df.loc[rng.random(n) < 0.03, "b"] = np.nan
    df.loc[rng.random(n) < 0.02, "label"] = np.nan  # dropped
    objective = "binary:logistic" if task == "binary" else "reg:squarederror"
    model = {"valid_fraction": 0.1, "objective": objective}
    cfg = RunConfig.from_dict(base_config("unused", "unused", model=model, preprocess={"pca": 2}))
    assert cfg.task == task
    spec = resolve_columns(df.dtypes, cfg)
    assert list(spec.numeric) == ["a", "b", "c"] and list(spec.categorical) == ["color"]
    held = pl.with_split(df, spec)
    scan = pl.scan_partition(held, spec)
    sp = ScalePCA(n_components=2)._fit_moments(scan.moments, list(spec.numeric))
    pre = Preprocessor(list(spec.numeric), ["color"], {"color": ["blue", "red"]}, sp)
    classes = [0.0, 1.0] if task == "binary" else []
    codes = (TRAIN, VALID, HOLDOUT)
    whole = pl.featurize_partition(held, spec, pre, classes)
    want = pl._split_rows(whole, codes, 0.05, pre.output_columns)
    if backend != "numpy":  # three chunks per column, as from three files
        table = pa.Table.from_pandas(df)
        thirds = [table.slice(0, 1500), table.slice(1500, 1), table.slice(1501)]
        read = pa.concat_tables(thirds).to_pandas(types_mapper=_arrow_float)
        assert isinstance(read.dtypes["a"], pd.ArrowDtype)
        arrow_held = pl.with_split(read, spec)
        # the label becomes NumPy-backed again; the features stay in Arrow
        assert arrow_held.dtypes["label"] == np.float64
        assert isinstance(arrow_held.dtypes["b"], pd.ArrowDtype)
        used = pp.Columns.of_frame(arrow_held, list(spec.numeric))
        assert (used is not None) == (backend == "arrow")
        arrow_scan = pl.scan_partition(arrow_held, spec)
        np.testing.assert_allclose(arrow_scan.moments.zz, scan.moments.zz, rtol=1e-12)
        assert arrow_scan.classes == scan.classes and (arrow_scan.parts == scan.parts).all()
        held = arrow_held
    got = pl.featurize_split(held, spec, pre, classes, codes, 0.05)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g, w, check_exact=True)  # the same blocks, to the bit
    assert sorted(len(g) for g in got[:3]) != [0, 0, len(whole)]  # every part has rows
    # a partition of one part only: that part is the whole frame, the others empty
    only = held[held[pl.PART] == HOLDOUT]
    got = pl.featurize_split(only, spec, pre, classes, (HOLDOUT, TRAIN))
    pd.testing.assert_frame_equal(got[0], pl.featurize_partition(only, spec, pre, classes))
    assert len(got[1]) == 0 and list(got[1].columns) == list(got[0].columns)


@pytest.mark.parametrize("name", ["__part__", "__label__"])
def test_a_column_with_an_internal_name_is_refused(name):
    cols = {"id": "int64", "x1": "float64", "x2": "float64", name: "int8", "label": "int64"}
    dtypes = pd.Series({c: np.dtype(t) for c, t in cols.items()})
    pca = {"pca": 2}
    cfg = RunConfig.from_dict(base_config("data/", "out/", preprocess=pca))
    with pytest.raises(scaler.DataError, match=f"{name}.*internally.*exclude"):
        resolve_columns(dtypes, cfg)
    cfg = RunConfig.from_dict(
        base_config("data/", "out/", preprocess=pca, data={"exclude": [name]})
    )
    assert name not in resolve_columns(dtypes, cfg).columns
