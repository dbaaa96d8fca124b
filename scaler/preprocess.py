"""Scaling and PCA as one fitted object, plus the column handling around it.

The default ``method="covariance"`` makes one lazy pass over the data: each
partition yields its count, sums and cross-products (in float64, shifted by
its own mean for accuracy, with missing values tracked), partitions merge
pairwise in a tree, and the eigendecomposition of the small p x p covariance
gives the components. The result equals scikit-learn's ``StandardScaler``
followed by ``PCA`` fitted in memory. ``method="incremental"`` uses dask-ml's
``StandardScaler`` and ``IncrementalPCA`` over batches instead.

Missing numeric values are ignored by the scaling statistics (as
scikit-learn does). Without PCA they reach XGBoost as missing values; with
PCA they are imputed with the column mean before projection (PCA needs
complete rows), and the covariance is that of the imputed data.

The maths here is pure NumPy; nothing touches storage.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scaler.errors import DataError

__all__ = ["ScalePCA", "Moments", "Preprocessor", "encode_categorical"]

STATE_VERSION = 1

# ---------------------------------------------------------------- scratch
# The per-partition kernels go through the rows in blocks of about this many
# bytes (as float64), in buffers each thread reuses: a large temporary is a
# fresh mmap (Dask workers pin glibc's mmap threshold at 128 KiB), whose page
# faults and unmapping cost more than the arithmetic.
BLOCK_BYTES = 1 << 21
_SCRATCH = threading.local()


def _scratch(name: str, size: int, dtype: Any) -> np.ndarray:
    """A flat buffer of ``size`` items, reused by this thread across calls.
    Never return it (or a view of it) beyond the kernels of this module
    (:meth:`Columns.block` hands them views, valid until its next call)."""
    dtype = np.dtype(dtype)
    key = f"{name}_{dtype.str}"
    buf = getattr(_SCRATCH, key, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        setattr(_SCRATCH, key, buf)
    return buf[:size]


def _block_rows(width: int) -> int:
    """Rows per block for ``width`` float64 values per row."""
    return max(256, BLOCK_BYTES // (8 * max(width, 1)))


# --------------------------------------------------------------------- moments
@dataclass
class Moments:
    """Mergeable second-order statistics of a block of rows.

    All sums are of ``Y = X - shift`` with missing entries set to 0; ``zm``
    and ``mm`` are ``Z^T M`` and ``M^T M`` for the missing mask ``M`` (None
    when nothing is missing), which keeps the algebra exact when the shift
    moves and when the missing entries are later imputed with the mean.
    """

    n: int
    shift: np.ndarray
    count: np.ndarray
    s1: np.ndarray
    zz: np.ndarray
    zm: np.ndarray | None = None
    mm: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        x: np.ndarray | Columns,
        *,
        rows: np.ndarray | None = None,
        covariance: bool = True,
        overwrite: bool = False,
    ) -> Moments:
        """Moments of the rows of ``x`` (2-D, any numeric dtype, NaN = missing;
        or :class:`Columns`), or of ``x[rows]`` only (``rows``: integer
        positions or a boolean mask).

        With ``covariance=False`` only the variances are kept (``zz`` is the
        diagonal, 1-D): enough for scaling, O(p) instead of O(p^2).

        The rows go through a float64 buffer a block at a time (``x`` is
        never copied whole, converted whole or modified; ``overwrite`` is
        accepted for compatibility). The sums are taken around the mean of
        the first block; when the mean of all rows turns out far from it
        compared with the spread of a column (which would cost precision in
        the cross-products), a second pass uses the overall mean."""
        del overwrite
        if not isinstance(x, Columns):
            x = np.asarray(x)
            if x.ndim != 2:
                raise ValueError(f"Moments.of needs a 2-D array, got shape {x.shape}")
            if x.dtype.kind not in "biuf":
                x = x.astype(np.float64)
        x, idx = _positions(x, rows)
        n = x.shape[0] if idx is None else idx.shape[0]
        p = x.shape[1]
        if n == 0:
            zz = np.zeros((p, p)) if covariance else np.zeros(p)
            return cls(0, np.zeros(p), np.zeros(p, dtype=np.int64), np.zeros(p), zz)
        shift = None
        for _ in range(2):
            sums = _BlockSums(p, covariance)
            for a in range(0, n, sums.block):
                src = _rows_block(x, idx, a, min(n, a + sums.block))
                shift = sums.add(src, shift)
            assert shift is not None
            m = sums.moments(n, shift)
            far = m._far_from_shift()
            if far is None:
                return m
            shift = far  # the overall mean: one more pass around it
        return m

    def _far_from_shift(self) -> np.ndarray | None:
        """The mean, when it is far from ``shift`` compared with the spread
        of some column (the sums around ``shift`` then lose precision to
        cancellation); None otherwise."""
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            d = self.s1 / self.count
            sq = (self.zz if self.zz.ndim == 1 else np.diag(self.zz)) / self.count
            var = sq - d * d
            far = np.isfinite(d) & np.isfinite(var) & (d * d > _RECENTRE * var)
        if not far.any():
            return None
        return np.where(np.isfinite(d), self.shift + d, self.shift)

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shift + self.s1 / self.count

    def shifted(self, new_shift: np.ndarray) -> Moments:
        """The same statistics expressed around ``new_shift``."""
        d = self.shift - new_shift
        if self.zz.ndim == 1:  # variances only: missing entries stay 0
            with np.errstate(invalid="ignore", over="ignore"):
                zz = self.zz + 2 * d * self.s1 + d * d * self.count
                s1 = self.s1 + self.count * d
            return Moments(self.n, np.array(new_shift, dtype=np.float64), self.count, s1, zz)
        p = d.shape[0]
        zm = self.zm if self.zm is not None else np.zeros((p, p))
        mm = self.mm if self.mm is not None else np.zeros((p, p))
        missing = (self.n - self.count).astype(np.float64)
        a = self.s1[:, None] - zm  # Z^T W, W = 1 - M
        ww = self.n - missing[:, None] - missing[None, :] + mm  # W^T W
        with np.errstate(invalid="ignore", over="ignore"):  # inf data is reported later
            ad = a * d[None, :]
            zz = self.zz + ad + ad.T + d[:, None] * ww * d[None, :]
            s1 = self.s1 + self.count * d
        new_zm = None
        if self.zm is not None:
            new_zm = zm + d[:, None] * (missing[None, :] - mm)
        return Moments(
            self.n, np.array(new_shift, dtype=np.float64), self.count, s1, zz, new_zm, self.mm
        )

    def merge(self, other: Moments) -> Moments:
        """Statistics of the union of both blocks' rows."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        total = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            target = (self.count * self.mean + other.count * other.mean) / total
        target = np.where(total > 0, target, 0.0)
        target = np.where(np.isfinite(target), target, self.shift)
        a, b = self.shifted(target), other.shifted(target)
        zm = mm = None
        if a.zm is not None or b.zm is not None:
            p = target.shape[0]
            zm = (a.zm if a.zm is not None else 0) + (
                b.zm if b.zm is not None else np.zeros((p, p))
            )
            mm = (a.mm if a.mm is not None else 0) + (
                b.mm if b.mm is not None else np.zeros((p, p))
            )
        return Moments(a.n + b.n, target, total, a.s1 + b.s1, a.zz + b.zz, zm, mm)

    @classmethod
    def empty(cls, p: int) -> Moments:  # noqa: D102
        return cls(0, np.zeros(p), np.zeros(p, dtype=np.int64), np.zeros(p), np.zeros((p, p)))


