"""One record per request: the timing points and sizes every load metric is derived from.

All ``t_*`` fields are ``time.monotonic_ns()`` readings (CLOCK_MONOTONIC, shared by every process on the
machine, so they compare directly with the reference target's ``--trace``). The definitions of the
metrics derived from them live in ``eyechart.load.metrics``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ErrorClass = Literal["connect", "timeout", "4xx", "429", "5xx", "disconnect", "malformed", "no_done"]
"""connect: no connection; timeout: over ``--request-timeout`` or a socket timeout; 4xx/429/5xx: the
status; disconnect: the body ended early; malformed: bad JSON or SSE framing, or an error event;
no_done: a stream that ended cleanly without ``[DONE]``."""


@dataclass(slots=True)
class RequestRecord:
    request_id: str  # sent as X-Request-Id, so the target's trace can be joined
    stage: str  # "warmup", "measure", "cooldown", or a sweep stage name
    case: str  # which workload case built the request
    stream: bool
    transport: str  # "base64", "url", "mixed" or "none"
    t_sched: int | None  # intended send time (open loop); None in closed loop
    t_send: int  # actual send
    t_head: int | None = None  # response headers received
    t_first: int | None = None  # first chunk with non-empty content
    t_end: int | None = None  # last byte; for an incomplete request, when it was cut off
    status: int | None = None
    error_class: ErrorClass | None = None
    error: str | None = None  # short, server text truncated; never contains the API key
    content_chunks: int = 0  # SSE events that carried non-empty content
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False  # completion_tokens counted by the harness, not from usage
    images: int = 0
    pixels: int = 0
    image_bytes: int = 0  # encoded image bytes (before base64)
    wire_bytes: int = 0  # request body bytes on the wire
    response_bytes: int = 0
    incomplete: bool = False  # still open when the drain ended (or the run was stopped): not a failure
    retried: bool = False  # resent once on a fresh connection after a reused one was found dead

    @property
    def ok(self) -> bool:
        return self.error_class is None and not self.incomplete

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
