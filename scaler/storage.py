"""Everything that touches storage goes through here: URL -> filesystem,
reading partitioned Parquet as a Dask dataframe, and writing outputs.

Any fsspec URL works: local paths, ``file://``, ``memory://``, ``s3://``
(s3fs), ``gcs://`` (gcsfs), ``http(s)://`` (read-only; folders need an
HTML page of links, as served by ``python -m http.server``) and chained
forms such as ``simplecache::s3://bucket/data``. Backend options travel as
``storage_options``; for a chained URL, options that are not keyed by
protocol go to the innermost (remote) filesystem.

Committed outputs
-----------------
Object stores have no atomic rename, so scaler never relies on one. A
Parquet output written by :func:`write_parquet` is laid out as::

    OUT/_SUCCESS               the commit point: JSON naming the version and its files
    OUT/v-<id>/part.N.parquet  the data of the committed version
    OUT/_WRITING               only while a first write to a fresh URL is unfinished

A write fills a new ``v-<id>/`` folder next to the previous one, then
replaces ``_SUCCESS`` in one PUT (a single object write is atomic on S3,
GCS and Azure; on local disk it is a write to a temporary file and
``os.replace``), and only then deletes the previous version. So:

* scaler readers (:func:`read_dataset`, ``scaler predict``,
  ``scaler inspect``) read exactly the files ``_SUCCESS`` lists: until the
  new ``_SUCCESS`` lands they see the previous version, complete, and after
  it the new one, complete, never a mix;
* a fresh output whose write died has ``_WRITING`` and no ``_SUCCESS``:
  scaler readers refuse it (:class:`IncompleteOutputError`); a listed file
  that is gone is refused the same way;
* a crash leaves an orphan ``v-<id>/`` folder that readers ignore and the
  next write removes. Plain Parquet readers that list the folder
  (``pandas.read_parquet(OUT)``) see exactly one version except while a
  write is in progress; read through scaler when writers may be running.

Model bundles (:mod:`scaler.bundle`) follow the same rule with
``manifest.json`` as their commit point.

Reading
-------
:func:`read_dataset` checks the URL, reads the footer of every file (only
the footers: no data pages) to name a corrupt file or a column whose type
differs between files, then hands the URL to ``dask.dataframe.read_parquet``
with the column projection and filters pushed down. With ``cache="local"``
remote files are read through fsspec's ``simplecache`` into a local folder
keyed by a fingerprint of the input files (path, size, ETag or mtime): a
second read of unchanged files makes no data requests, and a changed file
gets a fresh cache entry instead of a stale one. As a run starts, the
folders of other versions that no run has started with for
``[data] cache_keep_days`` days are removed (:func:`prune_cache`), so
that data that changes every day does not fill the disk with copies.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import posixpath
import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.cached import WholeFileCacheFileSystem
from fsspec.implementations.local import LocalFileSystem

from scaler.config import redact
from scaler.errors import (
    DataError,
    DatasetNotFoundError,
    IncompleteOutputError,
    InputError,
    StorageAccessError,
)

__all__ = [
    "get_fs",
    "join",
    "read_dataset",
    "write_bytes",
    "read_bytes",
    "list_files",
    "file_details",
    "fingerprint_files",
    "read_footer",
    "check_files",
    "committed_files",
    "write_parquet",
    "remove",
    "cache_dir",
]

_BACKEND_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "http": "aiohttp",
    "https": "aiohttp",
    "abfs": "adlfs",
    "az": "adlfs",
}

SUCCESS = "_SUCCESS"
WRITING = "_WRITING"
OUTPUT_FORMAT = "scaler-output"
CACHE_MODES = ("none", "local")
_FOOTER_BLOCK = 1 << 16
# Filesystems whose files read_dataset reads from local disk (filecache and
# simplecache, its subclass, hold whole files there).
_LOCAL_READS = (LocalFileSystem, WholeFileCacheFileSystem)
# What dask.dataframe.read_parquet reads in a folder; other files are ignored.
PARQUET_EXTENSIONS = (".parq", ".parquet", ".pq")
# Files smaller than this (uncompressed, as their footers say) may be read
# several to a partition: see group_bytes.
PARTITION_BYTES = 100 * 2**20


def _safe(url: str) -> str:
    return redact(url)


def _protocols(url: str) -> list[str]:
    """Protocols of a (possibly chained) URL, outermost first."""
    out = []
    for bit in url.split("::"):
        out.append(bit.split("://", 1)[0] if "://" in bit else "file")
    return out


def route_options(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """``storage_options`` for fsspec: for a chained URL such as
    ``simplecache::s3://b/k``, options not keyed by one of its protocols
    are meant for the innermost (remote) filesystem."""
    so = dict(storage_options or {})
    if "::" not in url or not so:
        return so
    protos = _protocols(url)
    if any(k in protos for k in so):
        return so
    return {protos[-1]: so}


def get_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Return ``(filesystem, path)`` for ``url``, with a clear error when the
    backend package is missing."""
    try:
        return url_to_fs(url, **route_options(url, storage_options))
    except ImportError as e:
        protocol = url.split("::")[-1].split("://")[0] if "://" in url else "file"
        pkg = _BACKEND_PACKAGES.get(protocol, "the fsspec backend package")
        raise InputError(
            f"Cannot open {_safe(url)!r}: the {protocol}:// filesystem needs {pkg}. "
            f"Install it with `pip install {pkg}` (or `pip install 'scaler[s3]'` for S3)."
        ) from e
    except ValueError as e:
        raise InputError(f"Cannot open {_safe(url)!r}: {redact(str(e))}") from e


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL (keeps the protocol and chained prefixes)."""
    return posixpath.join(url.rstrip("/"), *parts) if parts else url


def _map_storage_error(e: BaseException, url: str) -> BaseException:
    if isinstance(e, (InputError,)):
        return e
    if isinstance(e, FileNotFoundError):
        return DatasetNotFoundError(
            f"Nothing found at {_safe(url)!r}. Check the URL (bucket, prefix, spelling) "
            "and that the data was written there."
        )
    if isinstance(e, PermissionError) or type(e).__name__ in (
        "NoCredentialsError",
        "PartialCredentialsError",
    ):
        return StorageAccessError(
            f"Access to {_safe(url)!r} was denied. Check the credentials: pass them in "
            "storage_options (key/secret/token, or profile) or the usual environment "
            "variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY...)."
        )
    return e


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(("_", ".")) for part in rel.strip("/").split("/"))


def _listing(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str, dict]:
    """``(fs, root, {path: info})`` of everything below ``url`` (or the file itself)."""
    fs, path = get_fs(url, storage_options)
    try:
        http = _protocols(url)[-1] in ("http", "https")
        if http and (path.endswith(".parquet") or not fs.isdir(path)):
            found = {path: fs.info(path)}  # a single file over HTTP
        elif fs.isdir(path):
            found = fs.find(path, detail=True)
        elif fs.exists(path):
            found = {path: fs.info(path)}
        else:
            raise FileNotFoundError(path)
    except Exception as e:  # noqa: BLE001 - mapped to clear errors below
        mapped = _map_storage_error(e, url)
        if mapped is e:
            raise
        raise mapped from e
    return fs, path, found


def _rel(root: str, path: str) -> str:
    root = root.rstrip("/")
    return path[len(root) :].strip("/") if path.startswith(root) else posixpath.basename(path)


def committed_files(
    url: str, storage_options: dict[str, Any] | None = None, *, _listed: Any = None
) -> list[str] | None:
    """Files (relative paths) of the committed version when ``url`` is a
    scaler output, ``None`` when it is plain Parquet. Raises
    :class:`IncompleteOutputError` for an uncommitted or partial output."""
    fs, root, found = _listed or _listing(url, storage_options)
    rels = {_rel(root, p) for p in found}
    if SUCCESS in rels:
        try:
            info = json.loads(read_bytes(join(url, SUCCESS), storage_options))
        except ValueError:
            info = None
        if isinstance(info, dict) and info.get("format") == OUTPUT_FORMAT:
            files = [str(f) for f in info.get("files", [])]
            missing = [f for f in files if f not in rels]
            if missing:
                raise IncompleteOutputError(
                    f"The scaler output at {_safe(url)!r} is partial: {missing[:5]} listed in "
                    f"{SUCCESS} are missing. Write it again."
                )
            return files
    if WRITING in rels:
        raise IncompleteOutputError(
            f"The scaler output at {_safe(url)!r} was never committed: a write started "
            f"({WRITING} is there) but {SUCCESS} was not written, so the data may be "
            "partial. Run the command that writes it again."
        )
    return None


def list_files(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Parquet data files (``.parquet``, ``.parq``, ``.pq``; not hidden or
    ``_``-prefixed) below ``url`` (recursively), sorted; a single file
    URL lists itself; for a committed scaler output, the files of its
    committed version. Raises :class:`DatasetNotFoundError` when nothing is
    there, :class:`IncompleteOutputError` for a partial scaler output."""
    return [d["name"] for d in file_details(url, storage_options)]


