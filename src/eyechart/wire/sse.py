"""The strict event-stream reader: every legal framing accepted, every violation named.

Ours on purpose: lenient SSE libraries (and the official OpenAI client) silently accept a stream that
closes without ``data: [DONE]``, skip undecodable lines and drop half-received events, which hides exactly
what a conformance run must report. Feed raw bytes as they arrive, with the monotonic time of the read::

    reader = SSEReader(include_usage=True)
    for chunk in response.iter_raw():
        reader.feed(chunk, time.monotonic_ns())   # returns the events this read completed
    analysis = reader.close(time.monotonic_ns())
    analysis.violations   # [Finding(code="done_missing", ...)] for a stream without [DONE]
    analysis.content[0], analysis.finish_reasons[0], analysis.usage, analysis.t_first_content

Framing follows WHATWG: CRLF, LF or CR line ends (a CR that ends one read and an LF that starts the next
are one line end), one optional space after ``data:``, ``:`` comments, several ``data:`` lines joined with
``\\n``, a blank line ends an event, ``event:``/``id:``/``retry:`` fields, a BOM at the start. Unusual but
legal framing becomes an INFO finding; violations are MUST findings with a stable ``code``:

framing   ``done_missing``, ``data_after_done``, ``invalid_json``, ``incomplete_event``, ``not_utf8``,
          ``data_after_error``
chunks    ``no_chunks``, ``id_changed``, ``model_changed``, ``first_delta_no_role``, ``role_empty``,
          ``finish_reason_missing``, ``finish_reason_repeated``
usage     ``usage_chunk_missing``, ``usage_chunk_repeated``, ``usage_chunk_not_last``,
          ``usage_outside_usage_chunk`` (with include_usage), ``usage_unrequested`` (without)

An ``error`` event (``data: {"error": {...}}``) ends a stream legally: no ``done_missing`` after it, but
anything other than ``[DONE]`` after it is ``data_after_error``. The raw bytes are kept up to
``max_raw_bytes`` (the rest only counted), so an endless stream cannot exhaust memory; time limits are the
caller's (``eyechart.wire.exchange.send_stream``).

The chunk and usage codes come from ``CHUNK_RULES``, one small function per code over a ``ChunkSeq``;
``eyechart.invariants`` runs the same functions. ``read_plain`` reads a complete body in the plainest
framing without the per-byte work (for samples judged under load) and answers None for anything else,
which then goes through ``SSEReader``: nothing lenient decides a verdict.
"""

from __future__ import annotations

import json
import json.scanner
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from eyechart.severity import Severity

DONE = "[DONE]"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Finding:
    """One violation (MUST/SHOULD) or unusual-but-legal observation (INFO), with where it first happened."""

    code: str
    severity: Severity
    message: str
    event: int | None = None  # index in StreamAnalysis.events of the first occurrence
    offset: int | None = None  # byte offset in the stream of the first occurrence
    count: int = 1  # how many times it happened

    def __str__(self) -> str:
        where = f" (event {self.event})" if self.event is not None else ""
        times = f" ×{self.count}" if self.count > 1 else ""
        return f"{self.severity} {self.code}{where}{times}: {self.message}"


@dataclass
class Event:
    """One dispatched event. ``raw`` has line ends normalised to ``\\n``; ``json`` is the parsed data."""

    index: int
    offset: int  # byte offset of the event's first line
    t_ns: int  # monotonic ns of the read that completed it (its arrival)
    raw: str
    data: str
    event: str | None = None
    id: str | None = None
    json: Any = None  # parsed data; None for [DONE] and for data that is not JSON
    done: bool = False  # data: [DONE]
    complete: bool = True  # False: the body ended before the blank line that ends it

    @property
    def is_error(self) -> bool:
        return isinstance(self.json, dict) and "error" in self.json

    @property
    def is_chunk(self) -> bool:
        return isinstance(self.json, dict) and not self.is_error


