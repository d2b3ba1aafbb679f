"""Start ``mtus serve`` in a subprocess on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(["--db", path]) as srv: srv.url`` - a real server, stopped on exit.
    Its stderr goes to ``srv.log_path`` (tests read it to check nothing private was logged)."""

    def __init__(self, args: list[str] | None = None, *, log_path: str | Path | None = None,
                 startup: float = 60.0, env: dict[str, str] | None = None):
        self.args = list(args or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else None
        self.startup = startup
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "mtus_engine", "serve", "--port", str(self.port), *self.args]
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mtus serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if json.load(resp).get("status") == "ok":
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("mtus serve did not answer /healthz in time")

    def workers(self) -> list[int]:
        """Worker process ids (children of the uvicorn supervisor), for tests that kill one."""
        try:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        except OSError:
            return []
        return [int(p) for p in out.stdout.split()]

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
