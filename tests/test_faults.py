"""Faults injected into real `dask scheduler` / `dask worker --nanny`
processes on 127.0.0.1: lost workers, a worker over its memory limit, a
lost scheduler. Each run must finish (or fail clearly and resume)."""

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

import scaler
from scaler.checkpoint import read_checkpoint

from . import toml_util
from .conftest import base_config
from .processes import DaskProcesses
from .test_cli import scaler_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory):
    from scaler.datasets import _frame

    url = tmp_path_factory.mktemp("faults") / "data"
    url.mkdir()
    for i in range(8):  # written in this process: no cluster needed
        kw = dict(n_features=10, rank=4, seed=3, task="binary", categorical=False, missing=0.0)
        # big enough that training outlasts the faults injected into it
        _frame(i, i * 16000, 16000, **kw).to_parquet(url / f"part-{i}.parquet", index=False)
    return str(url)


def fault_config(data, out, address, **model):
    m = {
        "rounds": 120,
        "early_stopping": 0,
        "checkpoint_every": 10,
        "max_retries": 3,
        "params": {"max_depth": 5, "learning_rate": 0.1},
    }
    m.update(model)
    return base_config(
        data,
        str(out),
        cluster={"address": address, "min_workers": 2, "wait_timeout": 60.0},
        model=m,
    )


def kill_worker(procs, index=0):
    """SIGKILL the worker process under nanny `index` (the nanny restarts it)."""
    nanny = psutil.Process(procs.workers[index].pid)
    kids = nanny.children(recursive=True)
    assert kids, "the nanny has no worker process"
    for k in kids:
        k.send_signal(signal.SIGKILL)


def when_file(path, action, timeout=120):
    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path):
                action()
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def reference(fault_data, tmp_path_factory):
    """An uninterrupted run with the same config on the same kind of cluster."""
    out = tmp_path_factory.mktemp("reference")
    with DaskProcesses(n_workers=3) as procs:
        return scaler.run(fault_config(fault_data, out, procs.address))


# 200,000: every row sketched (the training rows are fewer than 4x that);
# 10,000: the first attempt takes its bin edges from a sample scattered to the workers
@pytest.mark.parametrize("bin_sample_rows", [200_000, 10_000])
def test_lost_worker_after_a_checkpoint_resumes_and_matches(
    fault_data, reference, tmp_path, bin_sample_rows
):
    out = tmp_path / "out"
    with DaskProcesses(n_workers=3) as procs:
        ckpt = out / "checkpoints" / "checkpoint.json"
        when_file(ckpt, lambda: kill_worker(procs, 0))
        lines = []
        cfg = fault_config(fault_data, out, procs.address, bin_sample_rows=bin_sample_rows)
        result = scaler.run(cfg, echo=lines.append)
    retries = result.model.info["retries"]
    assert retries, "the worker was killed during training, so a retry must be recorded"
    assert retries[0]["resumed_from_round"] >= 10
    assert any("resuming from round" in line for line in lines)
    assert result.model.booster.num_boosted_rounds() == 120
    assert len(result.model.info["history"]["train"]["logloss"]) == 120
    assert abs(result.metrics["auc"] - reference.metrics["auc"]) < 0.005
    assert not (out / "checkpoints").exists()  # cleared once the bundle is committed


def test_the_only_worker_lost_after_a_checkpoint_comes_back_and_training_resumes(
    fault_data, reference, tmp_path
):
    # the default LocalCluster on a small machine is one worker with a thread
    # per core: losing it loses every persisted partition, and its nanny
    # brings it back
    out = tmp_path / "out"
    with DaskProcesses(n_workers=1, nthreads=2) as procs:
        when_file(out / "checkpoints" / "checkpoint.json", lambda: kill_worker(procs, 0))
        cfg = fault_config(fault_data, out, procs.address)
        cfg["cluster"]["min_workers"] = 1
        result = scaler.run(cfg)
    retries = result.model.info["retries"]
    assert retries and retries[0]["resumed_from_round"] >= 10
    assert result.model.booster.num_boosted_rounds() == 120
    assert abs(result.metrics["auc"] - reference.metrics["auc"]) < 0.005
    assert result.counts == reference.counts