class _Findings:
    """Findings keyed by code: the first occurrence is kept, later ones counted."""

    def __init__(self) -> None:
        self._by_code: dict[str, Finding] = {}

    def add(
        self, code: str, severity: Severity, message: str, event: int | None = None, offset: int | None = None
    ) -> None:
        old = self._by_code.get(code)
        if old is None:
            self._by_code[code] = Finding(code, severity, message, event, offset)
        else:
            self._by_code[code] = Finding(
                old.code, old.severity, old.message, old.event, old.offset, old.count + 1
            )

    def extend(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self._by_code.setdefault(f.code, f)

    def all(self) -> list[Finding]:
        order = {"MUST": 0, "SHOULD": 1, "INFO": 2}
        return sorted(self._by_code.values(), key=lambda f: (order[f.severity], f.offset or 0))


@dataclass
class StreamAnalysis:
    """Everything one stream showed: events, findings, joined content, timing."""

    events: list[Event]
    findings: list[Finding]
    raw: bytes  # the first max_raw_bytes of the body
    total_bytes: int
    done: bool  # a [DONE] event arrived
    include_usage: bool | None
    t_start_ns: int | None  # start of the exchange (or the first read)
    t_end_ns: int | None  # close
    content: dict[int, str] = field(default_factory=dict)  # choice index -> joined delta content
    finish_reasons: dict[int, list[str]] = field(default_factory=dict)  # choice index -> non-null values
    usage_chunk: dict[str, Any] | None = None  # the chunk with "choices": [] and usage
    error: dict[str, Any] | None = None  # the body of an error event, if one came
    t_first_content: int | None = None  # arrival of the first event with non-empty content
    t_last_content: int | None = None
    content_events: int = 0  # events that carried non-empty content
    content_reads: int = 0  # distinct reads that delivered content (1 means it came all at once)

    @property
    def raw_truncated(self) -> bool:
        return self.total_bytes > len(self.raw)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        """The parsed chunks (events whose data is a JSON object other than an error)."""
        return [e.json for e in self.events if e.is_chunk]

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity != "INFO"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "INFO"]

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def text(self) -> str:
        """The content of choice 0."""
        return self.content.get(0, "")

    @property
    def finish_reason(self) -> str | None:
        """The finish_reason of choice 0 when exactly one came, else None."""
        reasons = self.finish_reasons.get(0, [])
        return reasons[0] if len(reasons) == 1 else None

    @property
    def usage(self) -> dict[str, Any] | None:
        """Usage from the usage chunk, else the last non-null usage any chunk carried."""
        chunks = [self.usage_chunk] if self.usage_chunk is not None else reversed(self.chunks)
        for chunk in chunks:
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                return usage
        return None

    @property
    def ttft_ns(self) -> int | None:
        if self.t_first_content is None or self.t_start_ns is None:
            return None
        return self.t_first_content - self.t_start_ns

    @property
    def delivery_spread(self) -> float | None:
        """(last content arrival − first content arrival) / (end − start): near 0 when a proxy buffered
        the whole answer and released it at once; near 1 for token-by-token delivery."""
        if self.t_first_content is None or self.t_last_content is None:
            return None
        if self.t_start_ns is None or self.t_end_ns is None or self.t_end_ns <= self.t_start_ns:
            return None
        return (self.t_last_content - self.t_first_content) / (self.t_end_ns - self.t_start_ns)


