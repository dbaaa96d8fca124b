"""Progress display: plain lines without control characters off a terminal,
a redrawn bar on one, per-round boosting progress reported from the workers,
and the CLI's --quiet / default output through a pipe."""

import io

import pytest

import scaler
from scaler.progress import Progress, RoundReporter, resolve_mode

from .conftest import base_config
from .test_cli import scaler_cli, write_config

CONTROL = ("\r", "\x1b", "\b")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_resolve_mode():
    assert resolve_mode("auto", stream=io.StringIO()) == "off"
    assert resolve_mode("auto", fallback="plain", stream=io.StringIO()) == "plain"
    assert resolve_mode("auto", stream=Tty()) == "bar"
    assert resolve_mode(False) == "off" and resolve_mode(None) == "off"
    with pytest.raises(ValueError, match="'progress' parameter must be one of"):
        resolve_mode("fancy")


def test_plain_lines_have_no_control_characters():
    lines = []
    p = Progress("plain", echo=lines.append, min_interval=0)
    with p.task("scan", total=3, unit="partitions") as t:
        for _ in range(3):
            t.update()
    assert lines[-1].startswith("[scan] 3/3 partitions (100%)")
    assert not any(c in line for line in lines for c in CONTROL)


def test_bar_redraws_one_line_on_a_terminal():
    tty = Tty()
    p = Progress("bar", stream=tty)
    with p.task("transform", total=4) as t:
        t.update(4)
    out = tty.getvalue()
    assert out.startswith("\r[") and out.endswith("\n") and "4/4" in out


def test_round_events_show_metrics_and_eta():
    lines = []
    p = Progress("plain", echo=lines.append, min_interval=0)
    from scaler.progress import _Task

    t = _Task(p, "train", 10, "rounds", rounds=True)
    t.event({"round": 2, "total": 10, "metrics": {"valid-auc": 0.8}, "elapsed": 1.0})
    t.event({"round": 6, "total": 10, "metrics": {"valid-auc": 0.9}, "elapsed": 3.0, "final": True})
    t.close()
    assert "[train] round 2/10 valid-auc=0.8000 eta 4s" in lines[0]
    assert "round 6/10" in lines[-1] and "(early stop)" in lines[-1]
    assert len(lines) == 2


def test_the_final_round_event_is_not_printed_twice():
    lines = []
    p = Progress("plain", echo=lines.append, min_interval=0)
    from scaler.progress import _Task

    t = _Task(p, "train", 10, "rounds", rounds=True)
    last = {"round": 10, "total": 10, "metrics": {"valid-auc": 0.9}, "elapsed": 3.0}
    t.event(last)
    t.event({**last, "final": True})  # after_training repeats the last round
    t.close()
    assert len(lines) == 1 and "round 10/10 valid-auc=0.9000" in lines[0], lines


def test_round_reporter_is_inert_outside_a_worker():
    r = RoundReporter("topic", 5)
    r.before_training(None)
    assert r.after_iteration(None, 0, {"valid": {"auc": [0.7]}}) is False
    assert r._metrics == {"valid-auc": 0.7}


def test_run_reports_partitions_and_rounds_from_the_workers(client, clean_data, tmp_path):
    lines = []
    cfg = base_config(clean_data, str(tmp_path / "out"), output={"report": False})
    scaler.run(cfg, client=client, echo=lines.append, progress="plain")
    text = "\n".join(lines)
    assert "[scan] 3/3 partitions (100%)" in text
    assert "[transform] 3/3 partitions" in text
    rounds = [line for line in lines if line.startswith("[train] round ")]
    assert rounds, text  # sent by the rank-0 worker, received through subscribe_topic
    assert "valid-logloss=" in rounds[-1]


@pytest.mark.slow
def test_cli_through_a_pipe_prints_plain_lines_and_quiet_only_the_summary(
    tmp_path, clean_data, scheduler_address, capsys
):
    cfg = base_config(
        clean_data,
        str(tmp_path / "out"),
        cluster={"address": scheduler_address},
        output={"report": False},
    )
    path = write_config(tmp_path, cfg)
    r = scaler_cli("run", str(path))
    assert r.returncode == 0, r.stderr
    assert "[scan] 3/3 partitions" in r.stdout and "[train] round" in r.stdout
    assert not any(c in r.stdout + r.stderr for c in CONTROL)

    # --quiet: only the final summary (in-process: the same code path)
    from scaler.cli import main

    assert main(["run", str(path), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Stage timings (s):")
    assert "[scan]" not in out and "[train]" not in out and "\r" not in out + err
