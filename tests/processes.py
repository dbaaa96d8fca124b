"""Start real `dask scheduler` / `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A scheduler and workers as separate OS processes, stopped on exit."""

    def __init__(
        self,
        n_workers: int = 2,
        *,
        nthreads: int = 1,
        nanny: bool = True,
        memory_limit: str = "3GB",
        extra_scheduler: list[str] | None = None,
        extra_worker: list[str] | None = None,
        protocol: str = "tcp",
    ) -> None:
        self.port = free_port()
        self.address = f"{protocol}://127.0.0.1:{self.port}"
        self.n_workers = n_workers
        self.nthreads = nthreads
        self.nanny = nanny
        self.memory_limit = memory_limit
        self.extra_scheduler = extra_scheduler or []
        self.extra_worker = extra_worker or []
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env = dict(os.environ, DASK_LOGGING__DISTRIBUTED="warning")

    def start_scheduler(self) -> None:
        self.scheduler = subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                "127.0.0.1:0",
                "--no-show",
                *self.extra_scheduler,
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def start_worker(self, name: str) -> subprocess.Popen:
        cmd = [
            DASK,
            "worker",
            self.address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            str(self.nthreads),
            "--memory-limit",
            self.memory_limit,
            "--name",
            name,
            "--no-dashboard",
            "--nanny" if self.nanny else "--no-nanny",
            *self.extra_worker,
        ]
        p = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(p)
        return p

    def __enter__(self) -> DaskProcesses:
        self.start_scheduler()
        for i in range(self.n_workers):
            self.start_worker(f"w{i}")
        self.wait_for_workers(self.n_workers)
        return self

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", **self.client_kwargs()) as c:
            c.wait_for_workers(n, timeout=timeout)

    def client_kwargs(self) -> dict:
        return {}

    def __exit__(self, *exc) -> None:
        for p in [*self.workers, self.scheduler]:
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 15
        for p in [*self.workers, self.scheduler]:
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def listening_port(text: str) -> int | None:
    m = re.search(r"127\.0\.0\.1:(\d+)", text)
    return int(m.group(1)) if m else None
