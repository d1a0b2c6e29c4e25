"""Load across hosts: each worker's request records reach the master over Locust's own connection.

A worker may run on another machine (``eyechart load --worker --master-host H``, plain ``locust
--worker``, a Kubernetes pod), so it cannot write into the master's run folder. It writes its records
to a folder of its own and, once stopped, sends the file to the master in chunks, before its final
stats report (messages on one connection arrive in order, and the master waits for the final reports
before it merges). The master writes each worker's chunks to ``requests-part<i>.jsonl.gz`` in the run
folder, where the single-machine path joins them. One path for every worker, local or remote.

Latencies never mix clocks: every duration is taken on the worker that sent the request.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDS_MESSAGE = "eyechart_records"
CHUNK_BYTES = 256 * 1024  # one message each: small enough for the master's loop, few enough to be fast

log = logging.getLogger("eyechart.load")


def worker_dir() -> Path:
    """A folder of this worker's own for its record file (the master's run folder may be elsewhere)."""
    return Path(tempfile.mkdtemp(prefix="eyechart-worker-"))


def ship_records(runner: Any, path: Path, index: int) -> None:
    """Send ``path`` (the worker's closed record file) to the master, then remove the worker's copy."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("eyechart: cannot read this worker's records: %s", exc)
        data = b""
    parts = max(1, -(-len(data) // CHUNK_BYTES))
    for k in range(parts):
        chunk = data[k * CHUNK_BYTES : (k + 1) * CHUNK_BYTES]
        runner.send_message(RECORDS_MESSAGE, {"index": index, "part": k, "parts": parts, "data": chunk})
    shutil.rmtree(path.parent, ignore_errors=True)


def receiver(run_dir: Callable[[], Path | None]) -> Callable[..., None]:
    """The master's handler: append each chunk to that worker's part file in the run folder."""

    def on_records(msg: Any = None, **_kw: Any) -> None:
        folder = run_dir()
        data = msg.data
        if folder is None:
            log.error("eyechart: records from worker %s arrived before the run started", data.get("index"))
            return
        path = folder / f"requests-part{int(data['index'])}.jsonl.gz"
        with path.open("wb" if data["part"] == 0 else "ab") as f:
            f.write(data["data"])

    return on_records