def file_details(url: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Like :func:`list_files` with ``name``, ``url``, ``size`` and
    ``version`` (ETag, else mtime) of every data file."""
    listed = _listing(url, storage_options)
    fs, root, found = listed
    committed: list[str] | None = None
    if len(found) == 1 and next(iter(found)) == root:
        names = [root]
    else:
        committed = committed_files(url, storage_options, _listed=listed)
        if committed is not None:
            names = [posixpath.join(root.rstrip("/"), f) for f in committed]
        else:
            names = sorted(
                p
                for p, info in found.items()
                if info.get("type", "file") == "file"
                and not _is_hidden(_rel(root, p))
                and p.endswith(PARQUET_EXTENSIONS)
            )
    if not names:
        raise DatasetNotFoundError(
            f"No data files found at {_safe(url)!r} (only hidden or marker files). Check the "
            "URL and that the data was written there."
        )
    out = []
    for n in names:
        info = found.get(n, {})
        version = next(
            (
                info[k]
                for k in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "created")
                if info.get(k) is not None
            ),
            None,
        )
        rel = _rel(root, n)
        out.append(
            {
                "name": n,
                "url": join(url, rel) if n != root else url,
                "rel": rel if n != root else posixpath.basename(n),
                "size": info.get("size"),
                "version": str(version) if version is not None else None,
                "committed": committed is not None,
            }
        )
    return out


def partition_values(rel: str) -> dict[str, str]:
    """Hive partition keys and values in a relative path (``month=1/x.parquet``)."""
    out = {}
    for part in rel.strip("/").split("/")[:-1]:
        k, eq, v = part.partition("=")
        if eq and k:
            out[k] = v
    return out


def _matches(raw: str, op: str, value: Any) -> bool:
    def cast(v: Any) -> Any:
        if isinstance(v, bool):
            return raw.lower() in ("true", "1")
        try:
            return type(v)(raw) if isinstance(v, (int, float)) else raw
        except ValueError:
            return raw

    if op in ("in", "not in"):
        hit = any(cast(v) == v for v in value)
        return hit if op == "in" else not hit
    x = cast(value)
    try:
        return {
            "==": x == value,
            "=": x == value,
            "!=": x != value,
            "<": x < value,
            "<=": x <= value,
            ">": x > value,
            ">=": x >= value,
        }[op]
    except TypeError:
        return True  # not comparable here: let the reader decide


def prune_partitions(
    details: list[dict[str, Any]], filters: Sequence[Sequence[Any]] | None
) -> list[dict[str, Any]]:
    """The files whose hive partition values can match ``filters`` (filters on
    other columns keep every file): what the reader will open."""
    if not filters:
        return details
    out = []
    for d in details:
        keys = partition_values(d["rel"])
        if all(_matches(keys[c], op, v) for c, op, v in (tuple(f) for f in filters) if c in keys):
            out.append(d)
    return out


def fingerprint_files(details: list[dict[str, Any]]) -> str:
    """sha256 of the paths, sizes and versions (ETag/mtime) of files."""
    items = [[d["name"], d["size"], d["version"]] for d in details]
    return hashlib.sha256(json.dumps(items, default=str).encode()).hexdigest()


def cache_dir(base: str | None = None) -> str:
    """Local folder for cached remote data: ``base``, else ``$SCALER_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/scaler`` (``~/.cache/scaler``)."""
    if base:
        return os.path.abspath(os.path.expanduser(base))
    env = os.environ.get("SCALER_CACHE_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "scaler")


def _cached(
    url: str, storage_options: dict[str, Any] | None, fp: str, base: str | None
) -> tuple[str, dict[str, Any]]:
    """URL and options that read ``url`` through a local ``simplecache``."""
    protos = _protocols(url)
    if protos[0] in ("simplecache", "filecache", "blockcache") or protos[-1] in ("file", "memory"):
        return url, route_options(url, storage_options)
    if "::" in url:
        inner = route_options(url, storage_options)
    else:
        inner = {protos[-1]: dict(storage_options)} if storage_options else {}
    folder = cache_folder(fp, base)
    with contextlib.suppress(OSError):  # in use from now (where it is on this machine)
        os.utime(folder)
    return "simplecache::" + url, {**inner, "simplecache": {"cache_storage": folder}}


def cache_folder(fp: str, base: str | None = None) -> str:
    """The folder that caches the version of the input files whose
    :func:`fingerprint_files` is ``fp``."""
    return os.path.join(cache_dir(base), "data", fp[:32])


_CACHE_NAME = re.compile(r"[0-9a-f]{32}")  # a folder, as cache_folder names it
_CACHED_FILE = re.compile(r"[0-9a-f]{64}")  # a file in it, as fsspec's simplecache names it
_DOOMED = re.compile(r"[0-9a-f]{32}\.pruning-[0-9a-f]{8}")  # renamed to be removed


def _only_cached_files(path: str) -> bool:
    """True when ``path`` holds nothing but files named as simplecache
    names them: a folder of scaler's cache, not something else that
    happens to have such a name."""
    try:
        with os.scandir(path) as entries:
            return all(
                e.is_file(follow_symlinks=False) and _CACHED_FILE.fullmatch(e.name) for e in entries
            )
    except OSError:
        return False


def prune_cache(
    keep: str,
    days: float,
    dask_worker: Any = None,
    *,
    now: float | None = None,
    background: bool = False,
) -> list[str]:
    """Mark the cache folder ``keep`` (:func:`cache_folder`) as used now and
    remove its siblings, the folders of other versions of input files, that
    nothing has used for ``days`` days: by their modification time, which
    a run sets when it starts (here and on its workers) and simplecache
    when it adds a file. With several settings for one cache folder, the
    shortest wins. A folder is removed only if it holds nothing but
    simplecache's files; it is renamed first, so that a run starting on it
    meanwhile finds no half-removed folder. Errors are ignored (another
    process may prune the same folder). Returns the folders removed; with
    ``background``, returns at once and removes them in a thread of this
    process. ``dask_worker`` lets ``Client.run`` call it on a worker, where
    its cache is."""
    import threading
    import time

    with contextlib.suppress(OSError):
        os.utime(keep)
    limit = (time.time() if now is None else now) - days * 86400.0
    if background:
        threading.Thread(
            target=_prune, args=(keep, limit), name="scaler-prune-cache", daemon=True
        ).start()
        return []
    return _prune(keep, limit)


def _prune(keep: str, limit: float) -> list[str]:
    import shutil

    parent = os.path.dirname(keep)
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if _DOOMED.fullmatch(name):  # left by a process that ended while removing it
            shutil.rmtree(path, ignore_errors=True)
            continue
        if path == keep or not _CACHE_NAME.fullmatch(name):
            continue
        try:
            if not os.path.isdir(path) or os.path.getmtime(path) >= limit:
                continue
            if not _only_cached_files(path):
                continue
            doomed = f"{path}.pruning-{uuid.uuid4().hex[:8]}"
            os.rename(path, doomed)  # atomic: one of several pruners gets it
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def _open_small(fs: Any, path: str) -> Any:
    """Open for reading footers: small blocks so only the tail is fetched."""
    try:
        return fs.open(path, "rb", block_size=_FOOTER_BLOCK, cache_type="readahead")
    except TypeError:
        return fs.open(path, "rb")


def read_footer(fs: Any, path: str, url: str | None = None) -> Any:
    """The Parquet footer (``pyarrow.parquet.FileMetaData``) of one file,
    reading only the end of the file. Raises :class:`DataError` naming the
    file when it is not valid Parquet."""
    import pyarrow.parquet as pq

    try:
        with _open_small(fs, path) as f:
            return pq.read_metadata(f)
    except (FileNotFoundError, PermissionError) as e:
        raise _map_storage_error(e, url or path) from e
    except Exception as e:  # noqa: BLE001
        mapped = _map_storage_error(e, url or path)
        if mapped is not e:
            raise mapped from e
        raise DataError(
            f"File {_safe(url or path)!r} is not a readable Parquet file (corrupt or "
            f"truncated?): {type(e).__name__}: {redact(str(e))}. Remove or rewrite it."
        ) from e


def check_files(fs: Any, details: list[dict[str, Any]], *, threads: int = 8) -> list[Any]:
    """Read every file's footer (in parallel) and check that they agree on
    the schema. Returns the footers; raises :class:`DataError` naming the
    file (and column) that is corrupt or disagrees with the first file."""
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(details)))) as pool:
        metas = list(pool.map(lambda d: read_footer(fs, d["name"], d["url"]), details))
    first = metas[0].schema.to_arrow_schema()
    ref = {f.name: f.type for f in first}
    for d, m in zip(details[1:], metas[1:], strict=True):
        other = {f.name: f.type for f in m.schema.to_arrow_schema()}
        for name, tp in ref.items():
            if name not in other:
                raise DataError(
                    f"File {_safe(d['url'])!r} has no column {name!r}, which "
                    f"{_safe(details[0]['url'])!r} has: the files' schemas disagree. Rewrite "
                    "the file with the same columns, or remove it."
                )
            if other[name] != tp:
                raise DataError(
                    f"Column {name!r} is {other[name]} in file {_safe(d['url'])!r} but {tp} in "
                    f"{_safe(details[0]['url'])!r}: the files' schemas disagree. Rewrite the "
                    "file with the same types, or remove it."
                )
        extra = [n for n in other if n not in ref]
        if extra:
            raise DataError(
                f"File {_safe(d['url'])!r} has column(s) {extra} that "
                f"{_safe(details[0]['url'])!r} does not have: the files' schemas disagree. "
                "Rewrite the file with the same columns, or remove it."
            )
    return metas


def _uncompressed(meta: Any) -> int:
    """A Parquet file's uncompressed size, from its footer."""
    return int(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)))


