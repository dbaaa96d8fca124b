"""Plots and the HTML report of a trained model.

:func:`write_report` writes, into a folder next to the bundle (by default
``OUTPUT/report/`` for the bundle ``OUTPUT/model/``: the bundle folder
itself only holds verified files), one PNG per plot and ``report.html``, a
single self-contained file with the same images embedded as base64 PNG (it
opens offline, from a mail attachment or an object store).

Plots:

``explained_variance.png``
    per-component and cumulative explained variance of the kept PCA
    components (the chosen number is marked);
``learning_curves.png``
    every evaluation metric per boosting round, train and validation, with
    the early-stopping point;
``feature_importance.png``
    importance of the *original* input features. XGBoost's total gain per
    model feature is mapped back through PCA: the gain of component ``k`` is
    shared among the input features in proportion to the absolute loadings
    ``|components_[k, j]|`` (normalised per component), i.e.
    ``importance_j = sum_k gain_k * |W_kj| / sum_i |W_ki|``. Total gain is
    preserved; categorical features keep their own gain. Without PCA the
    gain of each scaled feature is its own;
``roc.png``, ``precision_recall.png``, ``confusion_matrix.png``
    for classifiers, from the scored holdout (one-vs-rest for multiclass);
``predicted_vs_actual.png``, ``residuals.png``
    for regression, from the scored holdout;
``timings.png``
    seconds per pipeline stage.

Plots are drawn with matplotlib's object API and its Agg renderer, leaving
pyplot and the session's backend alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler import storage
from scaler.config import redact

__all__ = ["write_report", "feature_importance", "Report", "default_report_url"]

MAX_POINTS = 200_000  # holdout rows sampled for the curves


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    url: str
    html_url: str
    images: dict[str, str] = field(default_factory=dict)  # name -> URL


def _sibling(bundle_url: str, name: str) -> str:
    parent = bundle_url.rstrip("/").rsplit("/", 1)
    base = parent[0] if len(parent) == 2 and parent[0] else "."
    return storage.join(base, name)


def default_report_url(bundle_url: str) -> str:
    """``OUTPUT/report`` for the bundle ``OUTPUT/model`` (a sibling folder)."""
    return _sibling(bundle_url, "report")


def _subplots(*args: Any, figsize: tuple[float, float], **kw: Any) -> tuple[Any, Any]:
    """``Figure(figsize).subplots(...)``: matplotlib's object API, not pyplot,
    so there is no global backend switch (a notebook's inline plots keep
    working) and no figure registry to close."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kw)


def _int_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()  # cheaper than bbox_inches="tight", which draws the figure twice
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ------------------------------------------------------------ pure maths
def feature_importance(model: Any) -> dict[str, float]:
    """Total gain per original input feature, mapped back through PCA (see
    the module docstring), sorted from the largest."""
    gains = model.booster.get_score(importance_type="total_gain")
    pre = model.preprocessor
    sp = pre.scaler_pca
    out: dict[str, float] = {c: 0.0 for c in pre.input_columns}
    if sp is not None and getattr(sp, "components_", None) is not None:
        w = np.abs(np.asarray(sp.components_, dtype=np.float64))  # (k, p)
        norm = w.sum(axis=1, keepdims=True)
        norm[norm == 0] = 1.0
        share = w / norm
        names = list(sp.output_names)
        g = np.array([gains.get(n, 0.0) for n in names])
        per_input = g @ share
        for j, c in enumerate(pre.numeric):
            out[c] += float(per_input[j])
    else:
        for c in pre.numeric:
            out[c] += float(gains.get(c, 0.0))
    for c in pre.categorical:
        out[c] += float(gains.get(c, 0.0))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s)) if len(np.unique(y)) > 1 else float("nan")


