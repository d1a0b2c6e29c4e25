"""Start the reference target as a subprocess and wait until it answers: for tests, ``conform``,
``load`` and ``make demo``.

    with start_target(args=["--latency", "zero"]) as target:
        client = OpenAI(base_url=target.base_url, api_key=target.api_key)

The key travels in the child's environment (``EYECHART_API_KEY``), never on its command line. Port 0
(the default) lets the server pick a free port and report it through ``--port-file``. The server's
output goes to a log file whose tail is shown when it fails to start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from eyechart.target import DEFAULT_API_KEY

_RUNNING: set[RunningTarget] = set()


class TargetStartError(RuntimeError):
    """The target did not come up (bad arguments, port in use, timeout); the message has its log tail."""


@dataclass(eq=False)
class RunningTarget:
    base_url: str  # what an OpenAI SDK takes as base_url: http://127.0.0.1:PORT/v1/openai
    root_url: str  # http://127.0.0.1:PORT (for /health, /metrics, /v1/...)
    api_key: str
    model: str
    pid: int
    trace_path: Path | None
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code (None if unknown)."""
        _RUNNING.discard(self)
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return proc.returncode

    def __enter__(self) -> RunningTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_target(
    *,
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    args: Sequence[str] = (),
    trace: Path | None = None,
    timeout: float = 30,
) -> RunningTarget:
    """Spawn ``python -m eyechart serve --host 127.0.0.1 ...`` and return once /health answers 200."""
    workdir = Path(tempfile.mkdtemp(prefix="eyechart-target-"))
    port_file = workdir / "port"
    log_path = workdir / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "eyechart",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--port-file",
        str(port_file),
    ]
    if trace is not None:
        cmd += ["--trace", str(trace)]
    cmd += list(args)
    env = {**os.environ, "EYECHART_API_KEY": api_key, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    target: RunningTarget | None = None
    deadline = time.monotonic() + timeout
    try:
        bound: int | None = None
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise TargetStartError(
                        f"the target exited with code {proc.returncode} before it was ready:\n"
                        + _tail(log_path)
                    )
                if bound is None and port_file.exists():
                    bound = int(port_file.read_text(encoding="utf-8"))
                if bound is not None:
                    root = f"http://127.0.0.1:{bound}"
                    with contextlib.suppress(httpx.HTTPError):
                        resp = client.get(f"{root}/health")
                        if resp.status_code == 200:
                            target = RunningTarget(
                                base_url=f"{root}/v1/openai",
                                root_url=root,
                                api_key=api_key,
                                model=str(resp.json()["model"]),
                                pid=proc.pid,
                                trace_path=trace,
                                log_path=log_path,
                                process=proc,
                            )
                            _RUNNING.add(target)
                            return target
                time.sleep(0.05)
        raise TargetStartError(f"the target was not ready within {timeout:g} s:\n" + _tail(log_path))
    finally:
        if target is None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@atexit.register
def _stop_leftovers() -> None:
    """A target outlives nobody: stop every target this process started and did not stop."""
    for target in list(_RUNNING):
        target.stop(grace=2.0)
