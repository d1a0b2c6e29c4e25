"""The metric registry: every load metric's name, unit and definition in one place, with its derivation.

Reports print ``Metric.definition`` verbatim, so what a number means is written next to the code that
computes it (DESIGN.md "Load metrics"). Latencies are derived in nanoseconds from ``RequestRecord``'s
``time.monotonic_ns()`` points and kept in microsecond histograms; summaries show milliseconds.

>>> from eyechart.load.records import RequestRecord
>>> r = RequestRecord("id", "measure", "c", True, "base64", t_sched=None, t_send=0, t_first=2_000_000)
>>> METRICS["ttft"].derive(r)
2000000
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from eyechart.load.records import RequestRecord

Kind = Literal["latency", "count"]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # as shown in summaries: "ms" for latencies, else what is counted
    kind: Kind  # latency: derived in ns, histogram in µs, summary in ms; count: recorded as is
    definition: str
    derive: Callable[[RequestRecord], int | None] | None  # None: recorded per chunk (ITL)


def _ttft(r: RequestRecord) -> int | None:
    return r.t_first - r.t_send if r.t_first is not None else None


def _ttft_sched(r: RequestRecord) -> int | None:
    if r.t_first is None:
        return None
    return r.t_first - (r.t_sched if r.t_sched is not None else r.t_send)


def _schedule_lag(r: RequestRecord) -> int | None:
    return r.t_send - r.t_sched if r.t_sched is not None else None


def _ttfb(r: RequestRecord) -> int | None:
    return r.t_head - r.t_send if r.t_head is not None else None


def completion_tokens(r: RequestRecord) -> tuple[int | None, bool]:
    """(completion tokens, estimated?): from usage, else the content chunks counted (estimated)."""
    if r.completion_tokens is not None:
        return r.completion_tokens, r.tokens_estimated
    if r.content_chunks:
        return r.content_chunks, True
    return None, False


def _tpot(r: RequestRecord) -> int | None:
    if r.t_first is None or r.t_end is None:
        return None
    tokens, _ = completion_tokens(r)
    if tokens is None or tokens < 2:
        return None
    return (r.t_end - r.t_first) // (tokens - 1)


def _e2e(r: RequestRecord) -> int | None:
    return r.t_end - r.t_send if r.t_end is not None else None


def _nonzero(v: int | None) -> int | None:
    return v if v else None


_LIST = [
    Metric(
        "ttft",
        "ms",
        "latency",
        "time to first token: t_first − t_send, where t_first is the first "
        "chunk with non-empty content (a role-only chunk is not a token)",
        _ttft,
    ),
    Metric(
        "ttft_sched",
        "ms",
        "latency",
        "time to first token from the schedule: t_first − t_sched; "
        "includes any queueing in the load generator (open loop; equals ttft in closed loop)",
        _ttft_sched,
    ),
    Metric(
        "schedule_lag",
        "ms",
        "latency",
        "schedule lag: t_send − t_sched, how late the generator sent "
        "a request it had planned (open loop only)",
        _schedule_lag,
    ),
    Metric("ttfb", "ms", "latency", "time to first byte: t_head − t_send, response headers received", _ttfb),
    Metric(
        "itl",
        "ms",
        "latency",
        "inter-token latency: each gap between consecutive content chunks "
        "(one value per chunk after the first)",
        None,
    ),
    Metric(
        "tpot",
        "ms",
        "latency",
        "time per output token: (t_end − t_first) / (completion_tokens − 1); "
        "tokens from usage, else counted chunks and marked estimated",
        _tpot,
    ),
    Metric("e2e", "ms", "latency", "end-to-end latency: t_end − t_send, the last byte", _e2e),
    Metric(
        "prompt_tokens",
        "tokens",
        "count",
        "prompt tokens from usage (text and image tokens)",
        lambda r: r.prompt_tokens,
    ),
    Metric(
        "completion_tokens",
        "tokens",
        "count",
        "completion tokens from usage, else content chunks counted (estimated)",
        lambda r: completion_tokens(r)[0],
    ),
    Metric("images", "images", "count", "images per request", lambda r: _nonzero(r.images)),
    Metric(
        "pixels", "pixels", "count", "decoded pixels per request, all images", lambda r: _nonzero(r.pixels)
    ),
    Metric(
        "image_bytes",
        "bytes",
        "count",
        "encoded image bytes per request (before base64)",
        lambda r: _nonzero(r.image_bytes),
    ),
]

METRICS: dict[str, Metric] = {m.name: m for m in _LIST}
LATENCY_METRICS = [m.name for m in _LIST if m.kind == "latency"]
COUNT_METRICS = [m.name for m in _LIST if m.kind == "count"]

# Whole-run metrics (not per request): shown in reports next to the per-request ones.
RUN_METRICS: dict[str, str] = {
    "requests_per_s": "completed requests (ok) per second of the measure stage",
    "output_tokens_per_s": "completion tokens of ok requests per second of the measure stage",
    "total_tokens_per_s": "prompt + completion tokens of ok requests per second of the measure stage",
    "images_per_s": "images in ok requests per second of the measure stage",
    "goodput": "ok requests per second that met every per-request SLO (ttft, e2e, tpot, the request's "
    "largest ITL); also given as the fraction of measured requests",
    "error_rate": "failed / sent requests of the measure stage (incomplete ones are neither); classes: "
    "connect, timeout, 4xx, 429, 5xx, disconnect (body ended early), malformed (bad JSON or SSE framing, "
    "error event), no_done (stream ended without [DONE])",
    "incomplete": "requests still open when the drain after the last stage ended: recorded with their "
    "partial timings, not failures; the censored view counts them at their stop time (a lower bound)",
}


def itl_gaps(chunk_times_ns: list[int]) -> list[int]:
    """ITL values from the arrival times of the content chunks (one gap per chunk after the first)."""
    return [b - a for a, b in pairwise(chunk_times_ns)]