# Re-centre when the squared distance of the mean from the shift exceeds this
# many variances: the cross-products then keep at least ~14 of 16 digits.
# (The first block's mean is within sqrt(n / block) standard deviations of
# the mean of n complete rows, so this only happens with missing values or
# very skewed row orders.)
_RECENTRE = 16.0


def _positions(x: Any, rows: Any) -> tuple[Any, np.ndarray | None]:
    """``rows`` of the 2-D ``x`` (integer positions or a boolean mask; None:
    every row) as checked integer positions, and ``x`` in a layout
    :func:`_rows_block` gathers from (a copy only when ``x`` is neither
    row- nor column-major)."""
    if rows is None:
        return x, None
    idx = np.asarray(rows)
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.intp, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[0]):
        raise IndexError(f"row positions out of range for {x.shape[0]} rows")
    if isinstance(x, Columns):  # a private copy: Columns.block keys its buffer on it
        return x, idx.copy() if idx is rows else idx
    if not (x.T.flags.c_contiguous or x.flags.c_contiguous):
        x = np.asfortranarray(x)
    return x, idx


def _rows_block(x: np.ndarray | Columns, idx: np.ndarray | None, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of ``x`` (or of ``x[idx]``) as a (p, rows) array, any dtype:
    a view of ``x``, or the gathered rows in a reused buffer."""
    if isinstance(x, Columns):
        return x.block(idx, a, b)
    p, k = x.shape[1], b - a
    if idx is None:
        return x.T[:, a:b]
    g = _scratch("gather", p * k, x.dtype)
    if x.T.flags.c_contiguous:  # column-major frame data: each column contiguous
        out = g.reshape(p, k)
        np.take(x.T, idx[a:b], axis=1, out=out, mode="clip")  # bounds checked by the caller
        return out
    out = g.reshape(k, p)
    np.take(x, idx[a:b], axis=0, out=out, mode="clip")
    return out.T


GATHER_BYTES = 1 << 23  # Columns.block gathers rows into a buffer of about this size
_COLUMNS_TOKENS = itertools.count()
_ARROW_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Columns:
    """Equal-length float columns held in pieces of consecutive rows (the
    chunks of Arrow-backed pandas columns: one per file read), standing in
    for the 2-D array ``np.column_stack(columns)`` in :meth:`Moments.of` and
    :meth:`ScalePCA.transform_rows`. Those gather rows from the columns a
    block at a time, so a partition's decoded Parquet buffers are used where
    they are, never copied into a 2-D array first. ``pieces[i][j]`` holds
    rows ``starts[i]`` to ``starts[i + 1]`` of column ``j``."""

    def __init__(self, pieces: list[list[np.ndarray]], starts: Any, width: int, dtype: Any) -> None:
        self.pieces = pieces
        self.starts = np.asarray(starts, dtype=np.intp)
        self.dtype = np.dtype(dtype)
        self.shape = (int(self.starts[-1]), width)
        self.ndim = 2
        self._token = next(_COLUMNS_TOKENS)

    @classmethod
    def of_frame(cls, df: pd.DataFrame, cols: list[str]) -> Columns | None:
        """The columns ``cols`` of ``df`` when all are Arrow-backed floats of
        one dtype; None otherwise (:func:`_frame_to_array` makes the array).
        Chunks without missing values are used in place; a chunk with
        missing values becomes a copy with NaN for them. When the columns
        are not chunked at the same rows, each is joined into one piece (a
        copy)."""
        dtypes = {df.dtypes[c] for c in cols}
        if len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        if not isinstance(dtype, pd.ArrowDtype) or dtype.numpy_dtype not in _ARROW_FLOATS:
            return None
        chunked = [df[c].array.__arrow_array__() for c in cols]
        chunks = [[ch for ch in a.chunks if len(ch)] for a in chunked]
        lengths = [len(ch) for ch in chunks[0]]
        if any([len(ch) for ch in c] != lengths for c in chunks):
            chunks = [[a.combine_chunks()] if len(a) else [] for a in chunked]
            lengths = [len(df)] if len(df) else []
        pieces = [
            [ch.to_numpy(zero_copy_only=False) for ch in piece]
            for piece in zip(*chunks, strict=True)
        ]
        starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.intp)])
        return cls(pieces, starts, len(cols), dtype.numpy_dtype)

    def block(self, idx: np.ndarray | None, a: int, b: int) -> np.ndarray:
        """Rows ``a:b`` (or rows ``idx[a:b]``) as a (p, b - a) view of a buffer
        this thread reuses, valid until its next call: one gather per column
        fills the buffer (GATHER_BYTES) with the rows from ``a`` on, and the
        blocks that follow are cut from it (a call per column and block
        would cost more than the copying, in time and in the GIL). ``idx``
        is not to change between calls (:func:`_positions` copies it)."""
        held = getattr(_SCRATCH, "columns_held", None)
        if (
            held is None
            or held[0] != self._token
            or held[1] is not idx
            or not (held[2] <= a and b <= held[3])
        ):
            _SCRATCH.columns_held = None  # the buffer is about to change
            n = self.shape[0] if idx is None else len(idx)
            rows = GATHER_BYTES // max(1, self.shape[1] * self.dtype.itemsize)
            hi = min(n, max(b, a + rows))
            buf = _scratch("columns", self.shape[1] * (hi - a), self.dtype)
            buf = buf.reshape(self.shape[1], hi - a)
            self.gather(idx, a, hi, buf)
            held = (self._token, idx, a, hi, buf)
            _SCRATCH.columns_held = held
        lo, buf = held[2], held[4]
        return buf[:, a - lo : b - lo]

    def gather(self, idx: np.ndarray | None, a: int, b: int, out: np.ndarray) -> None:
        """Write rows ``a:b`` (or rows ``idx[a:b]``, positions checked by the
        caller) into ``out``, of shape (p, b - a)."""
        starts = self.starts
        if idx is None:
            for i, piece in enumerate(self.pieces):
                lo, hi = max(a, int(starts[i])), min(b, int(starts[i + 1]))
                for j, col in enumerate(piece if lo < hi else ()):
                    out[j, lo - a : hi - a] = col[lo - starts[i] : hi - starts[i]]
            return
        sel = idx[a:b]
        if not sel.size:
            return
        if _ascending(sel):  # one run of rows per piece
            cuts = np.searchsorted(sel, starts)
            for i, piece in enumerate(self.pieces):
                lo, hi = int(cuts[i]), int(cuts[i + 1])
                local = sel[lo:hi] - starts[i] if i else sel[lo:hi]
                for j, col in enumerate(piece if lo < hi else ()):
                    col.take(local, out=out[j, lo:hi], mode="clip")
            return
        which = np.searchsorted(starts, sel, side="right") - 1
        for i in np.unique(which):
            where = np.flatnonzero(which == i)
            local = sel[where] - starts[i]
            for j, col in enumerate(self.pieces[i]):
                out[j, where] = col[local]

    def to_array(self, rows: Any = None) -> np.ndarray:
        """The rows (positions or a boolean mask; None: every row) as a
        column-major 2-D array."""
        _, idx = _positions(self, rows)
        n = self.shape[0] if idx is None else len(idx)
        out = np.empty((self.shape[1], n), dtype=self.dtype)
        self.gather(idx, 0, n, out)
        return out.T


class _BlockSums:
    """Accumulates Moments sums block by block through a reused float64
    buffer laid out as rows [Z; 1; M] (p + 1 + p rows, one column per data
    row): ``B B^T`` holds Z^T Z, the column sums of Z, the row count and,
    when something is missing, Z^T M, M^T M and the missing counts."""

    def __init__(self, p: int, covariance: bool) -> None:
        self.p = p
        self.covariance = covariance
        self.block = _block_rows(p + 1)
        self.gram: np.ndarray | None = None  # (p+1)^2: blocks without missing values
        self.gram_m: np.ndarray | None = None  # (2p+1)^2: blocks with missing values
        self.s1 = np.zeros(p)
        self.sq = np.zeros(p)
        self.missing = np.zeros(p, dtype=np.int64)
        self.any_missing = False

    def add(self, src: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
        """Add the rows of ``src`` (p, k), centred on ``shift`` (None: on the
        mean of these rows); returns the shift used."""
        p, k = src.shape
        buf = _scratch("moments", (2 * p + 1) * k, np.float64).reshape(2 * p + 1, k)
        z = buf[:p]
        if shift is None:
            np.copyto(z, src)
            shift = _nanmean_rows(z)
            z -= shift[:, None]
        else:
            np.subtract(src, shift[:, None], out=z)
        if not self.covariance:
            s = z.sum(axis=1)
            if not np.isfinite(s).all():  # missing (or infinite) values here
                miss = np.isnan(z)
                if miss.any():
                    self.any_missing = True
                    z[miss] = 0.0
                    self.missing += miss.sum(axis=1)
                    s = z.sum(axis=1)
            self.s1 += s
            self.sq += np.einsum("ij,ij->i", z, z)
            return shift
        buf[p] = 1.0
        head = buf[: p + 1]
        g = head @ head.T  # one symmetric rank-k update (BLAS syrk)
        if not np.isfinite(np.diagonal(g)[:p]).all():  # missing (or infinite) values here
            miss = np.isnan(z)
            if miss.any():
                self.any_missing = True
                z[miss] = 0.0
                np.copyto(buf[p + 1 :], miss)
                gm = buf @ buf.T
                if self.gram_m is None:
                    self.gram_m = gm
                else:
                    self.gram_m += gm
                return shift
        if self.gram is None:
            self.gram = g
        else:
            self.gram += g
        return shift

    def moments(self, n: int, shift: np.ndarray) -> Moments:
        p = self.p
        if not self.covariance:
            count = n - self.missing
            return Moments(n, shift, count, self.s1, self.sq)
        g = self.gram_m
        if g is None:
            assert self.gram is not None
            g = self.gram
        elif self.gram is not None:
            g[: p + 1, : p + 1] += self.gram
        zz, s1 = g[:p, :p].copy(), g[:p, p].copy()
        if not self.any_missing:
            return Moments(n, shift, np.full(p, n, dtype=np.int64), s1, zz)
        count = n - np.rint(g[p, p + 1 :]).astype(np.int64)
        return Moments(n, shift, count, s1, zz, g[:p, p + 1 :].copy(), g[p + 1 :, p + 1 :].copy())


def _nanmean_rows(z: np.ndarray) -> np.ndarray:
    """Mean of each row of ``z`` ignoring NaN; 0 where none is finite."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = z.mean(axis=1)
        if not np.isfinite(mean).all():
            miss = np.isnan(z)
            count = z.shape[1] - miss.sum(axis=1)
            mean = np.where(miss, 0.0, z).sum(axis=1) / count
    return np.where(np.isfinite(mean), mean, 0.0)


def _is_constant(var: np.ndarray, mean: np.ndarray, n: np.ndarray) -> np.ndarray:
    # The bound scikit-learn uses for "this variance is rounding noise".
    eps = np.finfo(np.float64).eps
    upper = n * eps * var + (n * mean * eps) ** 2
    return var <= upper


# -------------------------------------------------------------------- ScalePCA
class ScalePCA:
    """Standard scaling followed by PCA, fitted on Dask or in-memory data.

    Parameters
    ----------
    scale : bool, default=True
        Divide centred features by their standard deviation.
    n_components : int, float or None, default=None
        Components to keep: an int >= 1, a fraction in (0, 1) of variance to
        explain, or None for no PCA (scaling only).
    method : {"covariance", "incremental"}, default="covariance"
        One exact pass over the data, or dask-ml's IncrementalPCA.
    batch_size : int or None, default=None
        Rows per batch for ``method="incremental"``.

    Attributes
    ----------
    n_features_in_, feature_names_in_, n_samples_seen_, mean_, var_,
    scale_, components_, explained_variance_, explained_variance_ratio_,
    n_components_

    Examples
    --------
    >>> import numpy as np
    >>> from scaler import ScalePCA
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> sp = ScalePCA(n_components=2).fit(X)
    >>> sp.transform(X).shape
    (100, 2)
    """

    def __init__(
        self,
        *,
        scale: bool = True,
        n_components: int | float | None = None,
        method: str = "covariance",
        batch_size: int | None = None,
    ) -> None:
        self.scale = scale
        self.n_components = n_components
        self.method = method
        self.batch_size = batch_size

    # ------------------------------------------------------------- checking
    def _check_params(self, n_features: int) -> None:
        k = self.n_components
        if k is not None and not isinstance(k, bool):
            if isinstance(k, (int, np.integer)):
                if k < 1:
                    raise ValueError(
                        f"The 'n_components' parameter of ScalePCA must be an int >= 1, "
                        f"a float in (0, 1) or None. Got {k} instead."
                    )
                if k > n_features:
                    raise DataError(
                        f"PCA with {k} components needs at least {k} numeric features; the data "
                        f"has {n_features}. Lower [preprocess] pca to at most {n_features}, "
                        "or use a variance fraction such as pca = 0.95."
                    )
            elif not (0.0 < float(k) < 1.0):
                raise ValueError(
                    f"The 'n_components' parameter of ScalePCA must be an int >= 1, "
                    f"a float in (0, 1) or None. Got {k} instead."
                )
        elif isinstance(k, bool):
            raise ValueError(
                f"The 'n_components' parameter of ScalePCA must be an int >= 1, "
                f"a float in (0, 1) or None. Got {k} instead."
            )
        if self.method not in ("covariance", "incremental"):
            raise ValueError(
                "The 'method' parameter of ScalePCA must be 'covariance' or 'incremental'. "
                f"Got {self.method!r} instead."
            )

    # ----------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None) -> ScalePCA:
        """Fit on a Dask DataFrame/Array, a pandas DataFrame or a NumPy array
        of numeric columns."""
        names = _column_names(X)
        n_features = len(names) if names is not None else int(X.shape[1])
        self._check_params(n_features)
        if self.method == "incremental" and self.n_components is not None:
            return self._fit_incremental(X, names)
        moments = _compute_moments(X)
        return self._fit_moments(moments, names)

    def _fit_moments(self, m: Moments, names: list[str] | None) -> ScalePCA:
        p = m.shift.shape[0]
        self._check_params(p)
        names = names if names is not None else [f"x{i}" for i in range(p)]
        if m.n == 0:
            raise DataError("Cannot fit scaling/PCA on zero rows. Check the filters and the split.")
        empty = [names[i] for i in np.flatnonzero(m.count == 0)]
        if empty:
            raise DataError(
                f"Column(s) {empty} have no values in the training rows (all missing). "
                "Exclude them with [data] exclude."
            )
        centred = m.shifted(m.mean)
        mean = centred.shift
        var = (centred.zz if centred.zz.ndim == 1 else np.diag(centred.zz)) / m.count
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(mean) | ~np.isfinite(var))]
        if bad:
            raise DataError(
                f"Column(s) {bad} contain infinite values (inf or -inf). Replace or filter "
                "them before training, or exclude the columns with [data] exclude."
            )
        var = np.maximum(var, 0.0)
        scale = np.sqrt(var)
        scale[_is_constant(var, mean, m.count.astype(np.float64))] = 1.0
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = p
        self.n_samples_seen_ = int(m.n)
        self.mean_ = mean
        self.var_ = var
        self.scale_ = scale if self.scale else np.ones(p)
        self.components_: np.ndarray | None = None
        self.explained_variance_: np.ndarray | None = None
        self.explained_variance_ratio_: np.ndarray | None = None
        self.n_components_ = p
        if self.n_components is not None:
            if m.zz.ndim == 1:
                raise ValueError("PCA needs Moments computed with covariance=True")
            if m.n < 2:
                raise DataError("PCA needs at least 2 training rows.")
            # Covariance of the mean-imputed data (imputed entries are 0 once centred).
            cov = centred.zz / (m.n - 1)
            s = self.scale_
            cov = cov / s[:, None] / s[None, :]
            evals, evecs = np.linalg.eigh(cov)
            order = np.argsort(evals)[::-1]
            evals = np.maximum(evals[order], 0.0)
            evecs = evecs[:, order].T
            self._set_components(evecs, evals, float(evals.sum()))
        return self

    def _set_components(self, comps: np.ndarray, evals: np.ndarray, total: float) -> None:
        ratio = evals / total if total > 0 else np.zeros_like(evals)
        k = self.n_components
        if isinstance(k, float):
            k = int(np.searchsorted(np.cumsum(ratio), k, side="right") + 1)
            k = min(k, len(evals))
        k = int(k)  # type: ignore[arg-type]
        comps = comps[:k].copy()
        # Same sign convention as scikit-learn's svd_flip(u_based_decision=False).
        idx = np.argmax(np.abs(comps), axis=1)
        signs = np.sign(comps[np.arange(k), idx])
        signs[signs == 0] = 1.0
        self.components_ = comps * signs[:, None]
        self.explained_variance_ = evals[:k].copy()
        self.explained_variance_ratio_ = ratio[:k].copy()
        self.n_components_ = k

    def _fit_incremental(self, X: Any, names: list[str] | None) -> ScalePCA:
        import dask.array as da
        import dask.dataframe as dd
        from dask_ml.decomposition import IncrementalPCA
        from dask_ml.preprocessing import StandardScaler

        if isinstance(X, dd.DataFrame):
            arr = X.to_dask_array(lengths=True).astype(np.float64)
        elif isinstance(X, da.Array):
            arr = X.astype(np.float64)
        else:
            arr = da.from_array(np.asarray(X, dtype=np.float64))
        arr = arr.rechunk({1: -1})
        p = int(arr.shape[1])
        names = names if names is not None else [f"x{i}" for i in range(p)]
        ss = StandardScaler(with_std=self.scale).fit(arr)
        mean = np.asarray(ss.mean_, dtype=np.float64)
        var = np.asarray(ss.var_, dtype=np.float64)
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(mean) | ~np.isfinite(var))]
        if bad:
            raise DataError(
                f"Column(s) {bad} contain missing or infinite values, which "
                "method='incremental' cannot handle. Use method='covariance' (imputes the "
                "mean) or clean the data."
            )
        scale = np.asarray(ss.scale_, dtype=np.float64) if self.scale else np.ones(p)
        scale = np.where(scale == 0, 1.0, scale)
        n = int(arr.shape[0])
        k = self.n_components
        ipca = IncrementalPCA(
            n_components=int(k) if isinstance(k, int) else None,
            batch_size=self.batch_size,
            svd_solver="full",
        )
        try:
            ipca.fit((arr - mean) / scale)
        except np.linalg.LinAlgError:
            # dask-ml's StandardScaler ignores missing values; its SVD does not
            missing = np.asarray(da.isnan(arr).any(axis=0).compute())
            if missing.any():
                raise DataError(
                    incremental_missing([names[i] for i in np.flatnonzero(missing)])
                ) from None
            raise
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = p
        self.n_samples_seen_ = n
        self.mean_ = mean
        self.var_ = var
        self.scale_ = scale
        total = float(np.sum(var / scale**2) * n / (n - 1))
        comps = np.asarray(ipca.components_, dtype=np.float64)
        evals = np.asarray(ipca.explained_variance_, dtype=np.float64)
        self._set_components(comps, evals, total)
        return self

    # ----------------------------------------------------------- transform
    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ValueError("This ScalePCA instance is not fitted yet. Call 'fit' first.")

    def transform_array(self, x: np.ndarray) -> np.ndarray:
        """Transform an in-memory 2-D array (float32 out, column-major).

        With PCA, scaling is folded into the projection: ``(x - mean) @ (W /
        scale).T`` in float32, one subtraction and one matrix product, with
        missing values imputed by the mean (0 once centred). Float64 input
        is centred in float64 first, so large offsets lose no precision.
        The rows go through a reused buffer a block at a time, written
        straight into the result.
        """
        return self.transform_rows(x, [None])[0]

    def transform_rows(
        self, x: np.ndarray | Columns, rows: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """The transformed rows ``x[r]`` for each ``r`` in ``rows`` (integer
        positions, in the order wanted; None for every row), as
        :meth:`transform_array` makes them, each written block by block
        straight into its own array: cutting a partition into split parts
        this way makes no transformed copy of all its rows to cut from.
        When every ``r`` is in ascending order and together they hold at
        least as many rows as ``x`` (split parts), each row of ``x`` is
        transformed once, in consecutive blocks read where they lie, and
        the results go to the parts (:meth:`_transform_parts`); otherwise
        each part's rows are gathered."""
        self._check_fitted()
        if not isinstance(x, Columns):
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise DataError(
                f"Expected {self.n_features_in_} numeric feature columns, got array of shape "
                f"{x.shape}."
            )
        idx = []
        for r in rows:
            x, i = _positions(x, r)
            idx.append(i)
        if self.components_ is None and not self.scale:
            return [_rows_float32(x, r) for r in idx]
        if sum(x.shape[0] if i is None else len(i) for i in idx) >= x.shape[0] and all(
            i is None or _ascending(i) for i in idx
        ):
            return self._transform_parts(x, idx)
        return [self._transform_rows(x, r) for r in idx]

    def _transform_parts(
        self, x: np.ndarray | Columns, idx: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Rows in order that together cover ``x`` (the split parts of a
        partition): every row is transformed once, a block of consecutive
        rows at a time, read where it lies (no gather of the input), and
        each block's results are copied to the parts whose rows it holds."""
        n = x.shape[0]
        width = self.n_features_in_ if self.components_ is None else self.components_.shape[0]
        outs = [np.empty((width, n if i is None else len(i)), dtype=np.float32) for i in idx]
        whole = next((o for o, i in zip(outs, idx, strict=True) if i is None), None)
        done = [0] * len(idx)
        step = _block_rows(x.shape[1] + 1)
        for a in range(0, n, step):
            b = min(n, a + step)
            if whole is not None:
                res = whole[:, a:b]
            else:
                res = _scratch("parts", width * (b - a), np.float32).reshape(width, b - a)
            self._block_into(_rows_block(x, None, a, b), res, x.dtype)
            for k, (o, i) in enumerate(zip(outs, idx, strict=True)):
                if i is None:
                    if o is not whole:
                        o[:, a:b] = res
                    continue
                lo = done[k]
                hi = lo + int(np.searchsorted(i[lo:], b))
                if hi > lo:
                    o[:, lo:hi] = res[:, i[lo:hi] - a]
                done[k] = hi
        return [o.T for o in outs]

    def _transform_rows(self, x: np.ndarray | Columns, idx: np.ndarray | None) -> np.ndarray:
        """The rows ``x[idx]``, gathered a block at a time."""
        n = x.shape[0] if idx is None else idx.shape[0]
        width = self.n_features_in_ if self.components_ is None else self.components_.shape[0]
        out = np.empty((width, n), dtype=np.float32)
        step = _block_rows(x.shape[1] + 1)
        for a in range(0, n, step):
            b = min(n, a + step)
            self._block_into(_rows_block(x, idx, a, b), out[:, a:b], x.dtype)
        return out.T

    def _block_into(self, src: np.ndarray, out: np.ndarray, dtype: Any) -> None:
        """Transform the (p, k) block ``src`` of ``dtype`` data into ``out``
        (width, k), float32: centred in ``dtype``, then scaled or projected
        (scaling folded into the projection); with PCA, a missing value is
        imputed by the mean (0 once centred)."""
        p, k = src.shape
        mean = self.mean_.astype(dtype)[:, None]
        if self.components_ is None:
            scale = self.scale_.astype(dtype)[:, None]
            if dtype == np.float32:
                np.subtract(src, mean, out=out)
                np.divide(out, scale, out=out)
            else:  # in float64, rounded once
                z = _scratch("transform", p * k, dtype).reshape(p, k)
                np.subtract(src, mean, out=z)
                np.divide(z, scale, out=out)
            return
        projection = (self.components_ / self.scale_[None, :]).astype(np.float32)  # (k, p)
        z = _scratch("transform", p * k, np.float32).reshape(p, k)
        np.subtract(src, mean, out=z, dtype=dtype)
        np.matmul(projection, z, out=out)
        # A missing value makes its row's outputs NaN: impute and redo.
        if not np.isfinite(out.sum()):
            missing = np.isnan(z)
            if missing.any():
                z[missing] = 0.0  # mean imputation
                np.matmul(projection, z, out=out)

    @property
    def output_names(self) -> list[str]:
        """Names of the output columns."""
        self._check_fitted()
        if self.components_ is None:
            return [str(n) for n in self.feature_names_in_]
        return [f"pc{i + 1}" for i in range(self.n_components_)]

    def transform(self, X: Any) -> Any:
        """Transform data of the type given to ``fit`` (lazily for Dask)."""
        import dask.array as da
        import dask.dataframe as dd

        self._check_fitted()
        names = self.output_names
        if isinstance(X, dd.DataFrame):
            cols = [str(c) for c in self.feature_names_in_]
            meta = pd.DataFrame({n: np.array([], dtype=np.float32) for n in names})
            return X[cols].map_partitions(
                _transform_frame, self, cols, names, meta=meta, enforce_metadata=False
            )
        if isinstance(X, da.Array):
            X = X.rechunk({1: -1})
            return X.map_blocks(
                self.transform_array,
                dtype=np.float32,
                chunks=(X.chunks[0], (len(names),)),
            )
        if isinstance(X, pd.DataFrame):
            cols = [str(c) for c in self.feature_names_in_]
            return _transform_frame(X[cols], self, cols, names)
        return self.transform_array(np.asarray(X))

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        return self.fit(X).transform(X)

    # -------------------------------------------------------------- state
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able parameters and a dict of float64 arrays (for ``.npy``)."""
        self._check_fitted()
        meta = {
            "scale": bool(self.scale),
            "n_components": self.n_components,
            "method": self.method,
            "batch_size": self.batch_size,
            "feature_names_in": [str(n) for n in self.feature_names_in_],
            "n_samples_seen": int(self.n_samples_seen_),
            "n_components_fitted": int(self.n_components_),
            "has_pca": self.components_ is not None,
        }
        arrays = {"mean": self.mean_, "var": self.var_, "scale": self.scale_}
        if self.components_ is not None:
            arrays["components"] = self.components_
            arrays["explained_variance"] = self.explained_variance_
            arrays["explained_variance_ratio"] = self.explained_variance_ratio_
        return meta, {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ScalePCA:
        """Rebuild a fitted object from :meth:`get_state` output."""
        obj = cls(
            scale=meta["scale"],
            n_components=meta["n_components"],
            method=meta["method"],
            batch_size=meta["batch_size"],
        )
        p = len(meta["feature_names_in"])
        obj.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        obj.n_features_in_ = p
        obj.n_samples_seen_ = meta["n_samples_seen"]
        for name in ("mean", "var", "scale"):
            if arrays[name].shape != (p,):
                raise ValueError(f"{name} has shape {arrays[name].shape}, expected ({p},)")
        obj.mean_, obj.var_, obj.scale_ = arrays["mean"], arrays["var"], arrays["scale"]
        obj.n_components_ = meta["n_components_fitted"]
        if meta["has_pca"]:
            k = obj.n_components_
            if arrays["components"].shape != (k, p):
                raise ValueError(
                    f"components has shape {arrays['components'].shape}, expected ({k}, {p})"
                )
            obj.components_ = arrays["components"]
            obj.explained_variance_ = arrays["explained_variance"]
            obj.explained_variance_ratio_ = arrays["explained_variance_ratio"]
        else:
            obj.components_ = obj.explained_variance_ = obj.explained_variance_ratio_ = None
        return obj

    def to_dict(self) -> dict[str, Any]:
        """Everything as one JSON-able dict (arrays as lists; floats round-trip exactly)."""
        meta, arrays = self.get_state()
        return {**meta, "arrays": {k: v.tolist() for k, v in arrays.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalePCA:
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in d["arrays"].items()}
        return cls.from_state(d, arrays)

    def __repr__(self) -> str:
        from scaler._display import scalepca_rows, text_block

        params = f"scale={self.scale}, n_components={self.n_components!r}, method={self.method!r}"
        if not hasattr(self, "mean_"):
            return f"ScalePCA({params})"
        return text_block(f"ScalePCA({params})", scalepca_rows(self)[1:])

    def _repr_html_(self) -> str:
        from scaler._display import html_block, scalepca_rows

        return html_block("ScalePCA", scalepca_rows(self))


def _column_names(X: Any) -> list[str] | None:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None


_EXACT_IN_FLOAT32 = {
    np.dtype(t) for t in ("float32", "float16", "int8", "int16", "uint8", "uint16", "bool")
}


def _frame_to_array(df: pd.DataFrame, cols: list[str], *, compact: bool = False) -> np.ndarray:
    """The columns as a 2-D float array (NaN for missing). With ``compact``,
    float32 when every column is exactly representable in it (float32
    Parquet columns, small ints, bools), else float64."""
    dtype: type[np.floating[Any]] = np.float64
    frame = df[cols]
    if compact and all(
        np.dtype(getattr(t, "numpy_dtype", t)) in _EXACT_IN_FLOAT32 for t in frame.dtypes
    ):
        dtype = np.float32
    return frame.to_numpy(dtype=dtype, na_value=np.nan)


def incremental_missing(cols: list[str], covariance: str = "method='covariance'") -> str:
    """The error for missing values under ``method="incremental"``."""
    return (
        f"Column(s) {cols} have missing values in the training rows, which "
        "method='incremental' (dask-ml's IncrementalPCA) cannot handle. Fill them "
        f"before training, exclude the columns ([data] exclude), or use {covariance}, "
        "which imputes the mean."
    )


def _ascending(i: np.ndarray) -> bool:
    return i.size < 2 or bool((i[1:] >= i[:-1]).all())


def _rows_float32(x: np.ndarray | Columns, rows: np.ndarray | None) -> np.ndarray:
    """``x[rows]`` (every row for None) as float32, in ``x``'s layout: the
    rows of column-major frame data stay column-major."""
    if isinstance(x, Columns):
        return x.to_array(rows).astype(np.float32, copy=False)
    if rows is None:
        return x.astype(np.float32)
    if x.flags.c_contiguous:
        return x[rows].astype(np.float32, copy=False)
    return np.take(x.T, rows, axis=1).astype(np.float32, copy=False).T


def _transform_frame(
    df: pd.DataFrame, sp: ScalePCA, cols: list[str], names: list[str]
) -> pd.DataFrame:
    out = sp.transform_array(_frame_to_array(df, cols))
    return pd.DataFrame(out, columns=names, index=df.index, copy=False)


def _moments_of_block(block: Any) -> Moments:
    if isinstance(block, pd.DataFrame):
        return Moments.of(block.to_numpy(dtype=np.float64, na_value=np.nan))
    return Moments.of(np.asarray(block, dtype=np.float64))


def tree_merge(
    items: list[Any], merge: Any, split_every: int = 8, *, merge_many: Any = None
) -> Any:
    """Merge delayed items in a tree of fan-in ``split_every``: each node
    folds its inputs with ``merge(a, b)``, or hands them all to
    ``merge_many(list)`` when given."""
    import dask

    items = list(items)
    while len(items) > 1:
        items = [
            dask.delayed(merge_many)(items[i : i + split_every])
            if merge_many is not None
            else dask.delayed(_merge_many)(items[i : i + split_every], merge)
            for i in range(0, len(items), split_every)
        ]
    return items[0]


def _merge_many(parts: list[Any], merge: Any) -> Any:
    acc = parts[0]
    for p in parts[1:]:
        acc = merge(acc, p)
    return acc


def _compute_moments(X: Any) -> Moments:
    import dask
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(X, dd.DataFrame):
        blocks = [dask.delayed(_moments_of_block)(b) for b in X.to_delayed()]
        return dask.compute(tree_merge(blocks, Moments.merge))[0]
    if isinstance(X, da.Array):
        X = X.rechunk({1: -1})
        blocks = [dask.delayed(_moments_of_block)(b) for b in X.to_delayed().ravel()]
        return dask.compute(tree_merge(blocks, Moments.merge))[0]
    return _moments_of_block(X)


# -------------------------------------------------------------- categoricals
def encode_categorical(values: pd.Series, categories: list[str]) -> pd.Categorical:
    """Values as a Categorical with exactly ``categories`` (strings); values
    never seen in training become missing."""
    cats = pd.Index(categories, dtype=object)
    as_str = values.astype(object).where(values.notna(), None)
    as_str = as_str.map(lambda v: None if v is None else str(v))
    codes = cats.get_indexer(as_str.to_numpy(dtype=object))
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="str"))


@dataclass
class Preprocessor:
    """The fitted column handling of a run: numeric columns through
    :class:`ScalePCA`, string/categorical columns to fixed categories."""

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    scaler_pca: ScalePCA | None

    @property
    def output_columns(self) -> list[str]:
        num = self.scaler_pca.output_names if self.scaler_pca is not None else list(self.numeric)
        return num + list(self.categorical)

    @property
    def input_columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def transform_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Input columns of a pandas frame -> model features (float32 + categories)."""
        return self.transform_frames(df, [None])[0]

    def transform_frames(
        self, df: pd.DataFrame, rows: list[np.ndarray | None]
    ) -> list[pd.DataFrame]:
        """:meth:`transform_frame` of the rows ``df.iloc[r]`` for each ``r`` in
        ``rows`` (None: every row), each transformed straight into its own
        frame (see :meth:`ScalePCA.transform_rows`)."""
        index = [df.index if r is None else df.index.take(r) for r in rows]
        if self.numeric:
            x: Any = Columns.of_frame(df, self.numeric)
            if x is None:
                x = _frame_to_array(df, self.numeric, compact=True)
            if self.scaler_pca is not None:
                ys = self.scaler_pca.transform_rows(x, rows)
                names = self.scaler_pca.output_names
            else:
                ys = [_rows_float32(x, r) for r in rows]
                names = list(self.numeric)
            # Column-major float32: the frame's block, without a copy.
            outs = [
                pd.DataFrame(y, columns=names, index=i, copy=False)
                for y, i in zip(ys, index, strict=True)
            ]
        else:
            outs = [pd.DataFrame(index=i) for i in index]
        for c in self.categorical:
            cat = encode_categorical(df[c], self.categories[c])
            for out, r in zip(outs, rows, strict=True):
                out[c] = cat if r is None else cat.take(r)
        return outs

    def meta(self) -> pd.DataFrame:
        """An empty frame with the output dtypes (for Dask's ``meta``)."""
        cols: dict[str, Any] = {}
        num = self.scaler_pca.output_names if self.scaler_pca is not None else list(self.numeric)
        for n in num:
            cols[n] = np.array([], dtype=np.float32)
        for c in self.categorical:
            cols[c] = pd.Categorical.from_codes(
                [], categories=pd.Index(self.categories[c], dtype="str")
            )
        return pd.DataFrame(cols)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "version": STATE_VERSION,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "scaler_pca": None,
        }
        arrays: dict[str, np.ndarray] = {}
        if self.scaler_pca is not None:
            meta["scaler_pca"], arrays = self.scaler_pca.get_state()
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Preprocessor:
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported preprocess state version {meta.get('version')!r}")
        sp = ScalePCA.from_state(meta["scaler_pca"], arrays) if meta["scaler_pca"] else None
        return cls(meta["numeric"], meta["categorical"], meta["categories"], sp)
