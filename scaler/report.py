"""Plots and the HTML report of a trained model.

:func:`write_report` writes, into a folder next to the bundle (by default
``OUTPUT/report/`` for the bundle ``OUTPUT/model/``: the bundle folder
itself only holds verified files), one SVG per plot and ``report.html``, a
single self-contained file with the same images embedded (it opens
offline, from a mail attachment or an object store).

Plots:

``explained_variance.svg``
    per-component and cumulative explained variance of the kept PCA
    components (the chosen number is marked);
``learning_curves.svg``
    every evaluation metric per boosting round, train and validation, with
    the early-stopping point;
``feature_importance.svg``
    importance of the *original* input features. XGBoost's total gain per
    model feature is mapped back through PCA: the gain of component ``k`` is
    shared among the input features in proportion to the absolute loadings
    ``|components_[k, j]|`` (normalised per component), i.e.
    ``importance_j = sum_k gain_k * |W_kj| / sum_i |W_ki|``. Total gain is
    preserved; categorical features keep their own gain. Without PCA the
    gain of each scaled feature is its own;
``roc.svg``, ``precision_recall.svg``, ``confusion_matrix.svg``
    for classifiers, from the scored holdout (one-vs-rest for multiclass).
    For a binary classifier in a pipeline run they are exact over every
    holdout row: they come from the same summary as the holdout AUC;
``predicted_vs_actual.svg``, ``residuals.svg``
    for regression, from the scored holdout;
``timings.svg``
    seconds per pipeline stage.

Plots are drawn as SVG by :mod:`scaler._svg`: vector images that scale in
any browser, drawn in milliseconds, with no plotting library to import.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler import storage
from scaler._svg import PALETTE, Chart, heatmap, row
from scaler.config import redact

__all__ = ["write_report", "feature_importance", "Report", "default_report_url"]

MAX_POINTS = 200_000  # holdout rows sampled for the curves (when no summary is given)
MAX_SCATTER = 3_000  # points drawn in a scatter plot


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


def _svg(doc: str) -> bytes:
    return doc.encode()


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


def _binary_curves(
    summary: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """False positive rate, true positive rate (= recall) and precision at
    every distinct score of a binary holdout summary (:class:`scaler.evaluate.
    Summary`: distinct scores with their positive and negative counts), from
    the highest score down, plus the base rate; exact for the rows it holds."""
    pos, neg = summary.pos[::-1], summary.neg[::-1]
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    n_pos, n_neg = tp[-1] if len(tp) else 0.0, fp[-1] if len(fp) else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([[0.0], tp / n_pos]) if n_pos else np.full(len(tp) + 1, np.nan)
        fpr = np.concatenate([[0.0], fp / n_neg]) if n_neg else np.full(len(fp) + 1, np.nan)
        precision = np.concatenate([[1.0], tp / (tp + fp)])
    base = float(n_pos / (n_pos + n_neg)) if n_pos + n_neg else float("nan")
    return fpr, tpr, precision, base


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`_binary_curves` of labels ``y`` (0/1) and scores ``s``."""
    from scaler.evaluate import summarize_partition

    return _binary_curves(summarize_partition(y, s, "binary"))


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return (
        float(np.trapezoid(tpr, fpr))
        if np.isfinite(tpr).all() and np.isfinite(fpr).all()
        else float("nan")
    )


# ----------------------------------------------------------------- plots
def _plot_variance(ratio: list[float]) -> bytes:
    r = np.asarray(ratio, dtype=float)
    k = np.arange(1, len(r) + 1)
    c = Chart(
        width=560,
        title="Explained variance (scaled numeric features)",
        xlabel="principal component",
        ylabel="explained variance ratio",
        ylim=(0, 1.02),
        integer_x=True,
        legend="center right",
    )
    c.bars(k, r, color="#9ecae1", label="per component")
    c.line(k, np.cumsum(r), color="#08519c", label="cumulative", marker=True)
    c.vline(len(r), label=f"chosen: {len(r)} ({r.sum():.1%})")
    return _svg(c.svg())


