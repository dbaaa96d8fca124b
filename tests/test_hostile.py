"""Hostile and broken input, one row per case: each gets a clear error that
names the file, column or key, or a documented handling with finite results."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import scaler
from scaler.errors import BundleError, ConfigError, DataError, InputError

N = 400


def frame(n=N, seed=0, p=4):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(p)})
    df["id"] = np.arange(n) + seed * n
    df["label"] = (df.x0 + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return df


def write(folder, *frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        f.to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def config(data_url, out_url, **sections):
    cfg = {
        "data": {"url": str(data_url), "target": "label", "key": "id"},
        "model": {"rounds": 5, "early_stopping": 0},
        "output": {"url": str(out_url)},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


# --------------------------------------------------------------- cases
def empty_file(d):
    write(d, frame(), frame(seed=1))
    (d / "part-9.parquet").write_bytes(b"")
    return {}, ("error", InputError, ["part-9.parquet"])


def truncated_file(d):
    write(d, frame(), frame(seed=1))
    f = d / "part-1.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return {}, ("error", InputError, ["part-1.parquet"])


def not_parquet(d):
    write(d, frame(), frame(seed=1))
    (d / "notes.parquet").write_text("this is not parquet\n")
    return {}, ("error", InputError, ["notes.parquet"])


def other_files_ignored(d):
    write(d, frame(), frame(seed=1))
    (d / "README.txt").write_text("a note beside the data\n")
    (d / "_SUCCESS").write_text("")
    return {}, ("ok", lambda r: r.counts["rows_read"] == 2 * N)


def schema_drift(d):
    a, b = frame(), frame(seed=1)
    b["x1"] = b["x1"].astype(str)
    write(d, a, b)
    return {}, ("error", InputError, ["x1"])


def all_nan_column(d):
    df = frame()
    df["x2"] = np.nan
    write(d, df)
    return {"preprocess": {"pca": 2}}, ("error", DataError, ["x2", "all missing"])


def constant_column(d):
    df = frame()
    df["x3"] = 7.0
    write(d, df)
    return {"preprocess": {"pca": 3}}, (
        "ok",
        lambda r: r.model.preprocessor.scaler_pca.scale_[3] == 1.0,
    )


def infinite_values(d):
    df = frame()
    df.loc[5, "x1"] = np.inf
    df.loc[9, "x1"] = -np.inf
    write(d, df)
    return {}, ("error", DataError, ["x1", "infinite"])


def infinite_values_without_scaling(d):
    df = frame()
    df.loc[5, "x1"] = np.inf
    write(d, df)
    return {"preprocess": {"scale": False}}, ("error", DataError, ["x1", "infinite"])


def mixed_type_column(d):
    df = frame()
    df["code"] = pd.array(["1", "two", "3.5", None] * (N // 4), dtype="str")
    write(d, df)
    return {}, ("ok", lambda r: r.model.preprocessor.categorical == ["code"])


def non_utf8_bytes(d):
    df = frame()
    df["raw"] = [b"\xff\xfe" if i % 2 else b"ok" for i in range(N)]
    write(d, df)
    return {}, (
        "ok",
        lambda r: sorted(r.model.preprocessor.categories["raw"]) == ["b'\\xff\\xfe'", "b'ok'"],
    )


def wide_table(d):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        rng.normal(size=(100, 5000)).astype(np.float32), columns=[f"c{i}" for i in range(5000)]
    )
    df["label"] = (df.c0 > 0).astype(np.int64)
    df["id"] = np.arange(100)
    write(d, df)
    return {"split": {"holdout": 0.3}}, ("ok", lambda r: len(r.model.feature_names) == 5000)


def zero_rows_after_filters(d):
    write(d, frame())
    return {"data": {"filters": [["x0", ">", 100.0]]}}, ("error", DataError, ["No rows", "filters"])


def wrong_type_in_config(d):
    write(d, frame())
    return {"model": {"rounds": "many"}}, ("error", ConfigError, ["rounds", "expected an int"])


CASES = {
    f.__name__: f
    for f in [
        empty_file,
        truncated_file,
        not_parquet,
        other_files_ignored,
        schema_drift,
        all_nan_column,
        constant_column,
        infinite_values,
        infinite_values_without_scaling,
        mixed_type_column,
        non_utf8_bytes,
        wide_table,
        zero_rows_after_filters,
        wrong_type_in_config,
    ]
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input(case, tmp_path, client):
    data, out = tmp_path / "data", tmp_path / "out"
    changes, expected = CASES[case](data)
    cfg = config(data, out, **changes)
    if expected[0] == "error":
        _, exc, words = expected
        with pytest.raises(exc) as e:
            scaler.run(cfg, client=client)
        for w in words:
            assert w in str(e.value), str(e.value)
        assert not out.exists(), "nothing may be written on bad input"
    else:
        result = scaler.run(cfg, client=client)
        assert expected[1](result)
        pred = pd.read_parquet(result.predictions_url)
        assert np.isfinite(pred.probability).all()  # never NaN predictions


# ------------------------------------------------------- scoring time
@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory, client):
    d = tmp_path_factory.mktemp("predict")
    df = frame(n=600)
    df["color"] = pd.array(["red", "blue", "green"] * 200, dtype="str")
    write(d / "data", df)
    result = scaler.run(config(d / "data", d / "out", preprocess={"pca": 2}), client=client)
    return result.model, df


def test_predict_ignores_extra_columns_and_column_order(model_and_data):
    model, df = model_and_data
    base = model.predict(df)
    shuffled = df[list(reversed(df.columns))].assign(extra=1.0, another="z")
    pd.testing.assert_frame_equal(model.predict(shuffled), base)


def test_predict_missing_feature_is_named(model_and_data):
    model, df = model_and_data
    with pytest.raises(DataError, match=r"\['x2'\]"):
        model.predict(df.drop(columns=["x2"]))


def test_predict_unseen_category_and_label_values(model_and_data):
    model, df = model_and_data
    new = df.head(50).copy()
    new["color"] = pd.array(["purple"] * 50, dtype="str")  # never seen: a missing value
    new["label"] = 7  # a class training never saw: the target is not used for scoring
    out = model.predict(new)
    assert np.isfinite(out.probability).all()
    assert set(out.prediction) <= {0, 1}


def test_predict_non_numeric_where_numeric_expected(model_and_data):
    model, df = model_and_data
    bad = df.assign(x1=df.x1.astype(str))
    with pytest.raises(DataError, match=r"x1.*numeric"):
        model.predict(bad)


def test_altered_bundle_and_pickle_are_refused(model_and_data, tmp_path):
    model, _ = model_and_data
    url = tmp_path / "b"
    scaler.save_bundle(model, str(url))
    vdir = url / json.loads((url / "manifest.json").read_text())["version_dir"]
    shutil.copy(vdir / "booster.ubj", tmp_path / "orig.ubj")
    raw = bytearray((tmp_path / "orig.ubj").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (vdir / "booster.ubj").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="altered"):
        scaler.load_bundle(str(url))
    shutil.copy(tmp_path / "orig.ubj", vdir / "booster.ubj")
    (vdir / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleError, match="model.pkl"):
        scaler.load_bundle(str(url))