def group_bytes(sizes: Sequence[int] | None, min_partitions: int) -> int | None:
    """The ``group_bytes`` of :func:`read_dataset` for files of uncompressed
    ``sizes`` read by a cluster that runs ``min_partitions`` tasks at once
    (or more): None (a partition per file) unless every file is smaller
    than PARTITION_BYTES; then partitions of about that size or more, in
    a number that is a multiple of ``min_partitions`` (and at least it, so
    every thread has a share).

    Small partitions cost a task each in every pass, and a scheduler round
    trip: 16 files of 2M rows x 50 float32 columns read as 4 partitions
    instead of 16 took 0.87 to 0.89 s to read, scan and transform on 1
    worker x 2 threads, instead of 1.12 to 1.18 s (three runs each on fresh
    clusters), and the whole run 7.5 to 7.7 s instead of 8.1 to 8.6 s.

    >>> group_bytes([40 * 2**20] * 16, 4) // 2**20, group_bytes([2**30] * 4, 4)
    (160, None)
    """
    if not sizes or len(sizes) < 2 or min_partitions < 1:
        return None
    if max(sizes) >= PARTITION_BYTES or min(sizes) <= 0:
        return None
    n = sum(sizes) // PARTITION_BYTES // min_partitions * min_partitions
    n = min(len(sizes), max(min_partitions, n))
    per = math.ceil(len(sizes) / n)
    return None if per < 2 else per * max(sizes) + 1