class SSEReader:
    """Incremental strict reader: ``feed(bytes, t_ns)`` as reads complete, then ``close(t_ns)``."""

    def __init__(
        self,
        *,
        include_usage: bool | None = None,
        max_raw_bytes: int = 8 << 20,
        max_line_bytes: int = 8 << 20,
        t_start_ns: int | None = None,
    ) -> None:
        self.include_usage = include_usage
        self.max_raw_bytes = max_raw_bytes
        self.max_line_bytes = max_line_bytes
        self.t_start_ns = t_start_ns
        self.events: list[Event] = []
        self._findings = _Findings()
        self._raw = bytearray()
        self._total = 0
        self._buf = bytearray()  # the partial line not yet ended
        self._line_start = 0  # offset of the partial line
        self._line_dropped = 0  # bytes dropped from an over-long partial line
        self._skip_lf = False  # the previous read ended in CR: an LF starting the next one belongs to it
        self._first_line = True
        self._line_ends = {"lf": 0, "crlf": 0, "cr": 0}
        # the event being assembled
        self._ev_start: int | None = None
        self._ev_lines: list[str] = []
        self._ev_raw_len = 0
        self._data: list[str] = []
        self._ev_type: str | None = None
        self._ev_id: str | None = None
        self._done = False
        self._error_seen = False
        self._closed: StreamAnalysis | None = None

    # --- bytes to lines ----------------------------------------------------------------------------

    def feed(self, data: bytes, t_ns: int | None = None) -> list[Event]:
        """Consume one read; return the events it completed (their t_ns is this read's)."""
        if self._closed is not None:
            raise RuntimeError("feed() after close()")
        if t_ns is None:
            t_ns = time.monotonic_ns()
        if self.t_start_ns is None:
            self.t_start_ns = t_ns
        n = len(data)
        if not n:
            return []
        base = self._total
        room = self.max_raw_bytes - len(self._raw)
        if room > 0:
            self._raw += data[:room]
        self._total += n
        before = len(self.events)
        pos = 0
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                self._line_ends["cr"] -= 1
                self._line_ends["crlf"] += 1
                pos = 1
        next_lf = data.find(b"\n", pos)
        next_cr = data.find(b"\r", pos)
        while pos < n:
            if 0 <= next_lf < pos:
                next_lf = data.find(b"\n", pos)
            if 0 <= next_cr < pos:
                next_cr = data.find(b"\r", pos)
            if next_lf < 0 and next_cr < 0:
                self._extend_partial(data, pos, n, base)
                break
            if next_cr < 0 or (0 <= next_lf < next_cr):
                end, step, kind = next_lf, 1, "lf"
            elif next_cr + 1 < n:
                end = next_cr
                step, kind = (2, "crlf") if data[next_cr + 1] == 0x0A else (1, "cr")
            else:  # CR is the last byte of this read
                end, step, kind = next_cr, 1, "cr"
                self._skip_lf = True
            self._line_ends[kind] += 1
            if self._buf or self._line_dropped:
                self._extend_partial(data, pos, end, base)
                line = bytes(self._buf)
                start = self._line_start
                self._buf.clear()
            else:
                line = data[pos:end]
                start = base + pos
            dropped, self._line_dropped = self._line_dropped, 0
            self._line(line, start, t_ns, dropped)
            pos = end + step
        return self.events[before:]

    def _extend_partial(self, data: bytes, start: int, end: int, base: int) -> None:
        if not self._buf and not self._line_dropped:
            self._line_start = base + start
        room = self.max_line_bytes - len(self._buf)
        take = min(room, end - start)
        if take > 0:
            self._buf += data[start : start + take]
        self._line_dropped += (end - start) - max(take, 0)

    # --- lines to events ---------------------------------------------------------------------------

    def _line(self, raw: bytes, offset: int, t_ns: int, dropped: int = 0) -> None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(_BOM):
                raw = raw[3:]
                self._findings.add(
                    "bom", "INFO", "the stream starts with a byte-order mark (legal, stripped)"
                )
        if dropped:
            self._findings.add(
                "line_too_long",
                "SHOULD",
                f"a line longer than {self.max_line_bytes} bytes; {dropped} bytes were not kept",
                len(self.events),
                offset,
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._findings.add(
                "not_utf8", "MUST", f"a line is not valid UTF-8 ({exc.reason})", len(self.events), offset
            )
            line = raw.decode("utf-8", "replace")
        if not line:
            self._dispatch(t_ns, complete=True)
            return
        if self._ev_start is None:
            self._ev_start = offset
        if self._ev_raw_len < self.max_line_bytes:  # endless comment lines must not grow memory
            self._ev_lines.append(line)
            self._ev_raw_len += len(line) + 1
        if line[0] == ":":
            if self._done:
                self._findings.add("bytes_after_done", "INFO", "a comment line after [DONE]", None, offset)
            else:
                self._findings.add("comment_lines", "INFO", "comment lines (keep-alives)", None, offset)
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._ev_type = value
        elif name == "id":
            if "\0" not in value:
                self._ev_id = value
            self._findings.add("id_field", "INFO", "events carry an id: field", None, offset)
        elif name == "retry":
            self._findings.add("retry_field", "INFO", f"a retry: field ({value!r})", None, offset)
        else:
            self._findings.add("unknown_field", "INFO", f"an unknown field {name!r} (ignored)", None, offset)

    def _dispatch(self, t_ns: int, *, complete: bool) -> None:
        if not self._data:
            if self._ev_type is not None:
                self._findings.add(
                    "event_without_data", "INFO", f"event: {self._ev_type!r} with no data: line (ignored)"
                )
            self._reset_event()
            return
        index = len(self.events)
        offset = self._ev_start if self._ev_start is not None else self._total
        data = "\n".join(self._data)
        event = Event(
            index=index,
            offset=offset,
            t_ns=t_ns,
            raw="\n".join(self._ev_lines),
            data=data,
            event=self._ev_type,
            id=self._ev_id,
            complete=complete,
        )
        if len(self._data) > 1:
            self._findings.add("multiline_data", "INFO", "an event with several data: lines", index, offset)
        if self._ev_type is not None and self._ev_type != "message":
            self._findings.add("event_field", "INFO", f"event: {self._ev_type!r} field", index, offset)
        if not complete:
            self._findings.add(
                "incomplete_event",
                "MUST",
                "the body ended in the middle of an event (no blank line after it): "
                "a WHATWG client discards it",
                index,
                offset,
            )
        if self._done:
            self._findings.add("data_after_done", "MUST", "an event after data: [DONE]", index, offset)
        elif self._error_seen and data.strip() != DONE:
            self._findings.add("data_after_error", "MUST", "an event after the error event", index, offset)
        if data.strip() == DONE:
            event.done = True
            if data != DONE:
                self._findings.add(
                    "done_whitespace", "INFO", f"[DONE] with whitespace: {data!r}", index, offset
                )
            self._done = True
        else:
            try:
                event.json = json.loads(data)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
                self._findings.add(
                    "invalid_json", "MUST", f"data is not JSON ({exc}): {data[:120]!r}", index, offset
                )
            else:
                if not isinstance(event.json, dict):
                    self._findings.add(
                        "invalid_json",
                        "MUST",
                        f"data is JSON but not an object: {data[:120]!r}",
                        index,
                        offset,
                    )
                elif event.is_error:
                    self._error_seen = True
        self.events.append(event)
        self._reset_event()

    def _reset_event(self) -> None:
        self._ev_start = None
        self._ev_lines = []
        self._ev_raw_len = 0
        self._data = []
        self._ev_type = None
        # per WHATWG the last event id persists across events; we keep it per event for evidence
        self._ev_id = None

    # --- the end -----------------------------------------------------------------------------------

    def close(self, t_ns: int | None = None) -> StreamAnalysis:
        """The body ended (cleanly or not): flush, judge, and return the analysis (idempotent)."""
        if self._closed is not None:
            return self._closed
        if t_ns is None:
            t_ns = time.monotonic_ns()
        if self._buf or self._line_dropped:
            line, start, dropped = bytes(self._buf), self._line_start, self._line_dropped
            self._buf.clear()
            self._line_dropped = 0
            self._line(line, start, t_ns, dropped)
        if self._data:
            self._dispatch(t_ns, complete=False)
        self._reset_event()
        ends = {k: v for k, v in self._line_ends.items() if v}
        if "cr" in ends or "crlf" in ends:
            self._findings.add("line_ends", "INFO", f"line ends used: {ends}")
        last_data = next((e for e in reversed(self.events) if not e.done), None)
        if not self._done:
            if last_data is not None and last_data.is_error:
                self._findings.add("ended_after_error", "INFO", "the stream ended after an error event")
            else:
                self._findings.add(
                    "done_missing",
                    "MUST",
                    "the stream closed without data: [DONE] (the official client would accept this silently)",
                    None,
                    self._total,
                )
        analysis = StreamAnalysis(
            events=self.events,
            findings=[],
            raw=bytes(self._raw),
            total_bytes=self._total,
            done=self._done,
            include_usage=self.include_usage,
            t_start_ns=self.t_start_ns if self.t_start_ns is not None else t_ns,
            t_end_ns=t_ns,
        )
        _fill(analysis)
        self._findings.extend(chunk_findings(self.events, self.include_usage))
        analysis.findings = self._findings.all()
        self._closed = analysis
        return analysis


def _fill(analysis: StreamAnalysis) -> None:
    reads: set[int] = set()
    for event in analysis.events:
        body = event.json
        if event.is_error and analysis.error is None:
            analysis.error = body
        if not event.is_chunk:
            continue
        choices = body.get("choices")
        if choices == [] and isinstance(body.get("usage"), dict):
            analysis.usage_chunk = body
        has_content = False
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
                continue
            idx = choice["index"]
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str):
                analysis.content[idx] = analysis.content.get(idx, "") + text
                has_content = has_content or bool(text)
            else:
                analysis.content.setdefault(idx, "")
            reasons = analysis.finish_reasons.setdefault(idx, [])
            if choice.get("finish_reason") is not None:
                reasons.append(choice["finish_reason"])
        if has_content:
            analysis.content_events += 1
            reads.add(event.t_ns)
            if analysis.t_first_content is None:
                analysis.t_first_content = event.t_ns
            analysis.t_last_content = event.t_ns
    analysis.content_reads = len(reads)


