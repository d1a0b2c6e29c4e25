"""``--trace FILE``: the server's ground truth per request, for measuring the harness's own accuracy.

JSON Lines. The first line describes the clock::

    {"type": "header", "clock": "CLOCK_MONOTONIC", "monotonic_ns": ..., "wall_time_ns": ..., "pid": ...,
     "model": ...}

then one line per finished request (in the order they finish)::

    {"type": "request", "request_id": "...", "model": "...", "stream": true, "status": 200,
     "received_ns": ..., "admitted_ns": ..., "first_token_ns": ..., "token_ns": [...], "end_ns": ...,
     "prompt_tokens": ..., "image_tokens": ..., "completion_tokens": ..., "finish_reason": "stop",
     "error": null}

Every ``*_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the clock every process on the machine
shares), so it compares directly with a client's own readings. ``received_ns`` is when the request's
handler starts (headers and body read); ``token_ns[i]`` is when token i was handed to the socket
(streamed) or produced by the simulated engine (whole answers, sent together at ``end_ns``);
``end_ns`` is when the last byte was handed to the socket. ``request_id`` is the client's
``X-Request-Id`` header when it sent one. Fields unknown for a request (a 401 has no admission) are null.

Lines are buffered; the file is flushed at most every ``flush_interval`` seconds (by the request that
finishes after the interval, or by the app's periodic flusher when traffic stops) and on shutdown, so
tracing costs no syscall per request under load and a reader waits at most ~``flush_interval``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any


class TraceWriter:
    def __init__(self, path: Path, *, model: str, flush_interval: float = 0.2) -> None:
        self.path = path
        self.flush_interval = flush_interval
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=1 << 16)
        self._last_flush = time.monotonic()
        self.dirty = False
        self._write(
            {
                "type": "header",
                "clock": "CLOCK_MONOTONIC",
                "monotonic_ns": time.monotonic_ns(),
                "wall_time_ns": time.time_ns(),
                "pid": os.getpid(),
                "model": model,
            }
        )
        self.flush()

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def record(self, record: dict[str, Any]) -> None:
        """Add one finished request; flush when the last flush is older than the interval."""
        record = {"type": "request", **record}
        self._write(record)
        self.dirty = True
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._last_flush = time.monotonic()
            self.dirty = False

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The request lines of a trace file (the header skipped)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if rec.get("type") == "request":
                    out.append(rec)
    return out