def test_lost_worker_during_preprocessing_is_recomputed(fault_data, reference, tmp_path):
    out = tmp_path / "out"
    with DaskProcesses(n_workers=3) as procs:

        def echo(line):
            # after the features are persisted: their partitions on that worker are lost
            if line.startswith("[train] training"):
                kill_worker(procs, 1)
            # during the statistics pass
            if line.startswith("[scan] reading"):
                threading.Timer(0.3, kill_worker, (procs, 2)).start()

        result = scaler.run(fault_config(fault_data, out, procs.address), echo=echo)
    ref = reference.model.preprocessor.scaler_pca
    got = result.model.preprocessor.scaler_pca
    np.testing.assert_allclose(got.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(got.components_, ref.components_, rtol=1e-9, atol=1e-12)
    assert result.counts == reference.counts
    assert abs(result.metrics["auc"] - reference.metrics["auc"]) < 0.005


@pytest.mark.parametrize("held", ["all", "half"])
def test_held_partitions_lost_before_the_transform_are_read_again(
    fault_data, reference, tmp_path, monkeypatch, held
):
    # The raw columns are held between the passes, and the transform drops the
    # client's references to them. A worker lost right after the statistics
    # takes its held partitions with it: the transform reads those again.
    # "half": hold_raw = "auto" on data above its share of memory holds the
    # first partitions only, and the transform reads the others anyway.
    from distributed import Client, get_task_stream

    from scaler import pipeline

    holds = []
    if held == "half":

        def hold_half(cfg, df, rows, cl):
            holds.append((df.npartitions // 2, df.npartitions))
            return df.npartitions // 2, "half of them (test)"

        monkeypatch.setattr(pipeline, "_hold_raw", hold_half)

    lost = []
    with DaskProcesses(n_workers=3) as procs, Client(procs.address) as client:

        def echo(line):
            if line.startswith("[transform] transforming"):
                has = client.has_what()
                addr = max(has, key=lambda a: len(has[a]))  # the worker holding most
                pid = client.run(os.getpid, workers=[addr])[addr]
                os.kill(pid, signal.SIGKILL)
                lost.append(len(has[addr]))

        cfg = fault_config(fault_data, tmp_path / "out", procs.address)
        cfg["preprocess"]["hold_raw"] = True if held == "all" else "auto"
        with get_task_stream(client) as ts:
            result = scaler.run(cfg, client=client, echo=echo)
    reads = [t["key"] for t in ts.data if "read_parquet" in str(t["key"])]
    assert lost and lost[0] > 0
    if held == "half":
        assert holds and 0 < holds[0][0] < holds[0][1], holds  # some held, some not
    assert len(reads) > len(set(reads)), reads  # some partitions were read a second time
    assert result.counts == reference.counts
    ref = reference.model.preprocessor.scaler_pca
    got = result.model.preprocessor.scaler_pca
    np.testing.assert_allclose(got.components_, ref.components_, rtol=1e-9, atol=1e-12)
    assert abs(result.metrics["auc"] - reference.metrics["auc"]) < 0.005


def test_worker_over_its_memory_limit_is_restarted_and_training_resumes(
    fault_data, reference, tmp_path
):
    out = tmp_path / "out"
    with DaskProcesses(n_workers=3, memory_limit="1GB") as procs:
        from distributed import Client

        def hog():
            # The worker's only thread is busy training, so grow memory from a
            # thread of its own until the nanny kills the process.
            def grow():
                # past the 1 GB limit in one step: training must not finish first
                blocks = [np.ones(1_100_000_000 // 8)]
                for _ in range(40):
                    blocks.append(np.ones(200_000_000 // 8))
                    time.sleep(0.02)

            threading.Thread(target=grow, daemon=True).start()

        with Client(procs.address) as side:
            hit = []

            def start_hog():
                # a worker that is training right now (one holding no training
                # rows takes no part in it)
                busy = [w for w, keys in side.processing().items() if keys]
                hit.append(sorted(busy)[0])
                side.run(hog, workers=hit)

            when_file(out / "checkpoints" / "checkpoint.json", start_hog)
            # Long enough that the worker dies mid-training: a worker being
            # terminated may still finish a short training task first.
            cfg = fault_config(fault_data, out, procs.address, rounds=360)
            result = scaler.run(cfg)
            restarted = bool(hit) and hit[0] not in side.scheduler_info()["workers"]
    assert restarted, "the hog should have pushed its worker over the memory limit"
    assert result.model.info["retries"]
    assert result.model.booster.num_boosted_rounds() == 360
    assert abs(result.metrics["auc"] - reference.metrics["auc"]) < 0.01


def test_lost_scheduler_fails_clearly_and_resume_finishes(fault_data, tmp_path):
    out = tmp_path / "out"
    cfg_path = tmp_path / "run.toml"
    with DaskProcesses(n_workers=2) as procs:
        cfg_path.write_text(
            toml_util.dumps(fault_config(fault_data, out, procs.address, rounds=200))
        )
        ckpt = out / "checkpoints" / "checkpoint.json"
        when_file(ckpt, lambda: os.killpg(procs.scheduler.pid, signal.SIGKILL))
        # a short reconnect timeout: the client gives up on the dead scheduler sooner
        r = scaler_cli(
            "run",
            str(cfg_path),
            timeout=300,
            env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s"},
        )
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Lost the Dask scheduler" in r.stderr and "--resume" in r.stderr
    last = read_checkpoint(str(out / "checkpoints"))
    assert last is not None and last.rounds >= 10 and last.rounds % 10 == 0
    last.booster()  # intact and loadable
    assert not (out / "model").exists()

    with DaskProcesses(n_workers=2) as fresh:
        r = scaler_cli("run", str(cfg_path), "--resume", "--scheduler", fresh.address, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from the checkpoint at round {last.rounds}" in r.stdout
    model = scaler.load_bundle(str(out / "model"))
    assert model.booster.num_boosted_rounds() == 200
    assert len(model.info["history"]["train"]["logloss"]) == 200


def test_a_rank_left_blocked_by_a_lost_peer_is_restarted_and_training_finishes(tmp_path):
    """A worker dies while another rank is stuck in the training task: the
    retry must not queue behind that rank's thread forever."""
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client
    from xgboost.callback import TrainingCallback

    from scaler.train import train_booster

    class BlockOnce(TrainingCallback):
        """At round 3, the rank that is not rank 0 writes its worker's name
        to `marker` and never returns, as a rank blocked in a collective
        whose peer died. Only once: not if `marker` exists. (Defined here so
        that it is pickled by value: the workers cannot import the tests.)"""

        def __init__(self, marker):
            super().__init__()
            self.marker = str(marker)

        def after_iteration(self, model, epoch, evals_log):
            import xgboost
            from distributed import get_worker

            first = not os.path.exists(self.marker)
            if epoch == 3 and xgboost.collective.get_rank() == 1 and first:
                with open(self.marker + ".tmp", "w") as f:
                    f.write(get_worker().name)
                os.replace(self.marker + ".tmp", self.marker)
                while True:
                    time.sleep(1)
            return False

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(20000, 5)), columns=list("abcde"))
    y = pd.Series((X["a"] + rng.normal(size=20000) > 0).astype(np.float32), name="y")
    marker = tmp_path / "blocked"
    with DaskProcesses(n_workers=2) as procs, Client(procs.address) as client:
        dX = dd.from_pandas(X, npartitions=4).persist()
        dy = dd.from_pandas(y, npartitions=4).persist()

        def kill_the_other():
            blocked = marker.read_text()
            kill_worker(procs, 1 - int(blocked[1:]))

        when_file(marker, kill_the_other)
        lines = []
        result = train_booster(
            client,
            dX,
            dy,
            params={"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3},
            rounds=20,
            max_retries=2,
            min_workers=2,
            echo=lines.append,
            extra_callbacks=[BlockOnce(marker)],
            train_eval_rows=0,
        )
    retries = result.retries
    assert len(retries) == 1, retries
    # the blocked rank's worker was restarted: the retry did not queue behind it
    assert len(retries[0]["restarted_workers"]) == 1
    assert any("still blocked" in line for line in lines)
    assert result.booster.num_boosted_rounds() == 20