def _plot_learning(history: dict[str, dict[str, list[float]]], best: int | None) -> bytes:
    metrics = list(dict.fromkeys(m for d in history.values() for m in d))
    charts = []
    for m in metrics:
        c = Chart(width=440, title=m, xlabel="boosting round", integer_x=True)
        for data, d in history.items():
            if m in d:
                name = "train (10% sample)" if data == "train" else data
                c.line(np.arange(1, len(d[m]) + 1), d[m], label=name)
        if best is not None:
            c.vline(best + 1, label=f"best round {best + 1}")
        charts.append(c)
    return _svg(row(charts, "Learning curves"))


def _plot_importance(imp: dict[str, float], top: int = 25) -> bytes:
    items = list(imp.items())[:top]
    c = Chart(
        width=560,
        height=int(16 * len(items) + 90),
        title="Feature importance (original features)",
        xlabel="total gain (PCA components mapped back by |loadings|)",
    )
    c.hbars([k for k, _ in items], [v for _, v in items], color="#31a354")
    return _svg(c.svg())


def _plot_timings(timings: dict[str, float]) -> bytes:
    items = [(k, v) for k, v in timings.items() if k != "total"]
    total = timings.get("total")
    c = Chart(
        width=560,
        height=int(22 * len(items) + 80),
        title="Stage timings" + (f" (total {total:.1f} s)" if total else ""),
        xlabel="seconds",
    )
    c.hbars([k for k, _ in items], [v for _, v in items], color="#756bb1")
    return _svg(c.svg())


def _unit_chart(title: str, xlabel: str, ylabel: str, legend: str) -> Chart:
    """Axes over [0, 1] x [0, 1], for rates."""
    return Chart(
        width=440,
        height=380,
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        xlim=(0, 1),
        ylim=(0, 1.005),
        legend=legend,
    )


def _curve_charts() -> tuple[Chart, Chart]:
    roc = _unit_chart("ROC (holdout)", "false positive rate", "true positive rate", "lower right")
    roc.line([0, 1], [0, 1], color="#999", dash=True)
    pr = _unit_chart("Precision-recall (holdout)", "recall", "precision", "lower left")
    return roc, pr


def _confusion(cm: np.ndarray, labels: list[str]) -> bytes:
    return _svg(
        heatmap(cm, labels, title="Confusion matrix (holdout)", xlabel="predicted", ylabel="actual")
    )


def _summary_plots(summary: Any, model: Any) -> dict[str, bytes]:
    """ROC, precision-recall and confusion matrix of a binary classifier
    from the merged holdout summary: every holdout row, no sample."""
    labels = [str(c) for c in model.classes]
    fpr, tpr, precision, base = _binary_curves(summary)
    roc, pr = _curve_charts()
    roc.line(fpr, tpr, color=PALETTE[0], label=f"{labels[1]} (AUC {_auc(fpr, tpr):.3f})")
    pr.line(tpr, precision, color=PALETTE[0], label=f"{labels[1]} (base rate {base:.2f})")
    above = summary.scores > 0.5  # the predicted class is the second when P > 0.5
    cm = np.array(
        [
            [summary.neg[~above].sum(), summary.neg[above].sum()],
            [summary.pos[~above].sum(), summary.pos[above].sum()],
        ]
    )
    return {
        "roc": _svg(roc.svg()),
        "precision_recall": _svg(pr.svg()),
        "confusion_matrix": _confusion(cm, labels),
    }


