"""Readable text and HTML representations of fitted objects and results."""

import numpy as np
import pandas as pd
import pytest

from scaler import ScalePCA


@pytest.fixture(scope="module")
def result(binary_result):
    return binary_result[0]


def test_scalepca_repr_unfitted_and_fitted():
    sp = ScalePCA(n_components=2)
    assert repr(sp) == "ScalePCA(scale=True, n_components=2, method='covariance')"
    x = np.random.default_rng(0).normal(size=(500, 4))
    sp.fit(pd.DataFrame(x, columns=list("abcd")))
    text = repr(sp)
    assert "500 rows x 4 numeric features" in text
    assert "2 components explain" in text and "of the variance" in text
    html = sp._repr_html_()
    assert html.startswith('<div class="scaler-repr">') and "<table>" in html
    assert "2 components explain" in html


def test_model_repr_shows_stages_shapes_and_metrics(result):
    text = repr(result.model)
    assert text.startswith("scaler.Model")
    assert "binary classification of 'label'" in text
    assert "13 columns (12 numeric, 1 categorical)" in text
    assert "scaling + PCA to 5 components" in text
    assert "6 model features" in text
    assert "valid logloss=" in text and "holdout" in text and "auc=" in text
    assert "<th" in result.model._repr_html_()


def test_run_result_repr_and_html(result):
    text = repr(result)
    assert text.startswith("scaler.RunResult")
    for piece in ("read 6,000", "stages (s)", "scan ", "train ", "total ", "auc=", "bundle"):
        assert piece in text, piece
    html = result._repr_html_()
    assert "scaler.RunResult" in html and "holdout scored" in html
    assert "&lt;" not in text  # text is not HTML-escaped
