"""Readable text and HTML summaries of fitted objects and run results
(``__repr__`` and Jupyter's ``_repr_html_``). Presentation only."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from scaler.config import redact

__all__ = [
    "scalepca_rows",
    "model_rows",
    "run_rows",
    "text_block",
    "html_block",
]


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in d.items())


def scalepca_rows(sp: Any) -> list[tuple[str, str]]:
    """(label, value) rows describing a :class:`ScalePCA`."""
    rows = [("params", f"scale={sp.scale}, n_components={sp.n_components!r}, method={sp.method!r}")]
    if not hasattr(sp, "mean_"):
        rows.append(("fitted", "no"))
        return rows
    rows.append(("input", f"{sp.n_samples_seen_:,} rows x {sp.n_features_in_} numeric features"))
    if sp.components_ is not None:
        ratio = np.asarray(sp.explained_variance_ratio_, dtype=float)
        first = ", ".join(f"{r:.1%}" for r in ratio[:5]) + (", ..." if len(ratio) > 5 else "")
        rows.append(
            (
                "PCA",
                f"{sp.n_components_} components explain {ratio.sum():.1%} of the variance "
                f"({first})",
            )
        )
        rows.append(
            ("output", f"{sp.n_components_} features ({', '.join(sp.output_names[:3])}...)")
        )
    else:
        rows.append(("PCA", "none (scaling only)"))
    if sp.scale:
        const = int(np.sum(np.asarray(sp.scale_) == 1.0) if hasattr(sp, "scale_") else 0)
        rows.append(("scaling", f"standard; {const} column(s) with scale 1"))
    return rows


def model_rows(m: Any) -> list[tuple[str, str]]:
    """(label, value) rows describing a :class:`Model`."""
    pre = m.preprocessor
    task = {"binary": "binary classification", "multiclass": "multiclass classification"}.get(
        m.task, "regression"
    )
    rows = [("task", f"{task} of {m.target!r}")]
    if m.classes:
        rows.append(
            (
                "classes",
                ", ".join(map(str, m.classes[:10])) + (" ..." if len(m.classes) > 10 else ""),
            )
        )
    rows.append(
        (
            "inputs",
            f"{len(m.input_columns)} columns ({len(pre.numeric)} numeric, "
            f"{len(pre.categorical)} categorical)",
        )
    )
    sp = pre.scaler_pca
    if sp is not None and getattr(sp, "components_", None) is not None:
        ratio = float(np.sum(sp.explained_variance_ratio_))
        rows.append(
            (
                "preprocess",
                f"scaling + PCA to {sp.n_components_} components ({ratio:.1%} of variance)",
            )
        )
    elif sp is not None:
        rows.append(("preprocess", "standard scaling"))
    else:
        rows.append(("preprocess", "none"))
    rows.append(("features", f"{len(m.feature_names)} model features"))
    info = m.info or {}
    booster = f"{info.get('kind', 'xgboost')}, {m.booster.num_boosted_rounds()} round(s)"
    if info.get("best_iteration") is not None:
        booster += f", best iteration {info['best_iteration']}"
    if info.get("valid_metric") and info.get("best_score") is not None:
        booster += f", valid {info['valid_metric']}={info['best_score']:.4f}"
    rows.append(("booster", booster))
    if info.get("metrics"):
        rows.append(("holdout", _pairs(info["metrics"])))
    return rows


def run_rows(r: Any) -> list[tuple[str, str]]:
    """(label, value) rows describing a :class:`RunResult`."""
    c = r.counts
    rows = [
        (
            "rows",
            f"read {c.get('rows_read', 0):,}: train {c.get('train', 0):,}, valid "
            f"{c.get('valid', 0):,}, holdout {c.get('holdout', 0):,}"
            + (
                f" (missing target dropped {c['missing_target_dropped']:,})"
                if c.get("missing_target_dropped")
                else ""
            ),
        ),
        ("stages (s)", " | ".join(f"{k} {v:.2f}" for k, v in r.timings.items())),
        ("metrics", _pairs(r.metrics)),
    ]
    rows += [(k, v) for k, v in model_rows(r.model) if k not in ("holdout",)]
    rows.append(("bundle", redact(r.bundle_url)))
    rows.append(("holdout scored", redact(r.predictions_url)))
    report = getattr(r, "report_url", None)
    if report:
        rows.append(("report", redact(report)))
    return rows


def text_block(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title, *(f"  {k:<{width}}  {v}" for k, v in rows)])


def html_block(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{html.escape(k)}</th>'
        f'<td style="text-align:left">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return (
        f'<div class="scaler-repr"><strong>{html.escape(title)}</strong><table>{body}</table></div>'
    )