def grouping_options(group_bytes: int) -> dict[str, Any]:
    """The ``dask.dataframe.read_parquet`` options that read consecutive
    files into partitions of at most ``group_bytes`` uncompressed bytes."""
    return {"split_row_groups": "adaptive", "blocksize": group_bytes, "aggregate_files": True}


def read_options(fs: Any) -> dict[str, Any]:
    """The ``dd.read_parquet`` options :func:`read_dataset` adds for files
    on the filesystem ``fs``. Arrow's pre-buffering fetches all the column
    chunks of a row group up front, coalesced into a few large reads: that
    pays on object stores, where each read is a request, and is kept there.
    From a local disk (or a local cache of whole files) it only adds a copy
    of the chunks before they are decoded, so it is off there: for plain
    reads (``read``) and for reads with row filters, which Dask makes
    through ``pyarrow.dataset`` (``dataset``: the file format's scan
    options)."""
    if not isinstance(fs, _LOCAL_READS):
        return {}
    import pyarrow.dataset as pa_ds

    scan = pa_ds.ParquetFragmentScanOptions(pre_buffer=False)
    return {
        "read": {"pre_buffer": False},
        "dataset": {"format": pa_ds.ParquetFileFormat(default_fragment_scan_options=scan)},
    }


def _arrow_float(t: Any) -> Any:
    """pyarrow ``types_mapper``: float32 and float64 columns stay Arrow-backed."""
    import pandas as pd
    import pyarrow as pa

    return pd.ArrowDtype(t) if t in (pa.float32(), pa.float64()) else None


