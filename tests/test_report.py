"""report.html and the plots next to every bundle, `scaler report`, the
feature importance mapped back through PCA, and the page as rendered by a
real headless Chromium (Debian's `chromium`, installed by .ci/run)."""

import base64
import re
import shutil
import subprocess

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
    assert {p.stem for p in report.glob("*.png")} == BINARY_PLOTS
    page = (report / "report.html").read_text()
    # one self-contained file: every image inline, nothing fetched
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(imgs) == len(BINARY_PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert base64.b64decode(imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
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
    assert {p.stem for p in dest.glob("*.png")} == BINARY_PLOTS
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


def test_report_leaves_the_sessions_matplotlib_backend_alone(binary_report_run, tmp_path):
    # a notebook's inline backend must survive a report (the plots use
    # matplotlib's object API, not pyplot)
    import matplotlib

    result, _ = binary_report_run
    before = matplotlib.get_backend()
    matplotlib.use("pdf", force=True)
    try:
        rep = write_report(result.bundle_url, out_url=str(tmp_path / "again"))
        assert matplotlib.get_backend() == "pdf"
        assert (tmp_path / "again" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(rep.images) == len(BINARY_PLOTS)
    finally:
        matplotlib.use(before, force=True)


def test_regression_report_has_residual_plots(client, regression_data, tmp_path):
    cfg = base_config(
        regression_data, str(tmp_path), model={"objective": "reg:squarederror"}, split={}
    )
    result = scaler.run(cfg, client=client)
    names = {p.stem for p in (tmp_path / "report").glob("*.png")}
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