def _classification_plots(df: Any, model: Any) -> dict[str, bytes]:
    classes = list(model.classes)
    y = np.asarray(df[model.target].astype(str))
    pred = np.asarray(df["prediction"].astype(str))
    labels = [str(c) for c in classes]
    if model.task == "binary":
        scores = {labels[1]: np.asarray(df["probability"], dtype=float)}
    else:
        scores = {str(c): np.asarray(df[f"proba_{c}"], dtype=float) for c in classes}
    roc, pr = _curve_charts()
    for c, s in list(scores.items())[:10]:
        yc = (y == c).astype(int)
        fpr, tpr, precision, base = _roc(yc, s)
        roc.line(fpr, tpr, label=f"{c} (AUC {_auc(fpr, tpr):.3f})")
        pr.line(tpr, precision, color=roc.series[-1].color, label=f"{c} (base rate {base:.2f})")
    shown = labels[:30]
    yc = pd.Categorical(y, categories=shown).codes  # -1: a class beyond the first 30
    pc = pd.Categorical(pred, categories=shown).codes
    ok = (yc >= 0) & (pc >= 0)
    k = len(shown)
    cm = np.bincount(yc[ok] * k + pc[ok], minlength=k * k).reshape(k, k)
    return {
        "roc": _svg(roc.svg()),
        "precision_recall": _svg(pr.svg()),
        "confusion_matrix": _confusion(cm, shown),
    }


def _regression_plots(df: Any, model: Any) -> dict[str, bytes]:
    y = np.asarray(df[model.target], dtype=float)
    p = np.asarray(df["prediction"], dtype=float)
    n = min(len(y), MAX_SCATTER)
    idx = np.random.default_rng(0).choice(len(y), n, replace=False) if len(y) > n else slice(None)
    c = Chart(
        width=440,
        height=400,
        title="Predicted vs actual (holdout)",
        xlabel="actual",
        ylabel="predicted",
    )
    c.points(y[idx], p[idx])
    lo, hi = float(np.nanmin([y.min(), p.min()])), float(np.nanmax([y.max(), p.max()]))
    c.line([lo, hi], [lo, hi], color="#d62728", dash=True)
    res = p - y
    left = Chart(width=440, xlabel="predicted", ylabel="residual (predicted - actual)")
    left.points(p[idx], res[idx])
    left.hline(0.0)
    right = Chart(width=440, xlabel="residual", ylabel="rows")
    right.hist(res, bins=50, color="#9ecae1")
    return {
        "predicted_vs_actual": _svg(c.svg()),
        "residuals": _svg(row([left, right], "Residuals (holdout)")),
    }


def _holdout_sample(df: Any, model: Any, rows: int | None = None) -> pd.DataFrame:
    """Up to about MAX_POINTS rows of the target and prediction columns of
    ``df`` (a Dask or pandas frame of scored holdout rows; ``rows``, its
    length when known, saves counting it)."""
    cols = [c for c in [model.target, *model.prediction_columns] if c in df.columns]
    df = df[cols]
    n = len(df) if rows is None else rows
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
        f'</figcaption><img alt="{html.escape(name)}" src="data:image/svg+xml;base64,'
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
    summary: Any = None,
) -> Report:
    """Write the SVG plots and ``report.html`` of the bundle at ``bundle_url``.

    ``out_url`` defaults to the ``report`` folder next to the bundle;
    ``predictions_url`` (the scored holdout Parquet) to the
    ``holdout_predictions`` folder next to it; when it is missing the
    holdout plots are left out and the report says so. ``model`` skips
    loading the bundle again; ``holdout`` (the scored holdout rows as a
    Dask or pandas frame, e.g. still in cluster memory) skips reading them
    back from ``predictions_url``. ``summary``, the merged holdout summary
    of the same rows (:class:`scaler.evaluate.Summary`, as the pipeline's
    evaluation computes it), gives a binary classifier's ROC,
    precision-recall and confusion matrix over every holdout row, with no
    sample taken; for other tasks its row count saves counting the holdout.

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
    binary_summary = (
        summary is not None and model.task == "binary" and summary.task == "binary" and summary.n
    )
    if binary_summary:
        images.update(_summary_plots(summary, model))
        holdout = None
    elif holdout is not None:
        holdout = _holdout_sample(holdout, model, rows=summary.n if summary is not None else None)
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
        urls[name] = storage.join(out_url, f"{name}.svg")
        storage.write_bytes(urls[name], data, storage_options)
    html_url = storage.join(out_url, "report.html")
    storage.write_bytes(html_url, page, storage_options)  # last: the page links nothing
    return Report(out_url, html_url, urls)
