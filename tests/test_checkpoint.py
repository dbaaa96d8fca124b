"""Checkpoints on the shared cluster: committed files, --resume semantics."""

import json
import time

import pytest

import scaler
from scaler.checkpoint import fingerprint, read_checkpoint, write_checkpoint
from scaler.errors import BundleError, ConfigError

from .conftest import base_config


class Stop(Exception):
    pass


def interrupt_at(stage):
    def echo(line):
        if line.startswith(f"[{stage}]"):
            raise Stop(line)

    return echo


def cfg_for(data, out, **model):
    m = {"rounds": 20, "early_stopping": 0, "checkpoint_every": 5}
    m.update(model)
    return base_config(data, str(out), model=m)


def test_resume_continues_from_the_checkpoint(client, clean_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Stop):
        scaler.run(cfg_for(clean_data, out), client=client, echo=interrupt_at("evaluate"))
    ckpt = read_checkpoint(str(out / "checkpoints"))
    assert ckpt is not None and ckpt.rounds == 20
    assert len(ckpt.history["valid"]["logloss"]) == 20
    assert not (out / "model").exists()

    lines = []
    result = scaler.run(
        cfg_for(clean_data, out, rounds=30), client=client, echo=lines.append, resume=True
    )
    assert "[train] resuming from the checkpoint at round 20" in lines
    booster = result.model.booster
    assert booster.num_boosted_rounds() == 30
    assert booster[:20].get_dump() == ckpt.booster().get_dump()  # the first 20 trees are kept
    assert len(result.model.info["history"]["valid"]["logloss"]) == 30
    assert result.model.info["resumed_from_round"] == 20
    assert not (out / "checkpoints").exists()  # cleared after the bundle is committed


def test_resume_without_a_checkpoint_starts_from_zero(client, clean_data, tmp_path):
    lines = []
    result = scaler.run(
        cfg_for(clean_data, tmp_path / "o", rounds=6), client=client, echo=lines.append, resume=True
    )
    assert any("no checkpoint" in line for line in lines)
    assert result.model.booster.num_boosted_rounds() == 6


def test_resume_refuses_a_checkpoint_of_another_config(client, clean_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Stop):
        scaler.run(
            cfg_for(clean_data, out, rounds=10), client=client, echo=interrupt_at("evaluate")
        )
    other = cfg_for(clean_data, out, rounds=10, params={"max_depth": 2})
    with pytest.raises(ConfigError, match="different"):
        scaler.run(other, client=client, resume=True, echo=interrupt_at("scan"))


def test_checkpoint_files_are_committed_and_verified(tmp_path):
    import xgboost

    X = [[0.0], [1.0], [2.0], [3.0]]
    b = xgboost.train({"max_depth": 1}, xgboost.DMatrix(X, [0, 1, 0, 1]), 3)
    url = str(tmp_path / "ck")
    write_checkpoint(url, b, 3, {"valid": {"logloss": [0.5, 0.4, 0.3]}}, fingerprint({"a": 1}))
    write_checkpoint(url, b, 6, {"valid": {"logloss": [0.5] * 6}}, fingerprint({"a": 1}))
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["checkpoint.json", "round-000006.ubj"]  # older booster pruned
    assert read_checkpoint(url).rounds == 6
    (tmp_path / "ck" / "round-000006.ubj").write_bytes(b"torn")
    with pytest.raises(BundleError, match="altered"):
        read_checkpoint(url)
    index = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    (tmp_path / "ck" / index["file"]).unlink()
    with pytest.raises(BundleError, match="missing"):
        read_checkpoint(url)
    assert read_checkpoint(str(tmp_path / "none")) is None


def test_train_booster_on_dask_arrays_with_checkpoints(client, tmp_path):
    import dask.array as da
    import numpy as np

    from scaler.train import train_booster

    rng = da.random.default_rng(0)
    X = rng.normal(size=(4000, 5), chunks=(1000, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    res = train_booster(
        client,
        X,
        y,
        params={"tree_method": "hist", "objective": "binary:logistic"},
        rounds=6,
        checkpoint_url=str(tmp_path / "ck"),
        checkpoint_every=3,
    )
    assert res.booster.num_boosted_rounds() == 6
    assert len(res.history["train"]["logloss"]) == 6  # on all 4000 rows (< train_eval_rows)
    assert read_checkpoint(str(tmp_path / "ck")).rounds == 6


def _binary_frame(rows):
    """Two float32 features and a binary label, in 4 Dask partitions."""
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)).astype("float32"), columns=list("abc"))
    ddf = dd.from_pandas(frame, npartitions=4)
    return ddf[["a", "b"]], (ddf["c"] > 0).astype("float32")