class _ArrowToPandas(dict):  # type: ignore[type-arg]
    """``arrow_to_pandas`` options for ``dd.read_parquet`` whose
    ``types_mapper`` stays :func:`_arrow_float`. Dask's reader stores its
    own mapper, which wraps the one it finds, back into the dict it is
    given; every partition read in one process (threads, or an in-process
    cluster) shares that dict, so the wrappers would nest one level per
    partition until Python's recursion limit. Dask reads the mapper with
    ``get``, and this one always answers with the original."""

    def __init__(self) -> None:
        super().__init__(types_mapper=_arrow_float)

    def get(self, key: Any, default: Any = None) -> Any:
        return _arrow_float if key == "types_mapper" else super().get(key, default)

    def __reduce__(self) -> Any:
        return (_ArrowToPandas, ())


def read_dataset(
    url: str,
    *,
    columns: Sequence[str] | None = None,
    filters: Sequence[Sequence[Any]] | None = None,
    storage_options: dict[str, Any] | None = None,
    cache: str = "none",
    cache_dir: str | None = None,
    check: bool = True,
    info: dict[str, Any] | None = None,
    group_bytes: int | None = None,
    arrow_floats: bool = False,
) -> Any:
    """Read Parquet at ``url`` as a lazy Dask dataframe.

    ``columns`` and ``filters`` are pushed down to the Parquet reader (column
    projection, row-group statistics and hive partition pruning). The URL is
    checked before anything else so that a typo gives a clear error, and
    (``check=True``) every file's footer is read to name a corrupt file or
    a column whose type differs between files. ``cache="local"`` reads
    remote files through a local cache (see the module docstring). With
    ``check=True`` and an ``info`` dict, ``info["rows"]`` receives the
    number of rows the footers declare (before row filters), and
    ``info["file_bytes"]`` each file's uncompressed size (None when the
    data is hive-partitioned).

    With ``group_bytes``, consecutive files are read into one partition
    while their uncompressed sizes add up to at most that many bytes
    (Dask's ``blocksize`` with ``aggregate_files``; a larger file is a
    partition of its own): one Arrow table per partition, converted to
    pandas once. It is ignored for hive-partitioned data;
    :func:`group_bytes` chooses it.

    With ``arrow_floats``, float columns are Arrow-backed
    (``pd.ArrowDtype``): the frame wraps the buffers the Parquet reader
    decoded them into, where a NumPy-backed frame copies them into one
    2-D block. Other columns are converted as usual.

    Files on local disk, and those read through the local cache, are read
    without Arrow's pre-buffering (:func:`read_options`).

    Examples
    --------
    >>> from scaler import read_dataset
    >>> df = read_dataset("data/", columns=["x0", "label"])  # doctest: +SKIP
    """
    import dask.dataframe as dd

    if cache not in CACHE_MODES:
        raise InputError(f"cache must be one of {list(CACHE_MODES)}; got {cache!r}.")
    details = file_details(url, storage_options)  # clear errors for a wrong URL
    details = prune_partitions(details, filters) or details[:1]
    so: dict[str, Any] | None = route_options(url, storage_options) or None
    src = url
    if cache == "local":
        fp = fingerprint_files(details)
        src, so = _cached(url, storage_options, fp, cache_dir)
        so = so or None
        if info is not None and src.startswith("simplecache::"):
            info["cache_folder"] = cache_folder(fp, cache_dir)
    fs = get_fs(src, so)[0]
    hive = any(partition_values(d["rel"]) for d in details)
    grouping: dict[str, Any] = {}
    if group_bytes and not hive and len(details) > 1:
        grouping = grouping_options(group_bytes)
    if check:
        metas = check_files(fs, details)
        if info is not None:
            info["rows"] = int(sum(m.num_rows for m in metas))
            info["file_bytes"] = None if hive else [_uncompressed(m) for m in metas]
    committed = details[0]["committed"]
    plain_http = _protocols(url)[-1] in ("http", "https") and len(details) > 1
    if committed or plain_http:
        target: Any = [join(src, d["rel"]) for d in details]
    else:
        target = src
    flt = [tuple(f) if f[1] != "=" else (f[0], "==", f[2]) for f in (filters or [])]

    def open_(with_filters: bool) -> Any:
        try:
            return dd.read_parquet(
                target,
                filters=(flt or None) if with_filters else None,
                storage_options=so,
                **grouping,
                **read_options(fs),  # new each time: Dask adds to the dicts it is given
                **({"arrow_to_pandas": _ArrowToPandas()} if arrow_floats else {}),
            )
        except Exception as e:  # noqa: BLE001
            mapped = _map_storage_error(e, url)
            if mapped is not e:
                raise mapped from e
            raise DataError(
                f"Could not read Parquet at {_safe(url)!r}: {type(e).__name__}: "
                f"{redact(str(e))}. Check that every file below the URL is a valid Parquet "
                "file with the same schema."
            ) from e

    df = open_(with_filters=False)
    if flt:
        missing = [f[0] for f in flt if f[0] not in df.columns]
        if missing:
            raise DataError(
                f"Filter column(s) {missing} not found in {_safe(url)!r}. Available columns: "
                f"{', '.join(map(str, df.columns))}."
            )
        df = open_(with_filters=True)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(
                f"Column(s) {missing} not found in {_safe(url)!r}. Available columns: "
                f"{', '.join(map(str, df.columns))}."
            )
        df = df[list(columns)]
    return df


