"""``scaler inspect``: what a Parquet dataset holds, from the files' footers
only (no data pages are read): files, hive partition keys and values, row
counts, schema, sizes, and a suggestion when partitions are far from the
size Dask works best with.

Examples
--------
>>> from scaler.inspect import inspect_dataset
>>> info = inspect_dataset("data/")  # doctest: +SKIP
>>> print(info.render())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scaler import storage
from scaler.config import redact

__all__ = ["inspect_dataset", "DatasetInfo", "FileInfo"]

MB = 1 << 20
GOOD_MIN, GOOD_MAX = 100 * MB, 1024 * MB  # Dask's sweet spot per partition (in memory)


@dataclass
class FileInfo:
    """One data file: relative path, bytes on storage, rows, row groups and
    the uncompressed size of its column chunks (about its size in memory)."""

    path: str
    size: int
    rows: int
    row_groups: int
    uncompressed: int


@dataclass
class DatasetInfo:
    """What :func:`inspect_dataset` found."""

    url: str
    files: list[FileInfo]
    partitions: dict[str, list[str]]
    schema: list[tuple[str, str]]
    committed_output: bool = False
    suggestion: str | None = None
    rows: int = field(init=False)
    size: int = field(init=False)
    uncompressed: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = sum(f.rows for f in self.files)
        self.size = sum(f.size for f in self.files)
        self.uncompressed = sum(f.uncompressed for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = [{"name": n, "type": t} for n, t in self.schema]
        return d

    def render(self, *, max_files: int = 20) -> str:
        lines = [
            f"Dataset {redact(self.url)}"
            + (" (committed scaler output)" if self.committed_output else ""),
            f"  files: {len(self.files):,}   rows: {self.rows:,}   size: {_h(self.size)} on "
            f"storage, ~{_h(self.uncompressed)} uncompressed",
        ]
        if self.partitions:
            lines.append("  partition keys:")
            for k, vals in self.partitions.items():
                shown = ", ".join(vals[:20]) + (", ..." if len(vals) > 20 else "")
                lines.append(f"    {k}: {len(vals)} value(s): {shown}")
        lines.append(f"  schema ({len(self.schema)} columns):")
        for n, t in self.schema:
            lines.append(f"    {n}: {t}")
        lines.append("  files:")
        for f in self.files[:max_files]:
            lines.append(
                f"    {f.path}  {_h(f.size)}  {f.rows:,} rows  {f.row_groups} row group(s)"
            )
        if len(self.files) > max_files:
            lines.append(f"    ... and {len(self.files) - max_files:,} more")
        if self.suggestion:
            lines.append(f"Suggestion: {self.suggestion}")
        return "\n".join(lines)


def _h(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _partitions(paths: list[str]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for p in paths:
        for k, v in storage.partition_values(p).items():
            out.setdefault(k, set()).add(v)

    def key(v: str) -> Any:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return {k: sorted(v, key=key) for k, v in out.items()}


def suggest(files: list[FileInfo]) -> str | None:
    """A hint when the average partition (one file) is far from 100 MB–1 GB in memory."""
    if not files:
        return None
    n = len(files)
    total = sum(f.uncompressed for f in files)
    avg = total / n
    if avg < GOOD_MIN / 2 and n > 1:
        target = max(1, round(total / (256 * MB)))
        return (
            f"the {n:,} files average ~{_h(avg)} in memory; Dask works best with partitions "
            f"of 100 MB-1 GB, and with small ones per-task overhead dominates. scaler run "
            f"reads such files several to a partition (unless hive-partitioned), but each "
            f"one still costs a request and a footer: rewrite the data as about {target:,} "
            f"file(s), e.g. "
            "dd.read_parquet(URL).repartition(partition_size='256MB').to_parquet(NEW_URL)."
        )
    if avg > GOOD_MAX * 2:
        return (
            f"the files average ~{_h(avg)} in memory, more than the 100 MB-1 GB Dask works "
            "best with: a worker needs several times that in RAM. Write more, smaller files "
            "(or row groups of ~128 MB and read with split_row_groups)."
        )
    return None


def inspect_dataset(url: str, storage_options: dict[str, Any] | None = None) -> DatasetInfo:
    """Describe the Parquet dataset at ``url`` from its files' footers.

    Raises the errors of :func:`scaler.storage.read_dataset` for a missing
    URL, a corrupt file or files whose schemas disagree.
    """
    details = storage.file_details(url, storage_options)
    fs = storage.get_fs(url, storage_options)[0]
    metas = storage.check_files(fs, details)
    files = []
    for d, m in zip(details, metas, strict=True):
        unc = sum(m.row_group(i).total_byte_size for i in range(m.num_row_groups))
        size = d["size"] if d["size"] is not None else m.serialized_size
        files.append(FileInfo(d["rel"], int(size), m.num_rows, m.num_row_groups, int(unc)))
    schema = [(f.name, str(f.type)) for f in metas[0].schema.to_arrow_schema()]
    parts = _partitions([d["rel"] for d in details])
    return DatasetInfo(
        url=url,
        files=files,
        partitions=parts,
        schema=schema,
        committed_output=bool(details[0].get("committed")),
        suggestion=suggest(files),
    )
