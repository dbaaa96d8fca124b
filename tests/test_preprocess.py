"""ScalePCA against scikit-learn's StandardScaler + PCA fitted in memory."""

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from scaler.errors import DataError
from scaler.preprocess import Moments, Preprocessor, ScalePCA, encode_categorical

RTOL = 1e-6


def make_x(n=3000, p=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) @ rng.normal(size=(4, p)) + 0.3 * rng.normal(size=(n, p))
    return x * np.linspace(0.1, 50, p) + np.linspace(-100, 1e4, p)  # far-from-zero means


def assert_matches(sp, x, k):
    ss = StandardScaler().fit(x)
    pca = PCA(n_components=k).fit(ss.transform(x))
    np.testing.assert_allclose(sp.mean_, ss.mean_, rtol=RTOL)
    np.testing.assert_allclose(sp.scale_, ss.scale_, rtol=RTOL)
    np.testing.assert_allclose(sp.var_, ss.var_, rtol=RTOL)
    assert sp.n_components_ == pca.n_components_
    np.testing.assert_allclose(
        sp.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=RTOL
    )
    np.testing.assert_allclose(sp.explained_variance_, pca.explained_variance_, rtol=RTOL)
    # components equal up to sign
    signs = np.sign(np.sum(sp.components_ * pca.components_, axis=1))
    np.testing.assert_allclose(sp.components_ * signs[:, None], pca.components_, atol=1e-6)
    return ss, pca


@pytest.mark.parametrize("k", [3, 12, 0.9])
def test_dask_dataframe_matches_sklearn(client, k):
    x = make_x()
    ddf = dd.from_pandas(
        pd.DataFrame(x, columns=[f"c{i}" for i in range(x.shape[1])]), npartitions=7
    )
    sp = ScalePCA(n_components=k).fit(ddf)
    ss, pca = assert_matches(sp, x, k)
    out = sp.transform(ddf).compute()
    assert list(out.columns) == [f"pc{i + 1}" for i in range(sp.n_components_)]
    ref = pca.transform(ss.transform(x))
    signs = np.sign(np.sum(sp.components_ * pca.components_, axis=1))
    np.testing.assert_allclose(out.to_numpy() * signs, ref, rtol=1e-4, atol=1e-4)  # float32 out


def test_dask_array_and_numpy(client):
    x = make_x(seed=1)
    sp_np = ScalePCA(n_components=4).fit(x)
    assert_matches(sp_np, x, 4)
    sp_da = ScalePCA(n_components=4).fit(da.from_array(x, chunks=(500, 6)))
    np.testing.assert_allclose(sp_da.components_, sp_np.components_, rtol=1e-9, atol=1e-12)
    got = sp_da.transform(da.from_array(x, chunks=(500, 6))).compute()
    np.testing.assert_allclose(got, sp_np.transform(x), rtol=1e-6)


def test_merge_order_does_not_matter():
    x = make_x(n=1000, seed=2)
    x[np.random.default_rng(0).random(x.shape) < 0.05] = np.nan
    whole = Moments.of(x)
    parts = [Moments.of(x[i : i + 97]) for i in range(0, 1000, 97)]
    acc = parts[-1]
    for m in reversed(parts[:-1]):
        acc = m.merge(acc)
    for m in (whole, acc):
        m2 = m.shifted(np.zeros(x.shape[1]))
        np.testing.assert_allclose(m2.s1, np.nansum(x, axis=0), rtol=1e-9)
    a = ScalePCA(n_components=5)._fit_moments(whole, None)
    b = ScalePCA(n_components=5)._fit_moments(acc, None)
    np.testing.assert_allclose(a.components_, b.components_, atol=1e-9)
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12)