Chunk = tuple[int, dict[str, Any]]  # (index of its event in the stream, the parsed chunk)


@dataclass(frozen=True)
class ChunkSeq:
    """The chunks of one stream in order, and whether an error event came: what the chunk rules judge."""

    chunks: list[Chunk]
    error: bool = False
    texts: list[str] | None = None  # each chunk's JSON text, when read by read_plain

    @classmethod
    def of(cls, events: list[Event]) -> ChunkSeq:
        return cls([(e.index, e.json) for e in events if e.is_chunk], any(e.is_error for e in events))

    @cached_property
    def choices(self) -> list[tuple[int, list[Choice]]]:
        """(event, its well-formed choices) per chunk, computed once for all the rules that walk them."""
        return [(i, _choices(c)) for i, c in self.chunks]

    @cached_property
    def usage_events(self) -> list[int]:
        """The events of the usage-only chunks (``"choices": []`` and a usage object)."""
        return [i for i, c in self.chunks if _is_usage_chunk(c)]


ChunkRule = Callable[[ChunkSeq, "bool | None"], "Finding | None"]


def _first(code: str, severity: Severity, hits: Sequence[tuple[int | None, str]]) -> Finding | None:
    """One finding for ``hits`` (event, message): the first one's place and message, all of them counted."""
    if not hits:
        return None
    event, message = hits[0]
    return Finding(code, severity, message, event, None, len(hits))