def _is_scaler_output(url: str, storage_options: dict[str, Any] | None) -> bool:
    try:
        info = json.loads(read_bytes(join(url, SUCCESS), storage_options))
    except Exception:  # noqa: BLE001 - not a scaler output
        return False
    return isinstance(info, dict) and info.get("format") == OUTPUT_FORMAT


def write_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` to ``url``, creating parent folders. The write is
    all-or-nothing: one PUT on object stores, a temporary file then
    ``os.replace`` on local disk."""
    fs, path = get_fs(url, storage_options)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    with fs.open(path, "wb") as f:
        f.write(data)


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read the bytes at ``url``."""
    fs, path = get_fs(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except Exception as e:  # noqa: BLE001
        mapped = _map_storage_error(e, url)
        if mapped is e:
            raise
        raise mapped from e


def remove(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove ``url`` recursively if it exists."""
    fs, path = get_fs(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether anything is at ``url``."""
    fs, path = get_fs(url, storage_options)
    return bool(fs.exists(path))


def open_fs(url: str, storage_options: dict[str, Any] | None = None) -> fsspec.AbstractFileSystem:
    """The filesystem for ``url``."""
    return get_fs(url, storage_options)[0]


def new_version() -> str:
    """A sortable, unique version folder name ``v-<UTC time>-<random>``."""
    return "v-" + _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def write_parquet(
    df: Any, url: str, *, storage_options: dict[str, Any] | None = None, rows: int | None = None
) -> int:
    """Write a Dask dataframe as partitioned Parquet at ``url`` and return
    the number of rows, as a committed output (see the module docstring):
    a new version folder, then ``_SUCCESS`` naming it, then the previous
    version is removed. Until ``_SUCCESS`` is replaced, readers still get
    the previous output. ``rows``, the frame's length when the caller
    knows it, saves counting the rows first.
    """
    fs, path = get_fs(url, storage_options)
    if rows is None:
        rows = int(sum(df.map_partitions(len).compute()))
    if fs.exists(path) and not _is_scaler_output(url, storage_options):
        fs.rm(path, recursive=True)  # not a committed scaler output: nothing to keep
    if not fs.exists(path):
        write_bytes(join(url, WRITING), b"{}", storage_options)
    version = new_version()
    df.to_parquet(
        join(url, version),
        storage_options=route_options(url, storage_options) or None,
        write_index=False,
    )
    vdir = posixpath.join(path.rstrip("/"), version)
    files = sorted(
        posixpath.join(version, _rel(vdir, f)) for f in fs.find(vdir) if f.endswith(".parquet")
    )
    info = {
        "format": OUTPUT_FORMAT,
        "format_version": 1,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "version": version,
        "rows": rows,
        "files": files,
    }
    write_bytes(join(url, SUCCESS), json.dumps(info, indent=1).encode(), storage_options)
    # Committed: remove the previous version, orphans of crashed writes and the marker.
    for entry in fs.ls(path, detail=False):
        base = posixpath.basename(entry.rstrip("/"))
        if base not in (SUCCESS, version):
            fs.rm(entry, recursive=True)
    return rows


def prune(
    url: str, *, prefix: str, keep: str, storage_options: dict[str, Any] | None = None
) -> None:
    """Remove the entries of folder ``url`` named ``prefix*`` except ``keep``:
    older versions, once the commit point names a new one (and orphans of
    crashed writes)."""
    fs, root = get_fs(url, storage_options)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        base = posixpath.basename(entry.rstrip("/"))
        if base.startswith(prefix) and base != keep:
            fs.rm(entry, recursive=True)