def test_missing_values_match_sklearn_on_mean_imputed_data():
    x = make_x(seed=3)
    x[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan
    parts = [Moments.of(x[i : i + 400]) for i in range(0, len(x), 400)]
    m = parts[0]
    for p in parts[1:]:
        m = m.merge(p)
    sp = ScalePCA(n_components=4)._fit_moments(m, None)
    ss = StandardScaler().fit(x)  # ignores NaN, as ScalePCA does
    np.testing.assert_allclose(sp.mean_, ss.mean_, rtol=RTOL)
    np.testing.assert_allclose(sp.scale_, ss.scale_, rtol=RTOL)
    imputed = np.where(np.isnan(x), ss.mean_, x)
    pca = PCA(4).fit((imputed - ss.mean_) / ss.scale_)
    np.testing.assert_allclose(
        sp.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=RTOL
    )
    out = sp.transform(x)
    assert np.isfinite(out).all()


def test_zero_variance_column_gives_no_nan():
    x = make_x(seed=4)
    x[:, 2] = 3.25
    sp = ScalePCA(n_components=5).fit(x)
    assert sp.scale_[2] == 1.0
    assert sp.var_[2] == pytest.approx(0.0, abs=1e-12)
    assert_matches(sp, x, 5)
    assert np.isfinite(sp.transform(x)).all()
    sp2 = ScalePCA().fit(x)  # scaling only
    assert np.isfinite(sp2.transform(x)).all()


def test_infinite_and_all_missing_columns_are_named():
    x = make_x(n=200, p=4)
    x[5, 1] = np.inf
    with pytest.raises(DataError, match=r"\['b'\].*infinite"):
        ScalePCA(n_components=2)._fit_moments(Moments.of(x), ["a", "b", "c", "d"])
    x = make_x(n=200, p=4)
    x[:, 3] = np.nan
    with pytest.raises(DataError, match=r"\['d'\].*all missing"):
        ScalePCA(n_components=2)._fit_moments(Moments.of(x), ["a", "b", "c", "d"])


def test_too_many_components():
    with pytest.raises(DataError, match="at most 3"):
        ScalePCA(n_components=5).fit(make_x(p=3))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_n_components(bad):
    with pytest.raises(ValueError, match="n_components"):
        ScalePCA(n_components=bad).fit(make_x(p=3))


def test_incremental_method_uses_dask_ml_and_matches(client):
    x = make_x(n=2000, p=8, seed=5)
    ddf = dd.from_pandas(pd.DataFrame(x, columns=[f"c{i}" for i in range(8)]), npartitions=4)
    sp = ScalePCA(n_components=8, method="incremental", batch_size=500).fit(ddf)
    ss = StandardScaler().fit(x)
    pca = PCA(8).fit(ss.transform(x))
    np.testing.assert_allclose(sp.mean_, ss.mean_, rtol=RTOL)
    np.testing.assert_allclose(sp.scale_, ss.scale_, rtol=RTOL)
    # all components kept: incremental SVD is exact up to rounding
    np.testing.assert_allclose(
        sp.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=1e-5
    )
    signs = np.sign(np.sum(sp.components_ * pca.components_, axis=1))
    np.testing.assert_allclose(sp.components_ * signs[:, None], pca.components_, atol=1e-5)
    # missing values: dask-ml's scaler ignores them, its SVD does not; the
    # error names the columns instead of "SVD did not converge"
    x[::97, 3] = np.nan
    ddf = dd.from_pandas(pd.DataFrame(x, columns=[f"c{i}" for i in range(8)]), npartitions=4)
    with pytest.raises(DataError, match=r"\['c3'\] have missing values.*method='covariance'"):
        ScalePCA(n_components=3, method="incremental", batch_size=500).fit(ddf)


def test_state_round_trip_is_exact():
    x = make_x(seed=6)
    sp = ScalePCA(n_components=0.95).fit(x)
    again = ScalePCA.from_dict(sp.to_dict())
    np.testing.assert_array_equal(again.transform(x), sp.transform(x))
    meta, arrays = sp.get_state()
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert "components" in arrays and meta["n_components_fitted"] == sp.n_components_


def test_categorical_encoding_fixed_categories_and_unseen():
    s = pd.Series(["b", None, "a", "zzz"], dtype="str")
    cat = encode_categorical(s, ["a", "b"])
    assert list(cat.categories) == ["a", "b"]
    assert cat.codes.tolist() == [1, -1, 0, -1]  # unseen and missing -> missing
    num = pd.Series([1, 2, None]).astype("category")
    assert encode_categorical(num, ["1.0", "2.0"]).codes.tolist() == [0, 1, -1]


def test_preprocessor_frame_and_meta_agree():
    x = make_x(n=50, p=3)
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    df["s"] = pd.array(["u", "v"] * 25, dtype="str")
    sp = ScalePCA(n_components=2).fit(df[["a", "b", "c"]])
    pre = Preprocessor(["a", "b", "c"], ["s"], {"s": ["u", "v"]}, sp)
    out = pre.transform_frame(df)
    meta = pre.meta()
    assert list(out.columns) == list(meta.columns) == ["pc1", "pc2", "s"]
    assert (out.dtypes == meta.dtypes).all()


def test_variance_only_moments_match_full():
    x = make_x(n=900, seed=7)
    x[np.random.default_rng(2).random(x.shape) < 0.07] = np.nan
    parts = [Moments.of(x[i : i + 250], covariance=False) for i in range(0, 900, 250)]
    m = parts[0]
    for p in parts[1:]:
        m = m.merge(p)
    assert m.zz.ndim == 1
    lite = ScalePCA()._fit_moments(m, None)
    full = ScalePCA()._fit_moments(Moments.of(x), None)
    np.testing.assert_allclose(lite.mean_, full.mean_, rtol=1e-12)
    np.testing.assert_allclose(lite.var_, full.var_, rtol=1e-9)
    np.testing.assert_allclose(lite.var_, np.nanvar(x, axis=0), rtol=1e-9)


def direct_moments(x):
    """Mean, centred cross-products of the mean-imputed data and variances,
    straight in float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = np.nanmean(x, axis=0)
    z = np.where(np.isnan(x), 0.0, x - mean)
    return mean, z.T @ z, np.nanvar(x, axis=0)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 256 rows, so a few thousand rows make many blocks."""
    import scaler.preprocess as sp

    monkeypatch.setattr(sp, "BLOCK_BYTES", 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("missing", [0.0, 0.03])
def test_blocked_moments_equal_direct_float64(small_blocks, dtype, order, missing):
    x = make_x(n=3000, seed=8) + 1e6  # large offsets: the shift keeps the precision
    x[np.random.default_rng(3).random(x.shape) < missing] = np.nan
    x = np.asarray(x.astype(dtype), order=order)
    rows = np.flatnonzero(np.random.default_rng(4).random(len(x)) < 0.8)
    for sel, m, v in [
        (x, Moments.of(x), Moments.of(x, covariance=False)),
        (x[rows], Moments.of(x, rows=rows), Moments.of(x, rows=rows, covariance=False)),
    ]:
        mean, zz, var = direct_moments(sel)
        c = m.shifted(mean)
        np.testing.assert_allclose(m.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(c.zz, zz, rtol=1e-10, atol=1e-10 * np.abs(zz).max())
        np.testing.assert_allclose(v.shifted(mean).zz / v.count, var, rtol=1e-10)
        assert m.n == v.n == len(sel)
        np.testing.assert_array_equal(m.count, (~np.isnan(sel)).sum(axis=0))
        assert (m.zm is None) == (missing == 0.0)
        if missing:
            mask = np.isnan(sel).astype(np.float64)
            np.testing.assert_array_equal(c.mm, mask.T @ mask)
            zm = np.where(np.isnan(sel), 0.0, sel - mean).T @ mask
            np.testing.assert_allclose(c.zm, zm, rtol=1e-10, atol=1e-9 * np.abs(zm).max())
    # a boolean mask selects the same rows as their positions
    mask = np.zeros(len(x), dtype=bool)
    mask[rows] = True
    np.testing.assert_array_equal(Moments.of(x, rows=mask).zz, Moments.of(x, rows=rows).zz)


def test_blocked_moments_empty_single_row_and_integers(small_blocks):
    x = make_x(n=600, p=4)
    for m in (Moments.of(x[:0]), Moments.of(x, rows=np.array([], dtype=np.int64))):
        assert m.n == 0 and m.zz.shape == (4, 4) and not m.zz.any() and not m.count.any()
    assert Moments.of(x, rows=[], covariance=False).zz.shape == (4,)
    one = Moments.of(x, rows=[7])
    np.testing.assert_allclose(one.mean, x[7], rtol=1e-15)
    assert one.merge(Moments.of(x[:0])) is one
    ints = np.random.default_rng(5).integers(-(10**9), 10**9, size=(1000, 3))
    mean, zz, _ = direct_moments(ints)
    np.testing.assert_allclose(Moments.of(ints).shifted(mean).zz, zz, rtol=1e-10)
    with pytest.raises(IndexError):
        Moments.of(x, rows=[600])


def test_moments_recentre_when_the_first_block_is_far_from_the_mean(small_blocks):
    x = make_x(n=5000, p=4, seed=9)
    x[:1000, 2] = np.nan  # the first block says nothing about this column ...
    x[:, 2] += 1e8  # ... whose mean is far from 0 compared with its spread
    x[:300, 3] += 1e6  # and a first block far from the rest
    mean, zz, var = direct_moments(x)
    m = Moments.of(x)
    np.testing.assert_allclose(m.shifted(mean).zz, zz, rtol=1e-10)
    v = Moments.of(x, covariance=False)
    np.testing.assert_allclose(v.zz / v.count - (v.s1 / v.count) ** 2, var, rtol=1e-9)


def test_blocked_transform_matches_direct(small_blocks):
    x = make_x(n=2000, p=6, seed=10)
    sp = ScalePCA(n_components=3).fit(x)
    x[np.random.default_rng(6).random(x.shape) < 0.01] = np.nan
    x[5] = np.nan  # a whole row missing
    imputed = np.where(np.isnan(x), sp.mean_, x)
    want = ((imputed - sp.mean_) / sp.scale_) @ sp.components_.T
    for a in (x, x.astype(np.float32), np.asfortranarray(x), np.asfortranarray(x, np.float32)):
        got = sp.transform_array(a)
        assert got.dtype == np.float32 and got.shape == (2000, 3)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    scale_only = ScalePCA().fit(x)
    got = scale_only.transform_array(x)
    np.testing.assert_allclose(got, (x - scale_only.mean_) / scale_only.scale_, rtol=1e-6)
    assert np.isnan(got).sum() == np.isnan(x).sum()  # not imputed without PCA
    assert sp.transform_array(x[:0]).shape == (0, 3)


def test_transform_rows_equal_the_cut_of_the_whole_transform(small_blocks):
    x = make_x(n=2000, p=6, seed=11)
    x[np.random.default_rng(7).random(x.shape) < 0.01] = np.nan
    rng = np.random.default_rng(8)
    part = rng.integers(0, 3, len(x))
    rows = [np.flatnonzero(part == 0), None, np.flatnonzero(part == 2), np.array([], int)]
    for sp in (ScalePCA(n_components=3).fit(x), ScalePCA().fit(x), ScalePCA(scale=False).fit(x)):
        for a in (x, x.astype(np.float32), np.asfortranarray(x, np.float32)):
            whole = sp.transform_array(a)
            got = sp.transform_rows(a, rows)
            assert len(got) == 4
            for r, g in zip(rows, got, strict=True):
                want = whole if r is None else whole[r]
                assert g.dtype == np.float32
                # column-major (frame) data gives column-major parts: a frame's block
                assert g.flags.f_contiguous or not a.flags.f_contiguous
                # parts in order that cover every row: each row is transformed
                # in the block the whole transform puts it in, to the bit
                np.testing.assert_array_equal(g, want)
            # rows out of order are gathered: the same arithmetic, though a
            # row's place in a block may move the matrix product's last bit
            shuffled = rng.permutation(len(x))[:700]
            (got,) = sp.transform_rows(a, [shuffled])
            np.testing.assert_allclose(got, whole[shuffled], rtol=1e-6, atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        sp.transform_rows(x, [np.array([0, len(x)])])


@pytest.fixture
def small_gathers(small_blocks, monkeypatch):
    """Columns gather 700 rows of 6 float32 at a time (350 of float64): a
    gather spans pieces and blocks."""
    import scaler.preprocess as sp

    monkeypatch.setattr(sp, "GATHER_BYTES", 700 * 6 * 4)


def arrow_frame(x, chunks, names=None):
    """``x`` as a frame of Arrow-backed columns chunked at ``chunks`` rows
    (NaN as null), the way a Parquet read of several files has them."""
    import pyarrow as pa

    names = names or [f"c{j}" for j in range(x.shape[1])]
    bounds = np.cumsum([0, *chunks])
    assert bounds[-1] == len(x)
    cols = {
        n: pa.chunked_array(
            [
                pa.array(x[a:b, j], from_pandas=True)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ],
            type=pa.from_numpy_dtype(x.dtype),
        )
        for j, n in enumerate(names)
    }
    return pa.table(cols).to_pandas(types_mapper=pd.ArrowDtype), names


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_stand_in_for_the_array(small_gathers, dtype):
    from scaler.preprocess import Columns

    x = make_x(n=2000, p=6, seed=12).astype(dtype)
    missing = np.random.default_rng(9).random(x.shape) < 0.01
    missing[:700] = False  # nulls in the later chunks only
    x[missing] = np.nan
    df, names = arrow_frame(x, [700, 1, 0, 600, 699])
    cols = Columns.of_frame(df, names)
    assert cols is not None and cols.shape == x.shape and cols.dtype == dtype
    assert len(cols.pieces) == 4  # the empty chunk is skipped
    # a chunk without nulls is used in place, not copied
    for j, col in enumerate(cols.pieces[0]):
        data = df[names[j]].array.__arrow_array__().chunk(0).buffers()[1]
        assert col.ctypes.data == data.address
    rng = np.random.default_rng(10)
    part = rng.integers(0, 3, len(x))
    shuffled = rng.permutation(len(x))[:900]
    rows = [np.flatnonzero(part == 0), None, shuffled, np.array([], int), np.array([1300])]
    for r in rows:  # the same values in the same order: the same sums, to the bit
        for cov in (True, False):
            want, got = (
                Moments.of(x, rows=r, covariance=cov),
                Moments.of(cols, rows=r, covariance=cov),
            )
            for a, b in zip(
                (want.n, want.shift, want.count, want.s1, want.zz, want.zm, want.mm),
                (got.n, got.shift, got.count, got.s1, got.zz, got.zm, got.mm),
                strict=True,
            ):
                np.testing.assert_array_equal(a, b)
    fitted = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    for sp in (
        ScalePCA(n_components=3).fit(fitted),
        ScalePCA().fit(fitted),
        ScalePCA(scale=False).fit(fitted),
    ):
        want = sp.transform_rows(np.asfortranarray(x), rows)
        got = sp.transform_rows(cols, rows)
        for w, g in zip(want, got, strict=True):
            assert g.dtype == np.float32 and g.flags.f_contiguous
            np.testing.assert_array_equal(g, w)
    with pytest.raises(IndexError, match="out of range"):
        Moments.of(cols, rows=[2000])
    with pytest.raises(IndexError, match="out of range"):
        cols.to_array(np.array([0, 2000]))
    # the same positions array changed in place between calls: no stale rows
    r = np.arange(500)
    Moments.of(cols, rows=r)
    r[:] = np.arange(500, 1000)
    np.testing.assert_array_equal(Moments.of(cols, rows=r).s1, Moments.of(x, rows=r).s1)
    (got,) = sp.transform_rows(cols, [r])
    np.testing.assert_array_equal(got, sp.transform_rows(x, [r.copy()])[0])


def test_columns_of_other_frames(small_gathers):
    import pyarrow as pa

    from scaler.preprocess import Columns

    x = make_x(n=900, p=3, seed=13).astype(np.float32)
    df, names = arrow_frame(x, [900])
    # chunked at different rows: each column is joined into one piece
    other, _ = arrow_frame(x, [450, 450], names=["d0", "d1", "d2"])
    mixed = pd.concat([df[names[:2]], other[["d2"]]], axis=1)
    cols = Columns.of_frame(mixed, [*names[:2], "d2"])
    assert cols is not None and len(cols.pieces) == 1
    np.testing.assert_array_equal(cols.to_array(), x)
    np.testing.assert_array_equal(cols.to_array(np.array([5, 2, 800])), x[[5, 2, 800]])
    # not Arrow-backed floats of one dtype: None (the caller makes an array)
    assert Columns.of_frame(pd.DataFrame(x, columns=names), names) is None
    wide = df.assign(c0=df["c0"].astype(pd.ArrowDtype(pa.float64())))
    assert Columns.of_frame(wide, names) is None
    ints = pd.DataFrame({"i": pd.array([1, 2], dtype="int64[pyarrow]")})
    assert Columns.of_frame(ints, ["i"]) is None
    empty = Columns.of_frame(df.iloc[:0], names)
    assert empty is not None and empty.shape == (0, 3) and empty.to_array().shape == (0, 3)
    assert Moments.of(empty).n == 0
