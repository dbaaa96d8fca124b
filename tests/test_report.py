"""report.html and the plots next to every bundle, `scaler report`, the
feature importance mapped back through PCA, and the page as rendered by a
real headless Chromium (Debian's `chromium`, installed by .ci/run)."""

import base64
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

import scaler
from scaler.cli import main
from scaler.report import feature_importance, write_report

from .conftest import base_config

BINARY_PLOTS = {
    "explained_variance",
    "learning_curves",
    "feature_importance",
    "roc",
    "precision_recall",
    "confusion_matrix",
    "timings",
}


@pytest.fixture(scope="module")
def binary_report_run(binary_result):
    return binary_result


def test_run_writes_report_next_to_the_bundle(binary_report_run):
    result, out = binary_report_run
    report = out / "report"
    assert result.report_url == str(report / "report.html")
    assert {p.stem for p in report.glob("*.svg")} == BINARY_PLOTS
    page = (report / "report.html").read_text()
    # one self-contained file: every image inline, nothing fetched
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(imgs) == len(BINARY_PLOTS)
    assert all(src.startswith("data:image/svg+xml;base64,") for src in imgs)
    inline = base64.b64decode(imgs[0].split(",", 1)[1])
    assert inline == (report / "explained_variance.svg").read_bytes()
    for p in report.glob("*.svg"):  # well-formed SVG documents
        assert ET.fromstring(p.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"
    assert not re.search(r'(src|href)="(https?:|//)', page)
    # the bundle folder is untouched and still verifies
    assert sorted(p.name for p in (out / "model").iterdir())[0] == "manifest.json"
    scaler.load_bundle(result.bundle_url)
    assert "Report:" in result.summary()


def test_feature_importance_maps_pca_gain_back_to_inputs(binary_report_run):
    result, _ = binary_report_run
    model = result.model
    imp = feature_importance(model)
    gains = model.booster.get_score(importance_type="total_gain")
    assert set(imp) == set(model.input_columns)
    assert sum(imp.values()) == pytest.approx(sum(gains.values()), rel=1e-9)
    assert imp["region"] == pytest.approx(gains.get("region", 0.0))
    sp = model.preprocessor.scaler_pca
    w = np.abs(sp.components_)
    share = w / w.sum(axis=1, keepdims=True)
    g = np.array([gains.get(n, 0.0) for n in sp.output_names])
    assert imp["f00"] == pytest.approx(float(g @ share[:, 0]))


def test_scaler_report_command_regenerates(binary_report_run, tmp_path, capsys):
    result, out = binary_report_run
    dest = tmp_path / "again"
    assert main(["report", result.bundle_url, "--out", str(dest)]) == 0
    assert "report.html (7 plots)" in capsys.readouterr().out
    assert {p.stem for p in dest.glob("*.svg")} == BINARY_PLOTS
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "No committed scaler bundle" in capsys.readouterr().err


def test_report_plots_holdout_rows_it_is_given(binary_report_run, tmp_path):
    # run() hands over the scored holdout still in cluster memory; the
    # report then reads nothing back
    result, out = binary_report_run
    scored = pd.read_parquet(out / "holdout_predictions")
    rep = write_report(
        result.bundle_url,
        out_url=str(tmp_path / "given"),
        predictions_url=str(tmp_path / "nowhere"),
        holdout=scored,
    )
    assert set(rep.images) == BINARY_PLOTS
    page = (tmp_path / "given" / "report.html").read_text()
    assert "No holdout plots" not in page


def _polyline(svg: bytes, color: str) -> np.ndarray:
    """The vertices (pixels) of the polyline of ``color`` in an SVG plot."""
    root = ET.fromstring(svg)
    (line,) = [e for e in root.iter() if e.tag.endswith("polyline") and e.get("stroke") == color]
    return np.array([[float(v) for v in p.split(",")] for p in line.get("points").split()])


def test_binary_roc_in_a_run_is_the_exact_curve_of_every_holdout_row(binary_report_run):
    # run() draws ROC and precision-recall from the evaluation's merged
    # summary: the drawn vertices are scikit-learn's curve over all holdout
    # rows, mapped to pixels and thinned only where nothing changes on screen
    from sklearn.metrics import roc_curve

    from scaler._svg import PALETTE

    result, out = binary_report_run
    scored = pd.read_parquet(out / "holdout_predictions")
    y = (scored["label"].astype(str) == str(result.model.classes[1])).to_numpy()
    fpr, tpr, _ = roc_curve(y, scored["probability"].to_numpy(), drop_intermediate=False)
    drawn = _polyline((out / "report" / "roc.svg").read_bytes(), PALETTE[0])
    x0, x1 = drawn[:, 0].min(), drawn[:, 0].max()  # fpr 0 and 1
    y0, y1 = drawn[:, 1].max(), drawn[:, 1].min()  # tpr 0 and 1 (pixels grow downwards)
    px = np.stack([x0 + fpr * (x1 - x0), y0 - tpr * (y0 - y1)], axis=1)
    # every drawn vertex is a vertex of the reference curve (to the 0.1 px
    # the SVG is written with), and the curve's ends are drawn
    gap = np.abs(drawn[:, None, :] - px[None, :, :]).max(axis=2).min(axis=1)
    assert gap.max() <= 0.11
    assert len(drawn) > 20
    page = (out / "report" / "report.html").read_text()
    assert (
        f"(AUC {result.metrics['auc']:.3f})"
        in base64.b64decode(
            re.findall(r'alt="roc" src="data:image/svg\+xml;base64,([^"]+)"', page)[0]
        ).decode()
    )


def test_binary_curves_of_a_summary_match_scikit_learn():
    from sklearn.metrics import precision_recall_curve, roc_curve

    from scaler.evaluate import summarize_partition
    from scaler.report import _binary_curves

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.random(3000) * 0.5 + 0.4 * y, 2)  # ties on purpose
    fpr, tpr, precision, base = _binary_curves(summarize_partition(y, s, "binary"))
    rf, rt, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, rf)
    np.testing.assert_allclose(tpr, rt)
    p, r, _ = precision_recall_curve(y, s)
    np.testing.assert_allclose(precision[1:], p[::-1][1:])
    np.testing.assert_allclose(tpr, r[::-1])
    assert base == pytest.approx(y.mean())