# ----------------------------------------------------------------- plots
def _plot_variance(ratio: list[float]) -> bytes:
    r = np.asarray(ratio, dtype=float)
    k = np.arange(1, len(r) + 1)
    fig, ax = _subplots(figsize=(6, 3.6))
    ax.bar(k, r, color="#9ecae1", label="per component")
    ax.plot(k, np.cumsum(r), "o-", color="#08519c", label="cumulative")
    ax.axvline(len(r), color="#d62728", ls="--", label=f"chosen: {len(r)} ({r.sum():.1%})")
    ax.set_xlabel("principal component")
    ax.xaxis.set_major_locator(_int_ticks())
    ax.set_ylabel("explained variance ratio")
    ax.set_ylim(0, 1.02)
    ax.set_title("Explained variance (scaled numeric features)")
    ax.legend(loc="center right")
    return _png(fig)


def _plot_learning(history: dict[str, dict[str, list[float]]], best: int | None) -> bytes:
    metrics = list(dict.fromkeys(m for d in history.values() for m in d))
    fig, axes = _subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for data, d in history.items():
            if m in d:
                name = "train (10% sample)" if data == "train" else data
                ax.plot(np.arange(1, len(d[m]) + 1), d[m], label=name)
        if best is not None:
            ax.axvline(best + 1, color="#d62728", ls="--", label=f"best round {best + 1}")
        ax.set_xlabel("boosting round")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.set_title(m)
        ax.legend()
    fig.suptitle("Learning curves")
    return _png(fig)


