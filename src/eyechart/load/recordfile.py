"""Per-request records streamed to disk as gzip JSON Lines (``requests.jsonl.gz``).

Records are never held in memory beyond a small buffer: ``RecordWriter.write`` serialises one line into
a list and every ``buffer_records`` lines the batch goes through one ``gzip.write`` call (compressing
line by line would cost more than the request itself). ``close()`` is idempotent and is what a Ctrl-C
handler calls so a partial run still leaves a readable file.

Each line is ``RequestRecord.as_dict()``; all ``t_*`` fields are ``time.monotonic_ns()`` readings.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eyechart.load.records import RequestRecord

_FIELDS: tuple[str, ...] = RequestRecord.__slots__


class RecordWriter:
    """Appends records to a gzip JSONL file; cheap per call (one ``json.dumps``), batched compression."""

    def __init__(self, path: Path | str, *, buffer_records: int = 512, compresslevel: int = 1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: gzip.GzipFile | None = gzip.open(self.path, "wb", compresslevel=compresslevel)  # noqa: SIM115
        self._buffer: list[str] = []
        self._buffer_records = buffer_records
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        self.written = 0

    def write(self, rec: RequestRecord) -> None:
        if self._file is None:
            raise ValueError(f"record file {self.path} is closed")
        self._buffer.append(self._dumps({f: getattr(rec, f) for f in _FIELDS}))
        if len(self._buffer) >= self._buffer_records:
            self.flush()

    def flush(self) -> None:
        if self._buffer and self._file is not None:
            self._file.write(("\n".join(self._buffer) + "\n").encode("utf-8"))
            self.written += len(self._buffer)
            self._buffer.clear()

    def close(self) -> None:
        """Flush and close; safe to call twice (normal exit and a Ctrl-C handler)."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            f, self._file = self._file, None
            f.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield each record as a dict. A file cut short (killed run) yields its complete lines."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        try:
            for line in f:
                if line.endswith("\n"):
                    yield json.loads(line)
        except EOFError:
            return
