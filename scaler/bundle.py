"""Model bundles: a folder on any fsspec URL that holds everything needed to
score new data, and loads without pickle.

Layout::

    BUNDLE_URL/
      manifest.json            written last: the commit point
      v-<id>/booster.ubj       XGBoost model (UBJSON)
      v-<id>/preprocess.json   column roles, categories, scaling/PCA parameters
      v-<id>/preprocess_*.npy  float64 arrays, loaded with allow_pickle=False
      v-<id>/history.json      per-round evaluation history

``manifest.json`` names the version folder and the sha256 and size of every
file in it. Writing a bundle fills a new version folder, then replaces the
manifest in one write: until then the previous bundle stays complete and
readable; a crash midway leaves an orphan folder that loading ignores and
the next save removes. Loading verifies every hash and refuses a missing,
extra or altered file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import posixpath
import uuid
from typing import Any

import numpy as np

from scaler import storage
from scaler.config import redact
from scaler.errors import BundleError
from scaler.model import Model
from scaler.preprocess import Preprocessor

__all__ = ["save_bundle", "load_bundle", "read_manifest", "FORMAT", "FORMAT_VERSION"]

FORMAT = "scaler-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _versions() -> dict[str, str]:
    import dask
    import distributed
    import pandas
    import pyarrow
    import xgboost

    from scaler import __version__

    return {
        "scaler": __version__,
        "xgboost": xgboost.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": np.__version__,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def save_bundle(
    model: Model,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``model`` as a bundle at ``url``; return the manifest URL.

    ``extra`` adds JSON-able entries to the manifest (config, metrics,
    timings...); secrets in it are redacted.
    """
    version = (
        "v-" + _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    )

    files: dict[str, bytes] = {}
    files["booster.ubj"] = bytes(model.booster.save_raw(raw_format="ubj"))
    pmeta, arrays = model.preprocessor.get_state()
    files["preprocess.json"] = json.dumps(_jsonable(pmeta), indent=2).encode()
    for name, arr in arrays.items():
        files[f"preprocess_{name}.npy"] = _npy_bytes(arr)
    files["history.json"] = json.dumps(_jsonable(model.info.get("history", {}))).encode()

    for name, data in files.items():
        storage.write_bytes(storage.join(url, version, name), data, storage_options)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "version_dir": version,
        "versions": _versions(),
        "task": model.task,
        "target": model.target,
        "key": model.key,
        "classes": _jsonable(model.classes),
        "input_columns": [
            {
                "name": c,
                "dtype": model.input_dtypes.get(c, ""),
                "role": "numeric" if c in model.preprocessor.numeric else "categorical",
            }
            for c in model.input_columns
        ],
        "feature_names": model.feature_names,
        "categories": model.preprocessor.categories,
        **redact(_jsonable({k: v for k, v in model.info.items() if k != "history"})),
        **redact(_jsonable(extra or {})),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in files.items()
        },
    }
    # The commit point: one small write replaces the previous manifest.
    storage.write_bytes(
        storage.join(url, MANIFEST), json.dumps(manifest, indent=2).encode(), storage_options
    )
    storage.prune(url, prefix="v-", keep=version, storage_options=storage_options)
    return storage.join(url, MANIFEST)


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of the bundle at ``url`` (checked to be a scaler bundle)."""
    murl = storage.join(url, MANIFEST)
    try:
        raw = storage.read_bytes(murl, storage_options)
    except FileNotFoundError as e:
        raise BundleError(
            f"No committed scaler bundle at {redact(url)!r}: {MANIFEST} is missing. "
            "Either the URL is wrong or the bundle was never completely written; "
            "re-run training to write it."
        ) from e
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise BundleError(f"{redact(murl)!r} is not valid JSON: {e}.") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{redact(murl)!r} is not a scaler bundle manifest.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{redact(url)!r} has bundle format version {manifest.get('format_version')!r}; "
            f"this scaler reads version {FORMAT_VERSION}. Use a matching scaler version."
        )
    return manifest


def load_bundle(url: str, *, storage_options: dict[str, Any] | None = None) -> Model:
    """Load and verify the bundle at ``url``.

    Raises :class:`BundleError` when a file is missing, unexpected (for
    example a ``.pkl``) or altered (its sha256 differs from the manifest).

    Examples
    --------
    >>> from scaler import load_bundle
    >>> model = load_bundle("out/model")  # doctest: +SKIP
    >>> model.predict(df)  # doctest: +SKIP
    """
    import xgboost

    manifest = read_manifest(url, storage_options)
    fs, root = storage.get_fs(url, storage_options)
    version = manifest["version_dir"]
    expected: dict[str, Any] = manifest["files"]
    vdir = posixpath.join(root.rstrip("/"), version)

    for entry in fs.ls(root, detail=False):
        base = posixpath.basename(entry.rstrip("/"))
        if base != MANIFEST and not (base.startswith("v-") and fs.isdir(entry)):
            raise BundleError(
                f"Unexpected file {base!r} in bundle {redact(url)!r}. A bundle holds only "
                f"{MANIFEST} and its version folder; remove the file (scaler never reads "
                "pickles or other extra files)."
            )
    try:
        present = {posixpath.relpath(p, vdir) for p in fs.find(vdir)}
    except FileNotFoundError:
        present = set()
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise BundleError(
            f"Bundle {redact(url)!r} is incomplete: {missing} missing from {version}/. "
            "Re-save the model."
        )
    if extra:
        raise BundleError(
            f"Unexpected file(s) {extra} in bundle {redact(url)!r} ({version}/). Remove them; "
            "a bundle holds only the files its manifest lists."
        )
    data: dict[str, bytes] = {}
    for name, meta in expected.items():
        b = storage.read_bytes(storage.join(url, version, name), storage_options)
        digest = hashlib.sha256(b).hexdigest()
        if digest != meta["sha256"] or len(b) != meta["bytes"]:
            raise BundleError(
                f"File {name!r} of bundle {redact(url)!r} was altered: its sha256 is {digest}, "
                f"the manifest says {meta['sha256']}. Do not edit bundles; re-save the model."
            )
        data[name] = b

    pmeta = json.loads(data["preprocess.json"])
    arrays = {}
    for name, b in data.items():
        if name.startswith("preprocess_") and name.endswith(".npy"):
            arrays[name[len("preprocess_") : -4]] = np.load(io.BytesIO(b), allow_pickle=False)
    try:
        pre = Preprocessor.from_state(pmeta, arrays)
    except (KeyError, ValueError) as e:
        raise BundleError(f"Bundle {redact(url)!r} has invalid preprocessing state: {e}") from e
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data["booster.ubj"]))
    except xgboost.core.XGBoostError as e:
        raise BundleError(f"Bundle {redact(url)!r} has an unreadable booster: {e}") from e
    info: dict[str, Any] = {
        k: manifest.get(k)
        for k in (
            "metrics",
            "timings",
            "config",
            "best_iteration",
            "rounds",
            "counts",
            "kind",
            "objective",
        )
        if k in manifest
    }
    info["history"] = json.loads(data["history.json"])
    info["manifest"] = manifest
    return Model(
        preprocessor=pre,
        booster=booster,
        task=manifest["task"],
        target=manifest["target"],
        classes=manifest["classes"],
        key=manifest.get("key"),
        input_dtypes={c["name"]: c["dtype"] for c in manifest["input_columns"]},
        info=info,
    )
