"""Run configuration: typed sections, read from TOML or a dict, fully checked
before any data is touched.

A config has six sections, ``[data]``, ``[split]``, ``[preprocess]``,
``[model]``, ``[cluster]`` and ``[output]``. Unknown sections or keys are
errors that list the valid names, so a typo never goes unnoticed.

Examples
--------
>>> from scaler.config import RunConfig
>>> cfg = RunConfig.from_dict({
...     "data": {"url": "data/", "target": "label"},
...     "output": {"url": "out/"},
... })
>>> cfg.model.rounds
100
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from scaler.errors import ConfigError

__all__ = [
    "RunConfig",
    "DataConfig",
    "SplitConfig",
    "PreprocessConfig",
    "ModelConfig",
    "ClusterConfig",
    "OutputConfig",
    "load_config",
    "BINARY_OBJECTIVES",
    "MULTICLASS_OBJECTIVES",
    "REGRESSION_OBJECTIVES",
    "redact",
]

BINARY_OBJECTIVES = ("binary:logistic",)
MULTICLASS_OBJECTIVES = ("multi:softprob",)
REGRESSION_OBJECTIVES = (
    "reg:squarederror",
    "reg:absoluteerror",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:gamma",
    "reg:tweedie",
    "count:poisson",
)
FILTER_OPS = ("==", "=", "!=", "<", "<=", ">", ">=", "in", "not in")


@dataclass
class DataConfig:
    """Where the data is and which columns play which role.

    Parameters
    ----------
    url : str
        Any fsspec URL or local path of a Parquet file, a folder of Parquet
        files or a hive-partitioned tree (``month=1/part.parquet``).
    target : str
        The column to predict.
    features : list of str or None
        Feature columns; ``None`` means every column except ``target``,
        ``key`` and ``exclude``.
    exclude : list of str
        Columns never used as features.
    filters : list
        pyarrow-style row filters pushed to the Parquet reader, e.g.
        ``[["month", "in", [1, 2]], ["x0", ">", 0]]``.
    storage_options : dict
        Passed to the fsspec filesystem (credentials, ``endpoint_url``...).
    key : str or None
        A column carried through to the predictions (an id).
    cache : {"none", "local"}
        ``"local"`` reads remote files through a local on-disk cache
        (fsspec ``simplecache``) in ``cache_dir``, so that a re-run of
        unchanged files makes no data requests.
    cache_dir : str
        Folder of that cache; empty: ``$SCALER_CACHE_DIR``, else
        ``~/.cache/scaler``. Must be a local path valid on the workers.
    cache_keep_days : int
        Each version of the input files is cached in a folder of its own;
        as a run starts, the folders of other versions that no run has
        started with for this many days are removed (0: keep all; see
        :func:`scaler.storage.prune_cache`).
    """

    url: str = ""
    target: str = ""
    features: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    filters: list[Any] = field(default_factory=list)
    storage_options: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    cache: str = "none"
    cache_dir: str = ""
    cache_keep_days: int = 30


@dataclass
class SplitConfig:
    """How the holdout is chosen.

    Rows are assigned by a seeded hash of ``data.key`` when a key is set
    (stable whatever the partitioning), else by a seeded draw per row of
    each file's partition. ``column`` instead names a boolean/0-1 column
    that marks holdout rows.
    """

    holdout: float = 0.2
    seed: int = 0
    column: str | None = None


@dataclass
class PreprocessConfig:
    """Scaling and PCA of the numeric features.

    ``pca`` is an int (number of components), a float in (0, 1) (keep the
    fewest components that explain that fraction of variance) or false.
    ``method`` is ``"covariance"`` (one exact pass over the data, the
    default) or ``"incremental"`` (dask-ml ``StandardScaler`` and
    ``IncrementalPCA`` over batches of ``batch_size`` rows).
    ``feature_cache`` stores the transformed features under the output URL,
    keyed by a fingerprint of the input files and this config; a re-run
    with nothing changed skips reading, fitting and transforming.
    ``hold_raw`` keeps the raw columns in cluster memory between the
    statistics pass and the transform, so the data is read once: ``"auto"``
    keeps as many partitions as fit a tenth of the cluster's memory limit
    (all of them when the data is small; only the others are read again),
    ``true`` all of them, ``false`` none: the data is read twice and memory
    stays flat however large it is.
    """

    scale: bool = True
    pca: int | float | bool = False
    method: str = "covariance"
    batch_size: int | None = None
    max_categories: int = 1000
    feature_cache: bool = False
    hold_raw: bool | str = "auto"


@dataclass
class ModelConfig:
    """The XGBoost model.

    ``kind`` is ``"xgboost"`` (gradient boosting, ``rounds`` boosting
    rounds) or ``"random_forest"`` (one round of ``rounds`` parallel trees).
    ``early_stopping`` stops after that many rounds without improvement on
    a validation set of ``valid_fraction`` of the training rows; 0 turns it
    off. ``params`` go to XGBoost as they are. A checkpoint of the booster
    is written every ``checkpoint_every`` rounds (0: never) under the output
    URL; after a lost worker training continues from it, up to
    ``max_retries`` times. The "train" learning curve is measured on about
    ``train_eval_rows`` training rows spread over all partitions (all of
    them when there are fewer; 0: not at all).
    The histogram bin edges are chosen from ``bin_sample_rows`` training
    rows spread over all partitions (as LightGBM does by default): evenly
    spaced order statistics of the sample, which saves sketching every row;
    0 sketches all of them (XGBoost's default).
    """

    kind: str = "xgboost"
    objective: str = "binary:logistic"
    rounds: int = 100
    early_stopping: int = 10
    valid_fraction: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 10
    max_retries: int = 2
    train_eval_rows: int = 50_000
    bin_sample_rows: int = 200_000


@dataclass
class ClusterConfig:
    """The Dask cluster. An empty ``address`` starts a LocalCluster on 127.0.0.1.

    ``n_workers`` and ``threads_per_worker`` shape that LocalCluster; 0 (the
    default) fits it to the cores this process may use: one worker process
    per 4 cores, the cores shared among them as threads (see
    :func:`scaler.cluster.local_layout`).
    ``min_workers`` and ``wait_timeout`` (seconds) say how long training
    waits for workers after losing one. ``tls_*`` give the CA, certificate
    and key files for a ``tls://`` scheduler.
    """

    address: str = ""
    n_workers: int = 0  # 0: fit the machine
    threads_per_worker: int = 0  # 0: fit the machine
    memory_limit: str = "auto"
    dashboard: bool = False
    processes: bool = True
    min_workers: int = 1
    wait_timeout: float = 60.0
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass
class OutputConfig:
    """Where the model bundle and the scored holdout go (any fsspec URL)."""

    url: str = ""
    storage_options: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = True
    report: bool = True  # report.html + PNGs in OUTPUT/report/


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "split": SplitConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "cluster": ClusterConfig,
    "output": OutputConfig,
}


@dataclass
class RunConfig:
    """A whole run: what to read, how to split, preprocess and train, where
    to run and where to write. Build it with :meth:`from_toml` or
    :meth:`from_dict`; both check every key and value."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build and check a config from a nested dict (as parsed from TOML)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a table of sections, got {type(raw).__name__}.")
        _check_names(raw, _SECTIONS, where=source, what="section")
        sections = {}
        for name, klass in _SECTIONS.items():
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(
                    f"{source}: [{name}] must be a table of keys, got {type(values).__name__}."
                )
            sections[name] = _build_section(klass, values, where=f"{source} [{name}]")
        cfg = cls(**sections)
        cfg.validate(source=source)
        return cfg

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a TOML file and check it. Relative local paths in ``url``
        keys are resolved against the file's folder."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"Config file {path!r} does not exist.") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Config file {path!r} is not valid TOML: {e}.") from e
        base = os.path.dirname(os.path.abspath(path))
        for section in ("data", "output"):
            sec = raw.get(section)
            if isinstance(sec, dict) and isinstance(sec.get("url"), str):
                sec["url"] = _resolve_local(sec["url"], base)
        return cls.from_dict(raw, source=path)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain nested dict (TOML/JSON-serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> RunConfig:
        """A copy with some sections' keys changed, checked again.

        >>> cfg2 = cfg.replace(model={"rounds": 10})  # doctest: +SKIP
        """
        raw = self.to_dict()
        for name, values in sections.items():
            if name not in _SECTIONS:
                _check_names({name: 0}, _SECTIONS, where="replace()", what="section")
            raw[name] = {**raw[name], **values}
        return RunConfig.from_dict(raw, source="config")

    # --------------------------------------------------------------- validate
    @property
    def task(self) -> str:
        """``"binary"``, ``"multiclass"`` or ``"regression"`` from the objective."""
        obj = self.model.objective
        if obj in BINARY_OBJECTIVES:
            return "binary"
        if obj in MULTICLASS_OBJECTIVES:
            return "multiclass"
        return "regression"

    def validate(self, *, source: str = "config") -> None:
        """Check values that a type alone cannot (ranges, choices, combinations)."""
        d, s, p, m, c, o = (
            self.data,
            self.split,
            self.preprocess,
            self.model,
            self.cluster,
            self.output,
        )

        def bad(key: str, expected: str, got: Any, fix: str = "") -> ConfigError:
            msg = f"{source}: the '{key}' key must be {expected}. Got {got!r} instead."
            return ConfigError(msg + (f" {fix}" if fix else ""))

        if not d.url:
            raise bad("data.url", "a non-empty URL or path to Parquet data", d.url)
        if not d.target:
            raise bad("data.target", "the name of the column to predict", d.target)
        if d.features is not None and not d.features:
            raise bad("data.features", "a non-empty list of column names, or left out", d.features)
        if d.features is not None and d.target in d.features:
            raise bad("data.features", f"a list without the target {d.target!r}", d.features)
        if d.features is not None and len(set(d.features)) != len(d.features):
            raise bad("data.features", "a list without duplicates", d.features)
        if d.key is not None and d.key == d.target:
            raise bad("data.key", "a column other than the target", d.key)
        for i, flt in enumerate(d.filters):
            if not (isinstance(flt, (list, tuple)) and len(flt) == 3 and isinstance(flt[0], str)):
                raise bad(
                    f"data.filters[{i}]",
                    "a [column, operator, value] triple",
                    flt,
                    'Example: filters = [["month", "in", [1, 2]], ["x0", ">", 0]].',
                )
            if flt[1] not in FILTER_OPS:
                raise bad(f"data.filters[{i}] operator", f"one of {list(FILTER_OPS)}", flt[1])
            if flt[1] in ("in", "not in") and not isinstance(flt[2], (list, tuple)):
                raise bad(f"data.filters[{i}] value", f"a list for {flt[1]!r}", flt[2])
        if not (0.0 < s.holdout < 1.0) and s.column is None:
            raise bad("split.holdout", "a fraction in (0, 1)", s.holdout)
        if s.seed < 0:
            raise bad("split.seed", "an int >= 0", s.seed)
        pca = p.pca
        if pca is True:
            raise bad(
                "preprocess.pca",
                "an int >= 1, a fraction in (0, 1) or false",
                pca,
                "Say how many components to keep, e.g. pca = 20 or pca = 0.95.",
            )
        if isinstance(pca, int) and not isinstance(pca, bool) and pca < 1:
            raise bad("preprocess.pca", "an int >= 1, a fraction in (0, 1) or false", pca)
        if isinstance(pca, float) and not (0.0 < pca < 1.0):
            raise bad("preprocess.pca", "an int >= 1, a fraction in (0, 1) or false", pca)
        if p.method not in ("covariance", "incremental"):
            raise bad("preprocess.method", "'covariance' or 'incremental'", p.method)
        if p.hold_raw not in (True, False, "auto"):
            raise bad("preprocess.hold_raw", "true, false or 'auto'", p.hold_raw)
        if p.batch_size is not None and p.batch_size < 1:
            raise bad("preprocess.batch_size", "an int >= 1", p.batch_size)
        if d.cache not in ("none", "local"):
            raise bad("data.cache", "'none' or 'local'", d.cache)
        if d.cache_keep_days < 0:
            raise bad(
                "data.cache_keep_days", "an int >= 0 (0 keeps every folder)", d.cache_keep_days
            )
        if p.max_categories < 1:
            raise bad("preprocess.max_categories", "an int >= 1", p.max_categories)
        if m.kind not in ("xgboost", "random_forest"):
            raise bad("model.kind", "'xgboost' or 'random_forest'", m.kind)
        allowed = BINARY_OBJECTIVES + MULTICLASS_OBJECTIVES + REGRESSION_OBJECTIVES
        if m.objective not in allowed:
            fix = ""
            if m.objective in ("multi:softmax",):
                fix = "Use 'multi:softprob': scaler needs class probabilities for its metrics."
            elif m.objective.startswith("binary:"):
                fix = "Use 'binary:logistic': scaler needs probabilities for AUC and logloss."
            raise bad("model.objective", f"one of {list(allowed)}", m.objective, fix)
        if m.rounds < 1:
            raise bad(
                "model.rounds",
                "an int >= 1",
                m.rounds,
                "It is the number of boosting rounds (trees for random_forest).",
            )
        if m.early_stopping < 0:
            raise bad("model.early_stopping", "an int >= 0 (0 turns it off)", m.early_stopping)
        if not (0.0 <= m.valid_fraction < 1.0):
            raise bad("model.valid_fraction", "a fraction in [0, 1)", m.valid_fraction)
        if m.early_stopping and m.valid_fraction == 0.0:
            raise bad(
                "model.valid_fraction",
                "> 0 when early_stopping is on",
                m.valid_fraction,
                "Set early_stopping = 0 to train without a validation set.",
            )
        for k in (
            "objective",
            "num_class",
            "num_parallel_tree" if m.kind == "random_forest" else "",
        ):
            if k and k in m.params:
                raise bad(
                    f"model.params.{k}",
                    "left out (scaler sets it)",
                    m.params[k],
                    "Use [model] objective / rounds instead.",
                )
        if m.checkpoint_every < 0:
            raise bad(
                "model.checkpoint_every",
                "an int >= 0 (0 turns checkpoints off)",
                m.checkpoint_every,
            )
        if m.bin_sample_rows < 0 or 0 < m.bin_sample_rows < 10_000:
            raise bad(
                "model.bin_sample_rows",
                "0 (sketch every row) or an int >= 10000",
                m.bin_sample_rows,
            )
        if m.train_eval_rows < 0:
            raise bad("model.train_eval_rows", "an int >= 0 (0: no train curve)", m.train_eval_rows)
        if m.max_retries < 0:
            raise bad("model.max_retries", "an int >= 0", m.max_retries)
        if c.min_workers < 1:
            raise bad("cluster.min_workers", "an int >= 1", c.min_workers)
        if c.wait_timeout <= 0:
            raise bad("cluster.wait_timeout", "a number of seconds > 0", c.wait_timeout)
        tls = [c.tls_ca_file, c.tls_cert_file, c.tls_key_file]
        if any(tls) and not all(tls):
            raise bad(
                "cluster.tls_ca_file/tls_cert_file/tls_key_file",
                "all three set, or none",
                tls,
            )
        if c.n_workers < 0:
            raise bad("cluster.n_workers", "an int >= 0 (0: fit the machine)", c.n_workers)
        if c.threads_per_worker < 0:
            raise bad(
                "cluster.threads_per_worker",
                "an int >= 0 (0: fit the machine)",
                c.threads_per_worker,
            )
        if c.memory_limit != "auto" and not re.fullmatch(
            r"\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]|[bB])?\s*", c.memory_limit
        ):
            raise bad("cluster.memory_limit", "'auto' or a size like '4GB'", c.memory_limit)
        if not o.url:
            raise bad("output.url", "a non-empty URL or path for the outputs", o.url)


def load_config(path_or_dict: str | os.PathLike[str] | dict[str, Any] | RunConfig) -> RunConfig:
    """Return a checked :class:`RunConfig` from a TOML path, a dict or a config."""
    if isinstance(path_or_dict, RunConfig):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        return RunConfig.from_dict(path_or_dict)
    return RunConfig.from_toml(path_or_dict)


# ---------------------------------------------------------------------- helpers
def _resolve_local(url: str, base: str) -> str:
    if "://" in url or "::" in url or os.path.isabs(url):
        return url
    return os.path.normpath(os.path.join(base, url))


# Keys that were replaced: what to write instead.
_REPLACED = {
    "train_eval_fraction": "It was replaced by 'train_eval_rows', a number of training rows "
    "(default 50000; 0: no train curve).",
}


def _check_names(given: dict[str, Any], valid: Any, *, where: str, what: str) -> None:
    valid_names = list(valid)
    for name in given:
        if name not in valid_names:
            close = difflib.get_close_matches(name, valid_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            if name in _REPLACED:
                hint = f" {_REPLACED[name]}"
            raise ConfigError(
                f"{where}: unknown {what} {name!r}.{hint} Valid {what}s are: "
                f"{', '.join(valid_names)}."
            )


def _build_section(klass: type, values: dict[str, Any], *, where: str) -> Any:
    hints = get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass)]
    _check_names(values, names, where=where, what="key")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _check_type(value, hints[name], where=f"{where} {name}")
    return klass(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any, *, where: str) -> Any:
    """Check ``value`` against a simple annotation; return it (tuples become lists)."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        # bool is an int in Python; only accept it where bool is listed.
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check_type(value, opt, where=where)
            except ConfigError:
                continue
        expected = " or ".join("none" if o is type(None) else _type_name(o) for o in options)
        raise ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}.")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}.")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(v, item_tp, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}.")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"{where}: expected true or false, got {type(value).__name__} {value!r}."
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an int, got {type(value).__name__} {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}.")
        return value
    return value


_SECRET_KEYS = re.compile(
    r"(secret|token|password|passwd|credential|key_id|access_key|session)", re.I
)


def redact(obj: Any, *, _options: bool = False) -> Any:
    """A copy of ``obj`` with secrets (storage credentials, passwords in
    URLs) replaced by ``"***"``, fit for logs and manifests."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            ks = str(k)
            secret = bool(_SECRET_KEYS.search(ks)) or (_options and ks in ("key", "username"))
            if secret and v:
                out[k] = "***"
            else:
                out[k] = redact(v, _options=_options or ks == "storage_options")
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(v, _options=_options) for v in obj]
    if isinstance(obj, str):
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", obj)
    return obj
