"""Small, dependency-free SVG charts for the report.

A :class:`Chart` is one set of axes in data coordinates: lines, bars,
points and reference lines, with "nice" ticks, axis labels, a title and a
legend. :func:`heatmap` draws a labelled matrix; :func:`row` puts charts
side by side under one title. Drawing a chart is string formatting, a few
milliseconds; the report's plots need nothing heavier.

Long lines are thinned to the points that change the drawing at 0.5 px,
so a curve through 400,000 points stays a few kilobytes and looks the
same.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FONT = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
CHAR_W = 6.2  # px per character at the tick font size (a rough width, for margins)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2 or 5 x 10^k) in [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10)), key=lambda s: abs(math.log(s / raw)))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for i in range(first, math.floor(hi / step + 1e-9) + 1):
        ticks.append(round(i * step, 12))
    return ticks


def fmt_tick(v: float, ticks: list[float]) -> str:
    """A tick label with as many decimals as the step needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    if max(abs(t) for t in ticks) >= 1e7 or step < 1e-4:
        return f"{v:.3g}"
    dec = 0
    while dec < 6 and abs(round(step, dec) - step) > step * 1e-6:
        dec += 1
    return f"{v:,.{dec}f}"


def thin(px: np.ndarray, py: np.ndarray, tol: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The points of a polyline (pixel coordinates) that change its drawing
    on a ``tol``-pixel grid: runs of points in the same grid cell keep
    their first and last point."""
    if len(px) <= 2:
        return px, py
    gx, gy = np.round(px / tol), np.round(py / tol)
    same = (gx[1:] == gx[:-1]) & (gy[1:] == gy[:-1])
    keep = np.ones(len(px), dtype=bool)
    # a point is dropped when it and both neighbours share one cell
    keep[1:-1] = ~(same[:-1] & same[1:])
    return px[keep], py[keep]


def _points(px: np.ndarray, py: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px.tolist(), py.tolist(), strict=True))


@dataclass
class _Series:
    kind: str  # line, bars, hbars, points, vline, hline
    x: Any
    y: Any
    color: str
    label: str | None = None
    dash: bool = False
    marker: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Chart:
    """One set of axes. Add series, then :meth:`svg` (or :func:`row`).

    Examples
    --------
    >>> c = Chart(title="ROC", xlabel="false positive rate", xlim=(0, 1), ylim=(0, 1))
    >>> c.line([0, 0.2, 1], [0, 0.7, 1], label="AUC 0.75")
    >>> c.svg().startswith("<svg")
    True
    """

    def __init__(
        self,
        *,
        width: int = 480,
        height: int = 340,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        xlim: tuple[float, float] | None = None,
        ylim: tuple[float, float] | None = None,
        integer_x: bool = False,
        legend: str = "upper right",
    ) -> None:
        self.width, self.height = width, height
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlim, self.ylim = xlim, ylim
        self.integer_x = integer_x
        self.legend_loc = legend
        self.series: list[_Series] = []
        self.categories: list[str] | None = None  # hbars: labels on the y axis
        self._auto = 0  # series given the palette's colours so far

    # ------------------------------------------------------------ series
    def _color(self, color: str | None) -> str:
        if color:
            return color
        self._auto += 1
        return PALETTE[(self._auto - 1) % len(PALETTE)]

    def line(
        self,
        x: Any,
        y: Any,
        *,
        color: str | None = None,
        label: str | None = None,
        dash: bool = False,
        marker: bool = False,
    ) -> None:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.series.append(_Series("line", x, y, self._color(color), label, dash, marker))

    def bars(self, x: Any, h: Any, *, color: str | None = None, label: str | None = None) -> None:
        """Vertical bars of height ``h`` centred on ``x`` (evenly spaced)."""
        x, h = np.asarray(x, dtype=float), np.asarray(h, dtype=float)
        self.series.append(_Series("bars", x, h, self._color(color), label))

    def hbars(self, labels: list[str], values: Any, *, color: str | None = None) -> None:
        """Horizontal bars, one per label, the first label at the top."""
        self.categories = [str(c) for c in labels]
        v = np.asarray(values, dtype=float)
        self.series.append(_Series("hbars", None, v, self._color(color)))

    def hist(self, values: Any, bins: int = 50, *, color: str | None = None) -> None:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        counts, edges = np.histogram(v, bins=bins) if len(v) else (np.zeros(1), np.array([0, 1]))
        self.series.append(_Series("hist", edges, counts.astype(float), self._color(color)))

    def points(
        self, x: Any, y: Any, *, color: str | None = None, opacity: float = 0.35, r: float = 1.6
    ) -> None:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        self.series.append(
            _Series("points", x[ok], y[ok], self._color(color), extra={"o": opacity, "r": r})
        )

    def vline(self, x: float, *, color: str = "#d62728", label: str | None = None) -> None:
        self.series.append(_Series("vline", float(x), None, color, label, dash=True))

    def hline(self, y: float, *, color: str = "#d62728", label: str | None = None) -> None:
        self.series.append(_Series("hline", None, float(y), color, label, dash=True))

    # ------------------------------------------------------------ layout
    def _limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs: list[float] = []
        ys: list[float] = []
        for s in self.series:
            if s.kind in ("line", "points"):
                xs += [np.nanmin(s.x), np.nanmax(s.x)] if len(s.x) else []
                ys += [np.nanmin(s.y), np.nanmax(s.y)] if len(s.y) else []
            elif s.kind == "bars":
                xs += [s.x.min() - 0.5, s.x.max() + 0.5] if len(s.x) else []
                ys += [0.0, float(np.nanmax(s.y))] if len(s.y) else []
            elif s.kind == "hist":
                xs += [float(s.x[0]), float(s.x[-1])]
                ys += [0.0, float(s.y.max())]
            elif s.kind == "hbars":
                xs += [0.0, float(np.nanmax(s.y)) if len(s.y) else 1.0]
            elif s.kind == "vline":
                xs.append(s.x)
            elif s.kind == "hline":
                ys.append(s.y)
        hbars = any(s.kind == "hbars" for s in self.series)  # bars start at x = 0
        return self._pad(self.xlim, xs, bars=hbars), self._pad(self.ylim, ys, bars=True)

    def _pad(self, given: Any, vals: list[float], *, bars: bool) -> tuple[float, float]:
        if given is not None:
            return float(given[0]), float(given[1])
        vals = [v for v in vals if math.isfinite(v)]
        if not vals:
            return 0.0, 1.0
        lo, hi = min(vals), max(vals)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.04 * (hi - lo)
        return (lo if lo == 0 and bars else lo - pad), hi + pad

    def _body(self, x0: float, y0: float, w: float, h: float) -> tuple[str, float]:
        """The axes drawn in the box (x0, y0, w, h) of the left margin
        already reserved; returns the SVG and the left margin needed."""
        (xa, xb), (ya, yb) = self._limits()
        hb = [s for s in self.series if s.kind == "hbars"]
        if hb:
            ya, yb = 0.0, float(len(self.categories or []))
        xt = nice_ticks(xa, xb)
        if self.integer_x:
            xt = [t for t in xt if float(t).is_integer()] or xt
        yt = [] if hb else nice_ticks(ya, yb)
        ylabels = list(self.categories or []) if hb else [fmt_tick(t, yt) for t in yt]
        left = max((len(s) for s in ylabels), default=1) * CHAR_W + 10
        left = min(left, 0.45 * w) + (16 if self.ylabel else 0)
        px0, pw = x0 + left, w - left - 8
        py0, ph = y0, h - (34 if self.xlabel else 20)

        def X(v: Any) -> Any:
            return px0 + (np.asarray(v, dtype=float) - xa) / (xb - xa) * pw

        def Y(v: Any) -> Any:
            return py0 + ph - (np.asarray(v, dtype=float) - ya) / (yb - ya) * ph

        out = [
            f'<rect x="{px0:.1f}" y="{py0:.1f}" width="{pw:.1f}" height="{ph:.1f}" '
            'fill="white" stroke="#bbb"/>'
        ]
        for t in xt:
            tx = float(X(t))
            out.append(
                f'<line x1="{tx:.1f}" y1="{py0:.1f}" x2="{tx:.1f}" y2="{py0 + ph:.1f}" '
                'stroke="#eee"/>'
                f'<text x="{tx:.1f}" y="{py0 + ph + 13:.1f}" text-anchor="middle" '
                f'font-size="10">{_esc(fmt_tick(t, xt))}</text>'
            )
        if hb:
            n = len(self.categories or [])
            for i, lab in enumerate(self.categories or []):
                cy = py0 + (i + 0.5) / max(n, 1) * ph
                out.append(
                    f'<text x="{px0 - 4:.1f}" y="{cy + 3.5:.1f}" text-anchor="end" '
                    f'font-size="10">{_esc(lab)}</text>'
                )
        else:
            for t, lab in zip(yt, ylabels, strict=True):
                ty = float(Y(t))
                out.append(
                    f'<line x1="{px0:.1f}" y1="{ty:.1f}" x2="{px0 + pw:.1f}" y2="{ty:.1f}" '
                    'stroke="#eee"/>'
                    f'<text x="{px0 - 4:.1f}" y="{ty + 3.5:.1f}" text-anchor="end" '
                    f'font-size="10">{_esc(lab)}</text>'
                )
        for s in self.series:
            out.append(self._draw(s, X, Y, (px0, pw, py0, ph), (xa, xb, ya, yb)))
        if self.xlabel:
            out.append(
                f'<text x="{px0 + pw / 2:.1f}" y="{py0 + ph + 29:.1f}" text-anchor="middle" '
                f'font-size="11">{_esc(self.xlabel)}</text>'
            )
        if self.ylabel:
            cx, cy = x0 + 10, py0 + ph / 2
            out.append(
                f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="middle" font-size="11" '
                f'transform="rotate(-90 {cx:.1f} {cy:.1f})">{_esc(self.ylabel)}</text>'
            )
        out.append(self._legend(px0, py0, pw, ph))
        return "".join(out), left

    def _draw(
        self, s: _Series, X: Any, Y: Any, box: tuple[float, ...], lim: tuple[float, ...]
    ) -> str:
        """One series in the plot area ``box`` = (x, width, y, height) with
        data limits ``lim`` = (x0, x1, y0, y1)."""
        px0, pw, py0, ph = box
        xa, xb, ya, yb = lim
        dash = ' stroke-dasharray="5,4"' if s.dash else ""
        if s.kind == "line":
            ok = np.isfinite(s.x) & np.isfinite(s.y)
            px = np.clip(X(s.x[ok]), px0, px0 + pw)
            py = np.clip(Y(s.y[ok]), py0, py0 + ph)
            px, py = thin(px, py)
            body = (
                f'<polyline fill="none" stroke="{s.color}" stroke-width="1.8"{dash} '
                f'points="{_points(px, py)}"/>'
            )
            if s.marker and len(px) <= 60:
                body += "".join(
                    f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.6" fill="{s.color}"/>'
                    for a, b in zip(px.tolist(), py.tolist(), strict=True)
                )
            return body
        if s.kind == "bars":
            step = float(np.min(np.diff(np.sort(s.x)))) if len(s.x) > 1 else 1.0
            bw = 0.8 * step / (xb - xa) * pw
            base = float(Y(max(ya, 0.0)))
            return "".join(
                f'<rect x="{cx - bw / 2:.1f}" y="{min(top, base):.1f}" width="{bw:.1f}" '
                f'height="{abs(base - top):.1f}" fill="{s.color}"/>'
                for cx, top in zip(X(s.x).tolist(), Y(s.y).tolist(), strict=True)
            )
        if s.kind == "hist":
            lefts, rights = X(s.x[:-1]), X(s.x[1:])
            base = float(Y(0.0))
            return "".join(
                f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a - 0.5, 0.5):.1f}" '
                f'height="{base - top:.1f}" fill="{s.color}"/>'
                for a, b, top in zip(lefts.tolist(), rights.tolist(), Y(s.y).tolist(), strict=True)
            )
        if s.kind == "hbars":
            n = max(len(s.y), 1)
            bh = 0.75 * ph / n
            return "".join(
                f'<rect x="{px0:.1f}" y="{py0 + (i + 0.5) / n * ph - bh / 2:.1f}" '
                f'width="{max(float(X(v)) - px0, 0.0):.1f}" height="{bh:.1f}" fill="{s.color}"/>'
                for i, v in enumerate(np.nan_to_num(s.y).tolist())
            )
        if s.kind == "points":
            o, r = s.extra["o"], s.extra["r"]
            pts = "".join(
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{r}"/>'
                for a, b in zip(X(s.x).tolist(), Y(s.y).tolist(), strict=True)
            )
            return f'<g fill="{s.color}" fill-opacity="{o}">{pts}</g>'
        if s.kind == "vline":
            if not xa <= s.x <= xb:
                return ""
            tx = float(X(s.x))
            return (
                f'<line x1="{tx:.1f}" y1="{py0:.1f}" x2="{tx:.1f}" y2="{py0 + ph:.1f}" '
                f'stroke="{s.color}" stroke-width="1.5"{dash}/>'
            )
        if s.kind == "hline":
            if not ya <= s.y <= yb:
                return ""
            ty = float(Y(s.y))
            return (
                f'<line x1="{px0:.1f}" y1="{ty:.1f}" x2="{px0 + pw:.1f}" y2="{ty:.1f}" '
                f'stroke="{s.color}" stroke-width="1.5"{dash}/>'
            )
        return ""

    def _legend(self, px0: float, py0: float, pw: float, ph: float) -> str:
        items = [s for s in self.series if s.label]
        if not items:
            return ""
        bw = max(len(s.label or "") for s in items) * CHAR_W + 34
        bh = 16 * len(items) + 8
        right = "right" in self.legend_loc
        top = "upper" in self.legend_loc or "top" in self.legend_loc
        if self.legend_loc == "center right":
            lx, ly = px0 + pw - bw - 6, py0 + (ph - bh) / 2
        else:
            lx = px0 + pw - bw - 6 if right else px0 + 6
            ly = py0 + 6 if top else py0 + ph - bh - 6
        out = [
            f'<rect x="{lx:.1f}" y="{ly:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
            'fill="white" fill-opacity="0.85" stroke="#ccc"/>'
        ]
        for i, s in enumerate(items):
            y = ly + 12 + 16 * i
            dash = ' stroke-dasharray="5,4"' if s.dash else ""
            if s.kind in ("bars", "hist"):
                out.append(
                    f'<rect x="{lx + 6:.1f}" y="{y - 5:.1f}" width="16" height="9" '
                    f'fill="{s.color}"/>'
                )
            else:
                out.append(
                    f'<line x1="{lx + 6:.1f}" y1="{y:.1f}" x2="{lx + 22:.1f}" y2="{y:.1f}" '
                    f'stroke="{s.color}" stroke-width="2"{dash}/>'
                )
            out.append(
                f'<text x="{lx + 28:.1f}" y="{y + 3.5:.1f}" font-size="10">{_esc(s.label)}</text>'
            )
        return "".join(out)

    def svg(self) -> str:
        return row([self])


def _doc(width: float, height: float, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FONT}" fill="#222">'
        f'<rect width="100%" height="100%" fill="white"/>{body}</svg>'
    )


def row(charts: list[Chart], title: str = "") -> str:
    """Charts side by side (each with its own title), under ``title``."""
    top = 24 if title else 0
    width = sum(c.width for c in charts)
    height = max(c.height for c in charts) + top
    parts = []
    if title:
        parts.append(
            f'<text x="{width / 2:.1f}" y="17" text-anchor="middle" font-size="14" '
            f'font-weight="600">{_esc(title)}</text>'
        )
    x0 = 0.0
    for c in charts:
        t = 22 if c.title else 6
        if c.title:
            parts.append(
                f'<text x="{x0 + c.width / 2:.1f}" y="{top + 16:.1f}" text-anchor="middle" '
                f'font-size="13" font-weight="600">{_esc(c.title)}</text>'
            )
        body, _ = c._body(x0 + 4, top + t + 4, c.width - 8, c.height - t - 8)
        parts.append(body)
        x0 += c.width
    return _doc(width, height, "".join(parts))


def _blues(share: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1), like matplotlib's "Blues" colour map."""
    lo, hi = (247, 251, 255), (8, 48, 107)
    r, g, b = (int(a - share * (a - z)) for a, z in zip(lo, hi, strict=True))
    return r, g, b


def heatmap(
    matrix: np.ndarray,
    labels: list[str],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: int = 420,
) -> str:
    """A square matrix of counts as shaded cells with their values, rows
    labelled on the left and columns below."""
    m = np.asarray(matrix, dtype=float)
    k = max(len(m), 1)
    left = min(max((len(s) for s in labels), default=1) * CHAR_W + 10, 0.35 * size) + 18
    top, bottom = 30, 40 + (0 if k <= 6 else 20)
    side = size - left - 10
    cell = side / k
    hi = float(m.max()) if m.size else 0.0
    out = []
    if title:
        out.append(
            f'<text x="{size / 2:.1f}" y="18" text-anchor="middle" font-size="13" '
            f'font-weight="600">{_esc(title)}</text>'
        )
    fs = 11 if k <= 6 else max(6, 11 - k // 4)
    for i in range(len(m)):
        for j in range(len(m)):
            v = m[i, j]
            share = v / hi if hi > 0 else 0.0
            r, g, b = _blues(share)
            x, y = left + j * cell, top + i * cell
            ink = "white" if share > 0.5 else "#222"
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill="rgb({r},{g},{b})" stroke="white"/>'
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                f'font-size="{fs}" fill="{ink}">{int(v):,}</text>'
            )
    for i, lab in enumerate(labels[: len(m)]):
        out.append(
            f'<text x="{left - 4:.1f}" y="{top + (i + 0.5) * cell + 3.5:.1f}" '
            f'text-anchor="end" font-size="10">{_esc(lab)}</text>'
            f'<text x="{left + (i + 0.5) * cell:.1f}" y="{top + side + 13:.1f}" '
            f'text-anchor="middle" font-size="10">{_esc(lab)}</text>'
        )
    if xlabel:
        out.append(
            f'<text x="{left + side / 2:.1f}" y="{top + side + 30:.1f}" text-anchor="middle" '
            f'font-size="11">{_esc(xlabel)}</text>'
        )
    if ylabel:
        cy = top + side / 2
        out.append(
            f'<text x="12" y="{cy:.1f}" text-anchor="middle" font-size="11" '
            f'transform="rotate(-90 12 {cy:.1f})">{_esc(ylabel)}</text>'
        )
    return _doc(size, top + side + bottom, "".join(out))
