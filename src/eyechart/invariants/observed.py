"""One exchange as both jobs can record it cheaply, and the lazily parsed view the invariants read.

:class:`Observed` holds plain values only (no httpx or geventhttpclient objects), so the conformance
session builds it from an ``Exchange`` and the load generator from its own fast path. :class:`Judged` parses
each part at most once, when the first invariant asks for it: a body as JSON, a stream through
:func:`eyechart.wire.sse.read_plain` and, when its framing is anything but the plainest, the strict
:class:`~eyechart.wire.sse.SSEReader`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from eyechart.profiles import Profile
from eyechart.wire import sse

if TYPE_CHECKING:
    from eyechart.invariants.crossing import CrossState

Kind = Literal["response", "stream", "error"]
KINDS: tuple[Kind, ...] = ("response", "stream", "error")

# Options that shape the answer but not the prompt: requests that differ only in these count the same
# prompt tokens (and stream = non-stream, CONTRACT.md tokens clauses).
GENERATION_ONLY = frozenset(
    {"stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
     "stop", "n", "user", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Observed:
    """What one request/response showed: the request body sent, the status, the response headers and the
    raw body (the whole SSE text for a stream). ``received_at`` (unix seconds when the body ended) and
    ``elapsed_s`` let ``created`` be judged; ``request_id`` is shown in examples; ``request_key`` names
    requests that must count the same prompt tokens (the load job's template name; None: derived from
    the request). Treat it as immutable: nothing here mutates it."""

    request: Any  # the JSON body sent: an object, except for probes that send something else on purpose
    status: int
    headers: Mapping[str, str]
    body: bytes
    received_at: float | None = None
    elapsed_s: float = 0.0
    request_id: str | None = None
    request_key: str | None = None

    @property
    def options(self) -> Mapping[str, Any]:
        """The request as an object ({} when the body sent was not one)."""
        return self.request if isinstance(self.request, Mapping) else {}

    @property
    def kind(self) -> Kind | None:
        """error for 4xx/5xx, stream or response for 2xx by what was asked, None otherwise."""
        if self.status >= 400:
            return "error"
        if 200 <= self.status < 300:
            return "stream" if self.options.get("stream") is True else "response"
        return None


_NOT_JSON = object()


@dataclass
class StreamView:
    """One stream's chunks, the strict reader's framing findings (none for the plainest framing) and
    what the usage rules need."""

    seq: sse.ChunkSeq
    include_usage: bool
    framing: dict[str, sse.Finding]  # reader-level findings by code (chunk rules excluded)
    error: Any  # the body of the error event, if one came
    body: bytes
    offsets: dict[int, int] | None  # event index -> byte offset (None: computed on demand)

    def chunk_finding(self, code: str) -> sse.Finding | None:
        return sse.CHUNK_RULES[code](self.seq, self.include_usage)

    def offset(self, event: int | None) -> int | None:
        if event is None:
            return None
        if self.offsets is not None:
            return self.offsets.get(event)
        return sse.event_offset(self.body, event)

    @cached_property
    def _texts(self) -> list[list[str]]:
        """The string contents of each chunk's deltas."""
        return [
            [d["content"] for _, _, d in choices if isinstance(d.get("content"), str)]
            for _, choices in self.seq.choices
        ]

    @property
    def content_events(self) -> int:
        """Chunks that carried non-empty content (in any choice)."""
        return sum(1 for texts in self._texts if any(texts))

    @cached_property
    def usages(self) -> list[tuple[int, dict[str, Any]]]:
        """(event, usage) for every chunk with a usage object."""
        return [(i, c["usage"]) for i, c in self.seq.chunks if isinstance(c.get("usage"), dict)]

    @property
    def usage(self) -> tuple[int, dict[str, Any]] | None:
        """The usage chunk's usage, else the last usage any chunk carried."""
        for i, chunk in reversed(self.seq.chunks):
            if chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict):
                return i, chunk["usage"]
        return self.usages[-1] if self.usages else None

    @property
    def content(self) -> str:
        return "".join(t for texts in self._texts for t in texts)