Choice = tuple[int, dict[str, Any], dict[str, Any]]  # (index, the choice, its delta or {})


def _choices(chunk: dict[str, Any]) -> list[Choice]:
    """(index, choice, delta) for every well-formed choice (the schema judges the others)."""
    choices = chunk.get("choices")
    out = []
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and isinstance(choice.get("index"), int):
            delta = choice.get("delta")
            out.append((choice["index"], choice, delta if isinstance(delta, dict) else {}))
    return out


def _is_usage_chunk(chunk: dict[str, Any]) -> bool:
    return chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def no_chunks(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    if seq.chunks or seq.error:
        return None
    return Finding("no_chunks", "MUST", "the stream carried no chat.completion.chunk")


def _changed(seq: ChunkSeq, name: str) -> list[tuple[int, str]]:
    """The chunks whose ``name`` differs from the first chunk's: one stream has one id and one model."""
    first = seq.chunks[0][1].get(name) if seq.chunks else None
    return [
        (i, f"chunk {name} {c.get(name)!r} differs from the first {first!r}")
        for i, c in seq.chunks
        if c.get(name) != first
    ]


def id_changed(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    return _first("id_changed", "MUST", _changed(seq, "id"))


def model_changed(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    return _first("model_changed", "MUST", _changed(seq, "model"))


def _stray_usage(seq: ChunkSeq, message: str) -> list[tuple[int, str]]:
    """The chunks other than the usage-only chunk that carry a usage object."""
    return [(i, message) for i, c in seq.chunks if c.get("usage") is not None and not _is_usage_chunk(c)]


def usage_outside_usage_chunk(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    if not include_usage:
        return None
    message = "usage is set in a chunk other than the final usage chunk (it must be absent or null)"
    return _first("usage_outside_usage_chunk", "MUST", _stray_usage(seq, message))


def usage_in_content_chunk(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    if include_usage is not False:
        return None
    message = "usage in a content chunk without include_usage"
    return _first("usage_in_content_chunk", "INFO", _stray_usage(seq, message))


def first_delta_no_role(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    seen: set[int] = set()
    hits = []
    for i, choices in seq.choices:
        for idx, _, delta in choices:
            if idx in seen:
                continue
            seen.add(idx)
            if delta.get("role") != "assistant":
                what = repr(delta["role"]) if "role" in delta else "no role"
                hits.append((i, f"the first delta of choice {idx} has {what}, not role 'assistant'"))
    return _first("first_delta_no_role", "MUST", hits)


def role_empty(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    seen: set[int] = set()
    hits = []
    for i, choices in seq.choices:
        for idx, _, delta in choices:
            if idx not in seen:
                seen.add(idx)
            elif "role" in delta and not delta["role"]:
                hits.append((i, f"a later delta of choice {idx} has role {delta['role']!r}"))
    return _first("role_empty", "MUST", hits)


def finish_reason_repeated(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    reasons: dict[int, int] = {}
    hits = []
    for i, choices in seq.choices:
        for idx, choice, _ in choices:
            if choice.get("finish_reason") is not None:
                reasons[idx] = reasons.get(idx, 0) + 1
                if reasons[idx] == 2:
                    hits.append((i, f"choice {idx} has more than one non-null finish_reason"))
    return _first("finish_reason_repeated", "MUST", hits)


def finish_reason_missing(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    seen: set[int] = set()
    finished: set[int] = set()
    for _, choices in seq.choices:
        for idx, choice, _ in choices:
            seen.add(idx)
            if choice.get("finish_reason") is not None:
                finished.add(idx)
    hits = [(None, f"choice {idx} never got a non-null finish_reason") for idx in sorted(seen - finished)]
    return _first("finish_reason_missing", "MUST", hits)


def usage_chunk_missing(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    if not include_usage or not seq.chunks or seq.usage_events:
        return None
    message = 'include_usage was asked, but no chunk with "choices": [] and usage came'
    return Finding("usage_chunk_missing", "MUST", message)


def usage_chunk_repeated(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    found = seq.usage_events if include_usage else []
    if len(found) < 2:
        return None
    return Finding("usage_chunk_repeated", "MUST", f"{len(found)} usage chunks instead of one", found[1])


def usage_chunk_not_last(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    found = seq.usage_events if include_usage else []
    if not found or found[-1] == seq.chunks[-1][0]:
        return None
    message = "the usage chunk is not the last chunk before [DONE]"
    return Finding("usage_chunk_not_last", "MUST", message, found[-1])


def usage_unrequested(seq: ChunkSeq, include_usage: bool | None) -> Finding | None:
    found = seq.usage_events if include_usage is False else []
    if not found:
        return None
    message = "a usage-only chunk came although include_usage was not asked"
    return Finding("usage_unrequested", "MUST", message, found[0])


CHUNK_RULES: dict[str, ChunkRule] = {
    rule.__name__: rule
    for rule in (
        no_chunks,
        id_changed,
        model_changed,
        usage_outside_usage_chunk,
        usage_in_content_chunk,
        first_delta_no_role,
        role_empty,
        finish_reason_repeated,
        finish_reason_missing,
        usage_chunk_missing,
        usage_chunk_repeated,
        usage_chunk_not_last,
        usage_unrequested,
    )
}
"""The rules across chunks (CONTRACT.md section 4), one per finding code: ``rule(seq, include_usage)``
returns that code's finding (the first occurrence, the others counted) or None. ``include_usage=None``
(unknown whether it was asked) skips the usage rules."""


def chunk_findings(events: list[Event], include_usage: bool | None) -> list[Finding]:
    """Every chunk rule on one stream's events, each finding placed at its event's byte offset."""
    seq = ChunkSeq.of(events)
    offsets = {e.index: e.offset for e in events}
    found = []
    for rule in CHUNK_RULES.values():
        f = rule(seq, include_usage)
        if f is not None:
            offset = offsets.get(f.event) if f.event is not None else None
            found.append(Finding(f.code, f.severity, f.message, f.event, offset, f.count))
    order = {"MUST": 0, "SHOULD": 1, "INFO": 2}
    return sorted(found, key=lambda f: (order[f.severity], f.offset or 0))


def read_events(
    chunks: Iterable[bytes], *, include_usage: bool | None = None, max_raw_bytes: int = 8 << 20
) -> StreamAnalysis:
    """Read a whole stream given as byte chunks (each chunk timed when it is consumed)."""
    reader = SSEReader(include_usage=include_usage, max_raw_bytes=max_raw_bytes)
    for chunk in chunks:
        reader.feed(chunk, time.monotonic_ns())
    return reader.close(time.monotonic_ns())


_DONE_EVENT = "data: [DONE]\n\n"
# json.loads without its per-call wrapper (typeshed types the scanner's context argument oddly)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def read_plain(body: bytes) -> ChunkSeq | None:
    """The chunks of a complete stream in the plainest framing, or None when only SSEReader may judge it.

    Plainest: UTF-8 without BOM or CR, every event one ``data: {json object}`` line and a blank line, the
    last one ``data: [DONE]``, no comments, fields or error events. Such a body has no framing finding,
    so the chunk rules alone judge it; anything else (None) goes through the strict reader. It skips the
    per-byte work and the per-event objects, for judging samples of live traffic under load. Each object
    is read by json's own scanner in place and must end right before the blank line, with no line end
    inside it (JSON would allow one between tokens; SSE would cut the event there).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith(_DONE_EVENT) or "\r" in text or text.startswith("\ufeff"):
        return None
    end_of_chunks = len(text) - len(_DONE_EVENT)
    chunks: list[Chunk] = []
    texts: list[str] = []
    pos = 0
    while pos < end_of_chunks:
        if not text.startswith("data: {", pos):
            return None
        try:
            obj, end = _scan(text, pos + 6)
        except (StopIteration, ValueError, RecursionError):
            return None
        if not text.startswith("\n\n", end) or text.find("\n", pos, end) >= 0:
            return None
        if type(obj) is not dict or "error" in obj:
            return None
        chunks.append((len(chunks), obj))
        texts.append(text[pos + 6 : end])
        pos = end + 2
    return ChunkSeq(chunks, texts=texts) if pos == end_of_chunks else None


def event_offset(body: bytes, index: int) -> int | None:
    """Byte offset of event ``index`` in a body read by :func:`read_plain` (events end in a blank line)."""
    pos = 0
    for _ in range(index):
        pos = body.find(b"\n\n", pos)
        if pos < 0:
            return None
        pos += 2
    return pos if pos < len(body) else None
