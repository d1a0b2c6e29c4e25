"""The load generator's stream reader: SSE chat chunks in, content-chunk times and usage out.

It runs once per socket read on the hot path (~150k chunks/s), so events are split with bytes operations
and an event is JSON-parsed only when the fast path cannot decide. The fast path looks at the bytes
after ``"content":`` — ``""`` or ``null`` means empty, anything else non-empty (a role-only first chunk
is not the first token) — and checks the event is a ``{...}`` object. Tradeoff: a chunk whose JSON is
broken *inside* (not at its ends) and that carries content is counted as content, not as
``malformed``; ``eyechart conform`` parses every chunk strictly and catches that. Events without ``"content"``
(role-only without content, finish, usage, error) and events with a ``"usage": {...}`` are parsed in
full. No Locust import here: importing Locust monkey-patches the process.
"""

from __future__ import annotations

import json

from eyechart.load.records import ErrorClass

_CONTENT = b'"content"'
_USAGE = b'"usage"'
_DONE = b"[DONE]"


class StreamReader:
    """Incremental SSE reader for chat completion chunks; ``feed(data, t_ns)`` per socket read."""

    __slots__ = (
        "_buf",
        "after_done",
        "chunk_times",
        "completion_tokens",
        "done",
        "error",
        "error_class",
        "finish",
        "prompt_tokens",
    )

    def __init__(self, chunk_times: list[int] | None = None) -> None:
        self._buf = b""
        self.chunk_times: list[int] = [] if chunk_times is None else chunk_times
        self.done = False
        self.after_done = False
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.error: str | None = None
        self.error_class: ErrorClass | None = None
        self.finish: str | None = None

    def feed(self, data: bytes, t_ns: int) -> None:
        if b"\r" in data or self._buf.endswith(b"\r"):
            buf = self._buf + data
            held = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:  # a CR at the end may be the first half of a CRLF: decide on the next read
                buf = buf[:-1] + b"\r"
            events = buf.split(b"\n\n")
        else:
            events = (self._buf + data).split(b"\n\n") if self._buf else data.split(b"\n\n")
        self._buf = events.pop()
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:
                self._event(event[6:], t_ns)
                continue
            payload = self._general(event)
            if payload is not None:
                self._event(payload, t_ns)

    @staticmethod
    def _general(event: bytes) -> bytes | None:
        """WHATWG framing: comments, ``data:`` with an optional space, several data lines joined."""
        lines = []
        for line in event.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                lines.append(value[1:] if value.startswith(b" ") else value)
        return b"\n".join(lines) if lines else None

    def _event(self, payload: bytes, t_ns: int) -> None:
        if self.done:
            self.after_done = True
            return
        if payload == _DONE:
            self.done = True
            return
        counted = False
        i = payload.find(_CONTENT)
        if i >= 0 and payload[:1] == b"{" and payload[-1:] == b"}":
            j = i + 9
            n = len(payload)
            while j < n and payload[j] in b" :\t":
                j += 1
            c = payload[j : j + 2]
            if c != b'""' and c[:1] != b"n":
                self.chunk_times.append(t_ns)
                counted = True
            k = payload.find(_USAGE)
            if k < 0:
                return
            k += 7
            while k < n and payload[k] in b" :\t":
                k += 1
            if payload[k : k + 1] != b"{":
                return  # "usage": null on a content chunk
        self._parse(payload, t_ns, counted)

    def _parse(self, payload: bytes, t_ns: int, counted: bool = False) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            self._protocol(f"bad JSON in event: {payload[:80]!r}")
            return
        if not isinstance(obj, dict):
            self._protocol(f"event is not a JSON object: {payload[:80]!r}")
            return
        if "error" in obj and not obj.get("choices"):
            err = obj.get("error")
            msg = err.get("message") if isinstance(err, dict) else err
            self._protocol(f"error event mid-stream: {str(msg)[:200]}")
            return
        usage = obj.get("usage")
        if isinstance(usage, dict):
            ct, pt = usage.get("completion_tokens"), usage.get("prompt_tokens")
            if isinstance(ct, int):
                self.completion_tokens = ct
            if isinstance(pt, int):
                self.prompt_tokens = pt
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
            delta = choice.get("delta")
            # content the fast path did not count (spaced keys, whitespace around the JSON, ...)
            if isinstance(delta, dict) and delta.get("content") and not counted:
                self.chunk_times.append(t_ns)

    def _protocol(self, why: str, error_class: ErrorClass = "malformed") -> None:
        if self.error_class is None:
            self.error_class = error_class
            self.error = why

    def close(self, complete: bool = True) -> None:
        """The body ended (``complete``: the HTTP message ended properly, else the connection closed
        early: ``disconnect``); anything pending is ``malformed``, a missing ``[DONE]`` ``no_done``."""
        if not complete and not self.done:
            self._protocol("connection closed before the end of the body", "disconnect")
        if self._buf.strip():
            rest = self._general(self._buf.replace(b"\r", b"\n"))
            self._buf = b""
            if rest is not None:
                self._event(rest, 0)
        if self.after_done:
            self._protocol("data after [DONE]")
        elif not self.done:
            self._protocol("stream ended without [DONE]", "no_done")


def classify_status(status: int) -> ErrorClass | None:
    if status < 400:
        return None
    if status == 429:
        return "429"
    return "4xx" if status < 500 else "5xx"


def classify_exception(exc: BaseException, *, reading: bool = False) -> ErrorClass:
    """``reading``: the response had started (a reset then is a ``disconnect``, not ``connect``)."""
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    if "timeout" in name or "timed out" in text:
        return "timeout"
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError) or "refused" in text:
        return "connect"
    if "parse" in name or "protocol" in name:
        return "malformed"
    if isinstance(exc, OSError):
        return "disconnect" if reading else "connect"
    return "disconnect" if reading else "malformed"
