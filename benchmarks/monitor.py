"""Run a command as a child process and sample the memory of its whole
process tree (the child and all its descendants: Dask scheduler, nannies and
workers included) from the parent.

RSS is sampled every ``interval`` seconds and summed over the tree; that sum
counts shared pages (shared libraries, page-cache mappings) once per process,
so PSS (proportional set size, shared pages split between the processes that
map them) is sampled too, less often, as a fairer "all processes together"
figure.

A guard kills the tree when its RSS goes above ``kill_above`` bytes or the
machine's available memory falls under ``min_available`` bytes, and the
result says so instead of the harness crashing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

__all__ = ["TreeRun", "run_monitored"]


@dataclass
class TreeRun:
    returncode: int | None
    wall_s: float
    peak_rss: int = 0
    peak_pss: int = 0
    peak_rss_at_s: float = 0.0
    per_process_peak_rss: dict[str, int] = field(default_factory=dict)
    killed: str | None = None
    samples: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_bytes": self.peak_rss,
            "peak_pss_bytes": self.peak_pss,
            "peak_rss_at_s": round(self.peak_rss_at_s, 2),
            "per_process_peak_rss_bytes": self.per_process_peak_rss,
            "killed": self.killed,
            "samples": self.samples,
            # one point per second is enough to draw the curve
            "rss_timeline": self.timeline,
        }


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _pss(pid: int) -> int:
    # smaps_rollup is one cheap read per process (Linux >= 4.14).
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _label(p: psutil.Process, root_pid: int) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        cmd = "?"
    if p.pid == root_pid:
        role = "main"
    elif "spawn_main" in cmd or "forkserver" in cmd:
        role = "worker" if "spawn_main" in cmd else "forkserver"
    elif "resource_tracker" in cmd:
        role = "resource_tracker"
    else:
        role = "child"
    return f"{role}:{p.pid}"


def run_monitored(
    cmd: list[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    interval: float = 0.1,
    pss_every: int = 5,
    kill_above: int = 20 * 2**30,
    min_available: int = int(1.5 * 2**30),
    timeout: float | None = None,
    log_path: str | None = None,
) -> TreeRun:
    """Run ``cmd``, wait for it, and return its wall time and memory peaks."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    root = psutil.Process(proc.pid)
    out = TreeRun(returncode=None, wall_s=0.0)
    labels: dict[int, str] = {}
    stop = threading.Event()

    def kill(reason: str) -> None:
        out.killed = reason
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session
        except ProcessLookupError:
            pass

    def sample() -> None:
        i = 0
        last_tl = -1.0
        while not stop.is_set():
            procs = _tree(root)
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                if p.pid not in labels:
                    labels[p.pid] = _label(p, proc.pid)
                lab = labels[p.pid]
                if rss > out.per_process_peak_rss.get(lab, 0):
                    out.per_process_peak_rss[lab] = rss
            now = time.perf_counter() - t0
            if total > out.peak_rss:
                out.peak_rss, out.peak_rss_at_s = total, now
            if i % pss_every == 0:
                pss = sum(_pss(p.pid) for p in procs)
                out.peak_pss = max(out.peak_pss, pss)
            if now - last_tl >= 1.0:
                out.timeline.append((round(now, 1), total))
                last_tl = now
            out.samples += 1
            i += 1
            if out.killed is None:
                if total > kill_above:
                    kill(
                        f"killed by the harness: process tree RSS {total / 2**30:.1f} GiB "
                        f"> guard {kill_above / 2**30:.1f} GiB"
                    )
                elif psutil.virtual_memory().available < min_available:
                    kill(
                        f"killed by the harness: machine available memory under "
                        f"{min_available / 2**30:.1f} GiB (tree RSS {total / 2**30:.1f} GiB)"
                    )
                elif timeout is not None and now > timeout:
                    kill(f"killed by the harness: timeout {timeout:.0f} s")
            stop.wait(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out.returncode = proc.wait()
    except KeyboardInterrupt:
        kill("interrupted")
        proc.wait()
        raise
    finally:
        out.wall_s = time.perf_counter() - t0
        stop.set()
        th.join()
        if log is not subprocess.DEVNULL:
            log.close()
        # leftovers of the tree (e.g. a worker that outlived its nanny)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return out
