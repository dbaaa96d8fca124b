"""Everything that touches storage goes through here: URL -> filesystem,
reading partitioned Parquet as a Dask dataframe, and writing outputs.

Any fsspec URL works: local paths, ``file://``, ``memory://``, ``s3://``
(s3fs), ``gcs://`` (gcsfs), ``http(s)://`` and chained forms such as
``simplecache::s3://bucket/data``. Backend options travel as
``storage_options``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from scaler.config import redact
from scaler.errors import DataError, DatasetNotFoundError, InputError, StorageAccessError

__all__ = [
    "get_fs",
    "join",
    "read_dataset",
    "write_bytes",
    "read_bytes",
    "list_files",
    "remove",
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


def _safe(url: str) -> str:
    return redact(url)


def get_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Return ``(filesystem, path)`` for ``url``, with a clear error when the
    backend package is missing."""
    try:
        return url_to_fs(url, **(storage_options or {}))
    except ImportError as e:
        protocol = url.split("::")[-1].split("://")[0] if "://" in url else "file"
        pkg = _BACKEND_PACKAGES.get(protocol, "the fsspec backend package")
        raise InputError(
            f"Cannot open {_safe(url)!r}: the {protocol}:// filesystem needs {pkg}. "
            f"Install it with `pip install {pkg}` (or `pip install 'scaler[s3]'` for S3)."
        ) from e
    except ValueError as e:
        raise InputError(f"Cannot open {_safe(url)!r}: {e}") from e


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
    if isinstance(e, PermissionError):
        return StorageAccessError(
            f"Access to {_safe(url)!r} was denied. Check the credentials: pass them in "
            "storage_options (key/secret/token, or profile) or the usual environment "
            "variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY...)."
        )
    return e


def list_files(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Parquet data files below ``url`` (recursively), sorted; a single file
    URL lists itself. Raises :class:`DatasetNotFoundError` when nothing is there."""
    fs, path = get_fs(url, storage_options)
    try:
        if not fs.exists(path):
            raise FileNotFoundError(path)
        if fs.isfile(path):
            return [path]
        found = fs.find(path)
    except Exception as e:  # noqa: BLE001 - mapped to clear errors below
        raise _map_storage_error(e, url) from e
    root = path.rstrip("/")
    files = sorted(
        f
        for f in found
        if not any(part.startswith(("_", ".")) for part in f[len(root) :].strip("/").split("/"))
    )
    return files


def read_dataset(
    url: str,
    *,
    columns: Sequence[str] | None = None,
    filters: Sequence[Sequence[Any]] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """Read Parquet at ``url`` as a lazy Dask dataframe.

    ``columns`` and ``filters`` are pushed down to the Parquet reader (column
    projection, row-group statistics and hive partition pruning). The URL is
    checked before anything else so that a typo gives a clear error.

    Examples
    --------
    >>> from scaler import read_dataset
    >>> df = read_dataset("data/", columns=["x0", "label"])  # doctest: +SKIP
    """
    import dask.dataframe as dd

    list_files(url, storage_options)  # raises a clear error for a wrong URL
    flt = [tuple(f) if f[1] != "=" else (f[0], "==", f[2]) for f in (filters or [])]

    def open_(with_filters: bool) -> Any:
        try:
            return dd.read_parquet(
                url,
                filters=(flt or None) if with_filters else None,
                storage_options=storage_options or None,
            )
        except Exception as e:  # noqa: BLE001
            mapped = _map_storage_error(e, url)
            if mapped is not e:
                raise mapped from e
            raise DataError(
                f"Could not read Parquet at {_safe(url)!r}: {type(e).__name__}: {e}. "
                "Check that every file below the URL is a valid Parquet file with the same "
                "schema."
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


def write_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` to ``url``, creating parent folders."""
    fs, path = get_fs(url, storage_options)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
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


SUCCESS = "_SUCCESS"


def write_parquet(df: Any, url: str, *, storage_options: dict[str, Any] | None = None) -> int:
    """Write a Dask dataframe as partitioned Parquet at ``url`` and return
    the number of rows.

    A ``_SUCCESS`` file (JSON: rows and files) is written last; readers of
    scaler outputs treat a folder without it as incomplete. An existing
    output at ``url`` is replaced.
    """
    import json

    fs, path = get_fs(url, storage_options)
    lengths = df.map_partitions(len).compute()
    rows = int(sum(lengths))
    if fs.exists(path):
        fs.rm(path, recursive=True)
    df.to_parquet(url, storage_options=storage_options or None, write_index=False)
    files = sorted(posixpath.basename(f) for f in fs.find(path) if f.endswith(".parquet"))
    write_bytes(
        join(url, SUCCESS),
        json.dumps({"rows": rows, "files": files}).encode(),
        storage_options,
    )
    return rows