def test_train_curve_is_measured_on_about_train_eval_rows(client, monkeypatch):
    from scaler import train

    sizes = []
    sample_rows = train._sample_rows

    def spy(X, y, fraction):
        Xs, ys = sample_rows(X, y, fraction)
        sizes.append(int(ys.map_partitions(len).sum().compute()))
        return Xs, ys

    monkeypatch.setattr(train, "_sample_rows", spy)
    X, y = _binary_frame(20_000)
    params = {"tree_method": "hist", "objective": "binary:logistic"}
    res = train.train_booster(client, X, y, params=params, rounds=3, train_eval_rows=2_000)
    assert 1_800 <= sizes[0] <= 2_200  # counted the 20,000 rows, sampled a tenth
    assert len(res.history["train"]["logloss"]) == 3
    res = train.train_booster(client, X, y, params=params, rounds=3, train_eval_rows=0)
    assert len(sizes) == 1 and "train" not in res.history


def test_training_leaves_no_scattered_bin_edges_on_the_workers(client, monkeypatch):
    from scaler import train

    used = []
    quantile_matrix = train._quantile_matrix

    def spy(client, X, y, rows, **kw):
        used.append(rows is not None)
        return quantile_matrix(client, X, y, rows, **kw)

    monkeypatch.setattr(train, "_quantile_matrix", spy)
    X, y = _binary_frame(48_000)
    params = {"tree_method": "hist", "objective": "binary:logistic"}
    res = train.train_booster(client, X, y, params=params, rounds=2, bin_sample_rows=10_000)
    assert used == [True] and res.booster.num_boosted_rounds() == 2  # edges from a sample

    def edges_held():
        held = client.run(lambda dask_worker: [str(k) for k in dask_worker.data])
        return [k for keys in held.values() for k in keys if "_SampleCuts" in k]

    deadline = time.monotonic() + 10  # releasing a future reaches the workers shortly after
    while edges_held() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not edges_held()


class _BlockedCluster:
    """A client whose workers report a training task forever, and whose
    workers cannot be restarted (no nanny)."""

    def __init__(self):
        self.restart_calls = []

    def run(self, fn, on_error="raise"):
        return {"tcp://127.0.0.1:1": True, "tcp://127.0.0.1:2": False}

    def restart_workers(self, workers, timeout=None):
        self.restart_calls.append(list(workers))
        raise ValueError("There is no Nanny for tcp://127.0.0.1:1")


def test_a_blocked_rank_that_cannot_be_restarted_is_a_clear_error():
    from scaler.train import _drain_failed_attempt

    fake, lines = _BlockedCluster(), []
    with pytest.raises(RuntimeError) as info:
        _drain_failed_attempt(fake, lines.append, grace=0.3)
    assert fake.restart_calls == [["tcp://127.0.0.1:1"]]  # only the blocked one
    msg = str(info.value)
    assert "tcp://127.0.0.1:1" in msg and "tcp://127.0.0.1:2" not in msg
    assert "nanny" in msg and "--resume" in msg
    assert any("restarting 1 worker" in line for line in lines)


class _Libc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_heap_thresholds_are_raised_while_held_and_restored(monkeypatch):
    import ctypes

    from scaler import _heap
    from scaler.train import _HeapForTraining

    libc = _Libc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_: raise both thresholds while boosting ...
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    cb = _HeapForTraining()
    assert cb.before_training("model") == "model"
    assert libc.calls == [("mallopt", -3, 32 * 2**20), ("mallopt", -1, 64 * 2**20)]
    # ... and put back what the worker had, then give the memory back
    assert cb.after_training("model") == "model"
    assert libc.calls[2:] == [
        ("mallopt", -3, 128 * 1024),
        ("mallopt", -1, 65536),
        ("malloc_trim", 0),
    ]
    cb.after_training("model")  # once only
    assert len(libc.calls) == 5
    # Holders nest (the passes over the data, then training in the same worker):
    # the settings come back when the last one releases.
    libc.calls.clear()
    assert _heap.keep() is True
    cb.before_training("model")
    assert len(libc.calls) == 2
    cb.after_training("model")
    assert len(libc.calls) == 2  # still held by the first
    assert _heap.release() is True
    assert [c[0] for c in libc.calls[2:]] == ["mallopt", "mallopt", "malloc_trim"]
    assert _heap.release() is False  # nothing held: nothing to undo
    assert len(libc.calls) == 5
    # glibc's own adaptive defaults are left alone
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    libc.calls.clear()
    cb = _HeapForTraining()
    cb.before_training("model")
    cb.after_training("model")
    assert _heap.keep() is False
    _heap.release()
    assert libc.calls == []