def test_svg_ticks_and_thinning():
    from scaler._svg import fmt_tick, nice_ticks, thin

    t = nice_ticks(0, 1.02)
    assert t == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [fmt_tick(v, t) for v in t][:2] == ["0.0", "0.2"]
    t = nice_ticks(0, 31_000)
    assert fmt_tick(t[-1], t) == "30,000" and len(t) == 7
    t = nice_ticks(0.48, 0.71)
    assert [fmt_tick(v, t) for v in t] == ["0.50", "0.55", "0.60", "0.65", "0.70"]
    # 100,000 points on a 400 px curve: a few hundred vertices, ends kept,
    # and no kept vertex further than the grid from the dropped ones
    x = np.linspace(0, 400, 100_000)
    y = 300 - 300 * np.sqrt(x / 400)
    tx, ty = thin(x, y)
    assert len(tx) < 3000 and (tx[0], ty[0], tx[-1], ty[-1]) == (x[0], y[0], x[-1], y[-1])
    assert np.abs(np.interp(x, tx, ty) - y).max() < 0.5


def test_svg_bars_are_proportional_to_their_values():
    from scaler._svg import Chart

    c = Chart(title="importance")
    c.hbars(["a", "b", "c"], [12.0, 6.0, 3.0], color="#31a354")
    widths = [
        float(w) for w in re.findall(r'width="([\d.]+)" height="[\d.]+" fill="#31a354"', c.svg())
    ]
    assert len(widths) == 3
    assert widths[0] / widths[1] == pytest.approx(2, rel=2e-3)
    assert widths[1] / widths[2] == pytest.approx(2, rel=2e-3)


def test_regression_report_has_residual_plots(client, regression_data, tmp_path):
    cfg = base_config(
        regression_data, str(tmp_path), model={"objective": "reg:squarederror"}, split={}
    )
    result = scaler.run(cfg, client=client)
    names = {p.stem for p in (tmp_path / "report").glob("*.svg")}
    assert {"predicted_vs_actual", "residuals", "learning_curves"} <= names
    assert "roc" not in names
    # without the scored holdout the report still renders and says why
    rep = write_report(
        result.bundle_url, out_url=str(tmp_path / "r2"), predictions_url=str(tmp_path / "none")
    )
    assert "residuals" not in rep.images
    assert "No holdout plots" in (tmp_path / "r2" / "report.html").read_text()


CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
</script>"""


def _chromium(*args, profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: apt-get install -y chromium (see .ci/run)"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(binary_report_run, tmp_path):
    from PIL import Image

    _, out = binary_report_run
    page = out / "report" / "report.html"
    shot = tmp_path / "report.png"
    r = _chromium(
        "--window-size=1200,2400",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page.as_uri(),
        profile=tmp_path / "p1",
    )
    assert shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.uint8)
    assert img.shape == (2400, 1200)
    assert (img < 250).mean() > 0.05  # not blank: text, tables and plots
    assert len(np.unique(img)) > 50
    # every image decoded, checked from inside the page once loaded
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    r = _chromium(
        "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p2"
    )
    m = re.search(r'data-images="(\d+)/(\d+)"', r.stdout)
    assert m, r.stderr[-2000:]
    assert m.group(1) == m.group(2) == str(len(BINARY_PLOTS))
