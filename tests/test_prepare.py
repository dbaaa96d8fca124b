"""prepare() once, train several models on the persisted features."""

import shutil

import pytest
from distributed import get_task_stream

import scaler
from scaler import ConfigError

from .conftest import base_config


def test_prepare_once_train_many_without_recomputing(client, binary_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(binary_data, data)
    cfg = base_config(str(data), str(tmp_path / "out"))
    prep = scaler.prepare(cfg, client=client, progress=False)
    assert prep.counts["rows_read"] == 6000
    assert prep.preprocessor.output_columns[:2] == ["pc1", "pc2"]
    # the features live in cluster memory: the raw data is no longer needed
    shutil.rmtree(data)
    with get_task_stream(client) as ts:
        models = [prep.train(rounds=15, params={"max_depth": d}) for d in (2, 4)]
    names = " ".join(str(t["key"]) for t in ts.data)
    assert "scan_partition" not in names and "_merge_many" not in names
    assert [m.info["params"]["max_depth"] for m in models] == [2, 4]
    assert all(m.info["valid_metric"] == "logloss" for m in models)
    assert all(m.info["best_score"] > 0 for m in models)
    best = min(models, key=lambda m: m.info["best_score"])
    metrics = prep.evaluate(best)
    assert set(metrics) == {"n", "auc", "logloss", "accuracy"} and metrics["auc"] > 0.7
    url = str(tmp_path / "best")
    scaler.save_bundle(best, url)
    loaded = scaler.load_bundle(url)
    assert loaded.info["metrics"]["auc"] == pytest.approx(metrics["auc"])
    with pytest.raises(ConfigError, match="cannot change \\[model\\] objective"):
        prep.train(objective="reg:squarederror")
    prep.release()


def test_prepare_needs_a_client(binary_data, tmp_path, monkeypatch):
    import scaler.pipeline

    monkeypatch.setattr(scaler.pipeline, "current_client", lambda: None)
    with pytest.raises(ValueError, match="needs a client"):
        scaler.prepare(base_config(binary_data, str(tmp_path)))
