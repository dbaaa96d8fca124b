"""The feature cache: the transformed (scaled + projected) model features of
a run, stored under the output URL so that a re-run with the same inputs
and the same preprocessing skips reading, fitting and transforming.

Layout (``[preprocess] feature_cache = true``)::

    OUTPUT/feature_cache/manifest.json            written last: the commit point
    OUTPUT/feature_cache/v-<id>/features/         committed Parquet (see scaler.storage)
    OUTPUT/feature_cache/v-<id>/preprocess_*.npy  fitted scaling / PCA arrays

The manifest holds the fingerprint the features were made for, the fitted
:class:`~scaler.preprocess.Preprocessor` state (JSON; arrays in ``.npy``,
loaded with ``allow_pickle=False``), the row counts and the classes. The
fingerprint is a sha256 of every input file's path, size and ETag (or
mtime), the resolved column roles, split and preprocessing config, the
filters and the scaler version: any change to a file or to that config
misses the cache, and the features are computed and stored again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import numpy as np

from scaler import __version__, storage
from scaler.config import RunConfig, redact

__all__ = ["fingerprint", "load", "save", "cache_url"]

MANIFEST = "manifest.json"
FORMAT = "scaler-feature-cache"


def cache_url(cfg: RunConfig) -> str:
    return storage.join(cfg.output.url, "feature_cache")


def fingerprint(cfg: RunConfig, spec: Any) -> str:
    """sha256 of the input files (paths, sizes, ETags/mtimes), the column
    roles, the split and preprocessing config and the filters."""
    d = cfg.data
    details = storage.prune_partitions(storage.file_details(d.url, d.storage_options), d.filters)
    pre = {k: v for k, v in dataclasses.asdict(cfg.preprocess).items() if k != "feature_cache"}
    payload = {
        "format": FORMAT,
        "scaler": __version__,
        "files": storage.fingerprint_files(details),
        "spec": dataclasses.asdict(spec),
        "preprocess": pre,
        "filters": d.filters,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _manifest(url: str, so: dict[str, Any]) -> dict[str, Any] | None:
    try:
        m = json.loads(storage.read_bytes(storage.join(url, MANIFEST), so))
    except (FileNotFoundError, OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == FORMAT else None


def features_meta(pre: Any, spec: Any, df: Any) -> Any:
    """The empty frame of the model features (as the transform pass makes them)."""
    from scaler.pipeline import LABEL, PART

    meta = pre.meta()
    meta[LABEL] = np.array([], dtype=np.float64 if spec.task == "regression" else np.float32)
    meta[PART] = np.array([], dtype=np.int8)
    if spec.key:
        meta[spec.key] = df._meta[spec.key]
    return meta


def load(cfg: RunConfig, spec: Any, df: Any, echo: Any, client: Any) -> tuple[Any, str]:
    """``(Prepared or None, fingerprint)``: the cached features, persisted on
    the current client, when the cache was made for the same inputs and
    config; says on ``echo`` whether it is a hit or why it is a miss."""
    import dask

    from scaler.pipeline import Prepared, _cut_fraction, _part_codes, _persist_parts
    from scaler.preprocess import Preprocessor

    fp = fingerprint(cfg, spec)
    got = _load(cfg, fp)
    if isinstance(got, str):
        echo(f"[features] cache miss ({got}): reading, fitting and transforming")
        return None, fp
    feats, m = got
    pre = Preprocessor.from_state(m["preprocess"], arrays(cfg, m))
    meta = features_meta(pre, spec, df)
    dtypes = {c: meta.dtypes[c] for c in meta.columns}
    counts = {k: int(v) for k, v in m["counts"].items()}
    names, codes = _part_codes(counts)
    sample = _cut_fraction(cfg, spec, counts)  # training's bin-edge sample
    cut = [
        dask.delayed(_restore, pure=False)(p, dtypes, codes, sample, pre.output_columns)
        for p in feats[list(meta.columns)].to_delayed()
    ]
    parts, futs, samples = _persist_parts(client, cut, names, meta, with_extra=sample > 0)
    echo(
        f"[features] cache hit at {redact(cache_url(cfg))} (fingerprint {fp[:12]}): "
        "skipped reading, fitting and transforming"
    )
    prep = Prepared(
        config=cfg,
        spec=spec,
        preprocessor=pre,
        classes=list(m["classes"]),
        counts=counts,
        input_dtypes=dict(m["input_dtypes"]),
        parts=parts,
        timings={},
        client=None,
        _meta=meta,
        _futures=futs,
        _cut_samples=(samples, cfg.model.bin_sample_rows) if samples else None,
    )
    return prep, fp


def _load(cfg: RunConfig, fp: str) -> tuple[Any, dict[str, Any]] | str:
    from scaler.errors import InputError

    url, so = cache_url(cfg), cfg.output.storage_options
    m = _manifest(url, so)
    if m is None:
        return "no feature cache yet"
    if m.get("fingerprint") != fp:
        return "the input files or the preprocessing config changed"
    try:
        feats = storage.read_dataset(
            storage.join(url, m["version"], "features"), storage_options=so, check=False
        )
    except (InputError, FileNotFoundError) as e:
        return f"the cached features are unreadable ({redact(str(e))})"
    return feats, m


def _restore(
    df: Any, dtypes: dict[str, Any], codes: tuple[int, ...], sample: float, columns: list[str]
) -> tuple[Any, ...]:
    """A cached partition with its dtypes, cut into its split parts (and
    training's bin-edge sample, see :func:`scaler.pipeline._split_rows`)."""
    from scaler.pipeline import _split_rows

    return _split_rows(df.astype(dtypes), codes, sample, columns)


def arrays(cfg: RunConfig, m: dict[str, Any]) -> dict[str, np.ndarray]:
    url, so = cache_url(cfg), cfg.output.storage_options
    out = {}
    for name in m.get("arrays", []):
        b = storage.read_bytes(storage.join(url, m["version"], f"preprocess_{name}.npy"), so)
        out[name] = np.load(io.BytesIO(b), allow_pickle=False)
    return out


def save(
    cfg: RunConfig,
    fp: str,
    feats: Any,
    pre: Any,
    *,
    counts: dict[str, int],
    classes: list[Any],
    input_dtypes: dict[str, str],
) -> str:
    """Store ``feats`` and the fitted state for ``fp``; return the cache URL.
    The previous cache stays valid until the new manifest is written."""
    from scaler.bundle import _jsonable, _npy_bytes

    url, so = cache_url(cfg), cfg.output.storage_options
    version = storage.new_version()
    storage.write_parquet(feats, storage.join(url, version, "features"), storage_options=so)
    pmeta, arrs = pre.get_state()
    for name, arr in arrs.items():
        storage.write_bytes(
            storage.join(url, version, f"preprocess_{name}.npy"), _npy_bytes(arr), so
        )
    manifest = {
        "format": FORMAT,
        "fingerprint": fp,
        "version": version,
        "preprocess": _jsonable(pmeta),
        "arrays": sorted(arrs),
        "counts": counts,
        "classes": _jsonable(classes),
        "input_dtypes": input_dtypes,
    }
    storage.write_bytes(storage.join(url, MANIFEST), json.dumps(manifest).encode(), so)
    storage.prune(url, prefix="v-", keep=version, storage_options=so)
    return url