def read_stream(body: bytes, include_usage: bool) -> StreamView:
    seq = sse.read_plain(body)
    if seq is not None:
        return StreamView(seq, include_usage, {}, None, body, None)
    reader = sse.SSEReader(include_usage=include_usage, max_raw_bytes=0)
    reader.feed(body, 0)
    analysis = reader.close(0)
    framing = {f.code: f for f in analysis.findings if f.code not in sse.CHUNK_RULES}
    offsets = {e.index: e.offset for e in analysis.events}
    return StreamView(sse.ChunkSeq.of(analysis.events), include_usage, framing, analysis.error, body, offsets)


class Judged:
    """The view of one observed exchange that invariants read; every part parsed once, on first use."""

    def __init__(self, observed: Observed, profile: Profile, state: CrossState | None = None) -> None:
        self.observed = observed
        self.profile = profile
        self.state = state
        self.kind = observed.kind

    @cached_property
    def media_type(self) -> str:
        for key, value in self.observed.headers.items():
            if key.lower() == "content-type":
                return value.split(";", 1)[0].strip().lower()
        return ""

    @cached_property
    def _parsed(self) -> tuple[Any, str | None]:
        try:
            return json.loads(self.observed.body), None
        except (ValueError, RecursionError) as exc:
            return _NOT_JSON, f"{type(exc).__name__}: {str(exc)[:120]}"

    @property
    def json(self) -> Any:
        """The body as JSON; raises nothing: check :attr:`json_error` (None when it parsed)."""
        value = self._parsed[0]
        return None if value is _NOT_JSON else value

    @property
    def json_error(self) -> str | None:
        return self._parsed[1]

    @property
    def include_usage(self) -> bool:
        options = self.observed.options.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    @cached_property
    def stream(self) -> StreamView | None:
        """The stream, or None when a streamed request was answered with one JSON object (then only
        ``stream.content_type`` has something to say)."""
        if self.media_type != "text/event-stream" and isinstance(self.json, dict):
            return None
        return read_stream(self.observed.body, self.include_usage)

    @property
    def cap(self) -> int | None:
        """The smallest completion cap the request asked for, if any."""
        caps = [
            v
            for k in ("max_tokens", "max_completion_tokens")
            if isinstance(v := self.observed.options.get(k), int) and not isinstance(v, bool)
        ]
        return min(caps) if caps else None

    @cached_property
    def request_key(self) -> str:
        """Equal for requests that must count the same prompt tokens."""
        if self.observed.request_key is not None:
            return self.observed.request_key
        prompt = {k: v for k, v in self.observed.options.items() if k not in GENERATION_ONLY}
        text = json.dumps(prompt, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()

    @cached_property
    def usage(self) -> tuple[str, dict[str, Any]] | None:
        """(JSON pointer, usage) of a response or a stream's usage, if there is one."""
        if self.kind == "response":
            body = self.json
            usage = body.get("usage") if isinstance(body, dict) else None
            return ("/usage", usage) if isinstance(usage, dict) else None
        if self.kind == "stream" and self.stream is not None and self.stream.usage is not None:
            return "/usage", self.stream.usage[1]
        return None

    @cached_property
    def completion_id(self) -> str | None:
        if self.kind == "response":
            body = self.json
            cid = body.get("id") if isinstance(body, dict) else None
        elif self.kind == "stream" and self.stream is not None and self.stream.seq.chunks:
            cid = self.stream.seq.chunks[0][1].get("id")
        else:
            cid = None
        return cid if isinstance(cid, str) and cid else None

    @cached_property
    def content(self) -> str:
        """The answer's text (all choices joined)."""
        if self.kind == "stream":
            return self.stream.content if self.stream is not None else ""
        body = self.json
        choices = body.get("choices") if isinstance(body, dict) else None
        parts = []
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str):
                parts.append(text)
        return "".join(parts)