def _plot_importance(imp: dict[str, float], top: int = 25) -> bytes:
    items = list(imp.items())[:top][::-1]
    fig, ax = _subplots(figsize=(6, 0.25 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#31a354")
    ax.set_xlabel("total gain (PCA components mapped back by |loadings|)")
    ax.set_title("Feature importance (original features)")
    return _png(fig)


def _plot_timings(timings: dict[str, float]) -> bytes:
    items = [(k, v) for k, v in timings.items() if k != "total"]
    fig, ax = _subplots(figsize=(6, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#756bb1")
    ax.set_xlabel("seconds")
    total = timings.get("total")
    ax.set_title("Stage timings" + (f" (total {total:.1f} s)" if total else ""))
    return _png(fig)


def _classification_plots(df: Any, model: Any) -> dict[str, bytes]:
    from sklearn.metrics import precision_recall_curve

    classes = list(model.classes)
    y = np.asarray(df[model.target].astype(str))
    pred = np.asarray(df["prediction"].astype(str))
    labels = [str(c) for c in classes]
    out: dict[str, bytes] = {}
    if model.task == "binary":
        scores = {labels[1]: np.asarray(df["probability"], dtype=float)}
    else:
        scores = {str(c): np.asarray(df[f"proba_{c}"], dtype=float) for c in classes}
    fig, ax = _subplots(figsize=(5, 4.2))
    for c, s in list(scores.items())[:10]:
        fpr, tpr, auc = _roc((y == c).astype(int), s)
        ax.plot(fpr, tpr, label=f"{c} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (holdout)")
    ax.legend(loc="lower right")
    out["roc"] = _png(fig)
    fig, ax = _subplots(figsize=(5, 4.2))
    for c, s in list(scores.items())[:10]:
        yc = (y == c).astype(int)
        p, r, _ = precision_recall_curve(yc, s)
        ax.plot(r, p, label=f"{c} (base rate {yc.mean():.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall (holdout)")
    ax.legend(loc="lower left")
    out["precision_recall"] = _png(fig)
    shown = labels[:30]
    yc = pd.Categorical(y, categories=shown).codes  # -1: a class beyond the first 30
    pc = pd.Categorical(pred, categories=shown).codes
    ok = (yc >= 0) & (pc >= 0)
    k = len(shown)
    cm = np.bincount(yc[ok] * k + pc[ok], minlength=k * k).reshape(k, k)
    fig, ax = _subplots(figsize=(4.6, 4.2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(cm)), labels[: len(cm)])
    ax.set_yticks(range(len(cm)), labels[: len(cm)])
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(
                j,
                i,
                f"{cm[i, j]:,}",
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (holdout)")
    out["confusion_matrix"] = _png(fig)
    return out


def _regression_plots(df: Any, model: Any) -> dict[str, bytes]:
    y = np.asarray(df[model.target], dtype=float)
    p = np.asarray(df["prediction"], dtype=float)
    n = min(len(y), 5000)
    idx = np.random.default_rng(0).choice(len(y), n, replace=False) if len(y) > n else slice(None)
    out: dict[str, bytes] = {}
    fig, ax = _subplots(figsize=(5, 4.5))
    ax.scatter(y[idx], p[idx], s=4, alpha=0.4)
    lo, hi = float(np.nanmin([y.min(), p.min()])), float(np.nanmax([y.max(), p.max()]))
    ax.plot([lo, hi], [lo, hi], color="#d62728", ls="--")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (holdout)")
    out["predicted_vs_actual"] = _png(fig)
    fig, axes = _subplots(1, 2, figsize=(9, 3.6))
    res = p - y
    axes[0].scatter(p[idx], res[idx], s=4, alpha=0.4)
    axes[0].axhline(0, color="#d62728", ls="--")
    axes[0].set_xlabel("predicted")
    axes[0].set_ylabel("residual (predicted - actual)")
    axes[1].hist(res, bins=50, color="#9ecae1")
    axes[1].set_xlabel("residual")
    fig.suptitle("Residuals (holdout)")
    out["residuals"] = _png(fig)
    return out


def _holdout_sample(df: Any, model: Any) -> pd.DataFrame:
    """Up to about MAX_POINTS rows of the target and prediction columns of
    ``df`` (a Dask or pandas frame of scored holdout rows)."""
    cols = [c for c in [model.target, *model.prediction_columns] if c in df.columns]
    df = df[cols]
    n = len(df)
    if n > MAX_POINTS:
        df = df.sample(frac=MAX_POINTS / n, random_state=0)
    return df.compute() if hasattr(df, "compute") else df


def _read_holdout(url: str, model: Any, storage_options: dict[str, Any] | None) -> Any:
    return _holdout_sample(storage.read_dataset(url, storage_options=storage_options), model)


# ------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em .7em;
text-align:left;font-size:.9em}th{background:#f4f4f4}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}
img{max-width:100%;border:1px solid #eee}small{color:#666}
"""


def _table(rows: list[tuple[str, Any]]) -> str:
    return (
        "<table>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        + "</table>"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _html(model: Any, manifest: dict[str, Any], images: dict[str, bytes], notes: list[str]) -> str:
    from scaler import __version__

    info = model.info or {}
    metrics = manifest.get("metrics") or info.get("metrics") or {}
    counts = manifest.get("counts") or {}
    cfg = manifest.get("config") or {}
    titles = {
        "explained_variance": "Explained variance",
        "learning_curves": "Learning curves",
        "feature_importance": "Feature importance",
        "roc": "ROC curve",
        "precision_recall": "Precision-recall curve",
        "confusion_matrix": "Confusion matrix",
        "predicted_vs_actual": "Predicted vs actual",
        "residuals": "Residuals",
        "timings": "Stage timings",
    }
    figs = "".join(
        f"<figure><figcaption><strong>{html.escape(titles.get(name, name))}</strong>"
        f'</figcaption><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"></figure>'
        for name, data in images.items()
    )
    summary = [
        ("task", f"{model.task} — target {model.target!r}"),
        ("model", f"{manifest.get('kind', 'xgboost')} {manifest.get('objective', '')}"),
        ("boosting rounds", model.booster.num_boosted_rounds()),
        ("best iteration", manifest.get("best_iteration")),
        ("input columns", len(model.input_columns)),
        ("model features", ", ".join(model.feature_names)),
        ("created", manifest.get("created", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
    ]
    data_cfg = cfg.get("data", {})
    config_rows = [
        (f"[{sec}] {k}", json.dumps(v))
        for sec in ("data", "split", "preprocess", "model")
        for k, v in (cfg.get(sec) or {}).items()
        if v not in (None, [], {}) and not (sec == "data" and k == "storage_options")
    ]
    notes_html = "".join(f"<p><small>{html.escape(n)}</small></p>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>scaler report — {html.escape(str(model.target))}</title>
<style>{_CSS}</style></head><body>
<h1>scaler model report</h1>
<p><small>data {html.escape(str(redact(data_cfg.get("url", ""))))} · generated
{_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")} by scaler {__version__}</small></p>
<h2>Holdout metrics</h2>{_table([(k, _fmt(v)) for k, v in metrics.items()])}
<h2>Rows</h2>{_table([(k, _fmt(v)) for k, v in counts.items()])}
<h2>Model</h2>{_table(summary)}
<h2>Plots</h2><div class="grid">{figs}</div>{notes_html}
<h2>Configuration</h2>{_table(config_rows)}
</body></html>
"""


# ------------------------------------------------------------------ entry
def write_report(
    bundle_url: str,
    *,
    out_url: str | None = None,
    predictions_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    model: Any = None,
    holdout: Any = None,
) -> Report:
    """Write the PNG plots and ``report.html`` of the bundle at ``bundle_url``.

    ``out_url`` defaults to the ``report`` folder next to the bundle;
    ``predictions_url`` (the scored holdout Parquet) to the
    ``holdout_predictions`` folder next to it; when it is missing the
    holdout plots are left out and the report says so. ``model`` skips
    loading the bundle again; ``holdout`` (the scored holdout rows as a
    Dask or pandas frame, e.g. still in cluster memory) skips reading them
    back from ``predictions_url``.

    Examples
    --------
    >>> from scaler.report import write_report
    >>> write_report("out/model").html_url  # doctest: +SKIP
    'out/report/report.html'
    """
    from scaler.bundle import load_bundle, read_manifest

    if model is None:
        model = load_bundle(bundle_url, storage_options=storage_options)
    manifest = model.info.get("manifest") or read_manifest(bundle_url, storage_options)
    out_url = out_url or default_report_url(bundle_url)
    if predictions_url is None:
        predictions_url = _sibling(bundle_url, "holdout_predictions")
    images: dict[str, bytes] = {}
    notes: list[str] = []
    sp = model.preprocessor.scaler_pca
    if sp is not None and getattr(sp, "components_", None) is not None:
        images["explained_variance"] = _plot_variance(list(sp.explained_variance_ratio_))
    history = model.info.get("history") or {}
    if any(history.values()):
        images["learning_curves"] = _plot_learning(history, manifest.get("best_iteration"))
    imp = feature_importance(model)
    if any(imp.values()):
        images["feature_importance"] = _plot_importance(imp)
    if holdout is not None:
        holdout = _holdout_sample(holdout, model)
    else:
        try:
            holdout = _read_holdout(predictions_url, model, storage_options)
        except (FileNotFoundError, OSError, ValueError) as e:
            notes.append(f"No holdout plots: could not read {redact(predictions_url)} ({e}).")
    if holdout is not None and len(holdout):
        if model.task == "regression":
            images.update(_regression_plots(holdout, model))
        else:
            images.update(_classification_plots(holdout, model))
    timings = manifest.get("timings") or {}
    if timings:
        images["timings"] = _plot_timings(timings)
    page = _html(model, manifest, images, notes).encode()
    urls = {}
    for name, data in images.items():
        urls[name] = storage.join(out_url, f"{name}.png")
        storage.write_bytes(urls[name], data, storage_options)
    html_url = storage.join(out_url, "report.html")
    storage.write_bytes(html_url, page, storage_options)  # last: the page links nothing
    return Report(out_url, html_url, urls)
