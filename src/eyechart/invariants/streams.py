"""Invariants of one stream (CONTRACT.md section 4): framing from the strict reader, the cross-chunk rules
of :mod:`eyechart.wire.sse` (one per finding code), each chunk's schema, and the stream's usage."""

from __future__ import annotations

from eyechart.invariants import schemacache, usage
from eyechart.invariants.observed import Judged, StreamView
from eyechart.invariants.registry import SKIP, Fault, Outcome, invariant
from eyechart.invariants.responses import created_recent, media_type_is, problems_fault
from eyechart.wire import sse


def _codes(s: StreamView | None, *codes: str) -> Outcome:
    """The first of ``codes`` found (framing from the reader, the rest from the chunk rules)."""
    if s is None:
        return SKIP
    for code in codes:
        f = s.framing.get(code) if code not in sse.CHUNK_RULES else s.chunk_finding(code)
        if f is not None:
            return Fault(f.message, got=f.code, event=f.event, count=f.count)
    return None


@invariant("stream.content_type", kinds=["stream"], severity="MUST", clause="stream.content_type")
def content_type(j: Judged) -> Outcome:
    """A streamed answer is Content-Type: text/event-stream."""
    return media_type_is(j, "text/event-stream", "the stream")


@invariant("stream.done_sentinel", kinds=["stream"], severity="MUST", clause="stream.done")
def done_sentinel(j: Judged) -> Outcome:
    """The last event is data: [DONE] (after an error event, the end is legal without it)."""
    return _codes(j.stream, "done_missing", "incomplete_event")


@invariant("stream.nothing_after_done", kinds=["stream"], severity="MUST", clause="stream.done")
def nothing_after_done(j: Judged) -> Outcome:
    """No event after data: [DONE]."""
    return _codes(j.stream, "data_after_done")


@invariant("stream.valid_json", kinds=["stream"], severity="MUST", clause="stream.events")
def valid_json(j: Judged) -> Outcome:
    """Every event is UTF-8 data: holding a JSON object, and there is at least one chunk."""
    return _codes(j.stream, "invalid_json", "not_utf8", "no_chunks")


@invariant("stream.chunk_schema", kinds=["stream"], severity="MUST", clause="stream.chunk")
def chunk_schema(j: Judged) -> Outcome:
    """Every chunk is valid against chunk.json (object chat.completion.chunk, id, model, integer created,
    choices[index, delta, finish_reason])."""
    s = j.stream
    if s is None or not s.seq.chunks:
        return SKIP
    chunks = s.seq.chunks
    failing = list(schemacache.failures("chunk", j.profile, [c for _, c in chunks], s.seq.texts))
    if not failing:
        return None
    n, found = failing[0]
    fault = problems_fault("chunk", found)
    assert fault is not None
    return Fault(fault.message, fault.pointer, fault.expected, fault.got, chunks[n][0], len(failing))


@invariant("stream.same_id", kinds=["stream"], severity="MUST", clause="stream.same_id")
def same_id(j: Judged) -> Outcome:
    """One id in all chunks of a stream (a chunk of another stream shows here)."""
    return _codes(j.stream, "id_changed")


@invariant("stream.same_model", kinds=["stream"], severity="MUST", clause="stream.same_id")
def same_model(j: Judged) -> Outcome:
    """One model in all chunks of a stream."""
    return _codes(j.stream, "model_changed")


@invariant("stream.first_delta_role", kinds=["stream"], severity="MUST", clause="stream.roles")
def first_delta_role(j: Judged) -> Outcome:
    """The first delta of each choice carries role "assistant"."""
    return _codes(j.stream, "first_delta_no_role")


@invariant("stream.later_role_not_empty", kinds=["stream"], severity="MUST", clause="stream.roles")
def later_role_not_empty(j: Judged) -> Outcome:
    """A later role, if any, is never empty or null."""
    return _codes(j.stream, "role_empty")


@invariant("stream.one_finish_reason", kinds=["stream"], severity="MUST", clause="stream.finish_reason")
def one_finish_reason(j: Judged) -> Outcome:
    """Exactly one non-null finish_reason per choice (none is legal when an error event ended it)."""
    s = j.stream
    if s is not None and s.seq.error:
        return _codes(s, "finish_reason_repeated")
    return _codes(s, "finish_reason_repeated", "finish_reason_missing")


@invariant("stream.usage_chunk", kinds=["stream"], severity="MUST", clause="stream.usage")
def usage_chunk(j: Judged) -> Outcome:
    """With include_usage: one chunk with "choices": [] and usage, last before [DONE]; no usage elsewhere."""
    s = j.stream
    if s is None or not j.include_usage or not j.profile.include_usage_supported:
        return SKIP
    codes = ["usage_chunk_repeated", "usage_chunk_not_last", "usage_outside_usage_chunk"]
    if not s.seq.error:
        codes.insert(0, "usage_chunk_missing")
    return _codes(s, *codes)


@invariant("stream.no_unasked_usage", kinds=["stream"], severity="MUST", clause="stream.usage")
def no_unasked_usage(j: Judged) -> Outcome:
    """Without include_usage, no usage-only chunk."""
    if j.include_usage:
        return SKIP
    return _codes(j.stream, "usage_unrequested")


@invariant("stream.error_event_last", kinds=["stream"], severity="MUST", clause="stream.error_event")
def error_event_last(j: Judged) -> Outcome:
    """An error event in a stream is the last event."""
    s = j.stream
    if s is None or not s.seq.error:
        return SKIP
    return _codes(s, "data_after_error")


@invariant("stream.framing", kinds=["stream"], severity="INFO", clause="stream.framing")
def framing(j: Judged) -> Outcome:
    """Legal but unusual framing (CR/CRLF, comments, multi-line data, event:/id: fields) is recorded."""
    s = j.stream
    if s is None:
        return SKIP
    notes = [f for f in s.framing.values() if f.severity != "MUST" and f.code != "ended_after_error"]
    unasked = s.chunk_finding("usage_in_content_chunk")
    if unasked is not None:
        notes.append(unasked)
    if not notes:
        return None
    return Fault(
        "legal but unusual framing: " + "; ".join(sorted(f"{f.code} ({f.message})" for f in notes)),
        got=sorted(f.code for f in notes),
        event=min((f.event for f in notes if f.event is not None), default=None),
    )


@invariant("stream.usage_total", kinds=["stream"], severity="MUST", clause="response.usage")
def usage_total(j: Judged) -> Outcome:
    """The stream's usage counts are integers ≥ 0 with total_tokens = prompt_tokens + completion_tokens."""
    s = j.stream
    if s is None or not s.usages:
        return SKIP
    for event, counts in s.usages:
        for key in usage.COUNTS:
            value = counts.get(key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                return Fault(
                    f"usage.{key} is not a non-negative integer",
                    pointer=f"/usage/{key}",
                    expected="an integer ≥ 0",
                    got=value,
                    event=event,
                )
        want = counts["prompt_tokens"] + counts["completion_tokens"]
        if counts["total_tokens"] != want:
            return Fault(
                "usage.total_tokens is not prompt_tokens + completion_tokens",
                pointer="/usage/total_tokens",
                expected=want,
                got=counts["total_tokens"],
                event=event,
            )
    return None


@invariant("stream.cap_respected", kinds=["stream"], severity="MUST", clause="response.cap")
def cap_respected(j: Judged) -> Outcome:
    """The streamed usage.completion_tokens ≤ the cap the request asked for."""
    return usage.cap_respected(j)


@invariant("stream.usage_counts_content", kinds=["stream"], severity="MUST", clause="stream.usage")
def usage_counts_content(j: Judged) -> Outcome:
    """A stream that carried content counts at least one completion token."""
    return usage.counts_content(j)


@invariant("stream.usage_covers_chunks", kinds=["stream"], severity="SHOULD", clause="stream.usage")
def usage_covers_chunks(j: Judged) -> Outcome:
    """completion_tokens ≥ the number of chunks that carried content (each carries at least one token);
    fewer is usually another stream's usage."""
    got = usage.completion(j)
    s = j.stream
    if got is None or s is None:
        return SKIP
    if got < s.content_events:
        return Fault(
            f"usage counts {got} completion tokens for {s.content_events} content chunks",
            pointer="/usage/completion_tokens",
            expected=f"≥ {s.content_events}",
            got=got,
        )
    return None


@invariant("stream.created_recent", kinds=["stream"], severity="SHOULD", clause="response.created")
def stream_created(j: Judged) -> Outcome:
    """The first chunk's created is integer unix seconds near the time of the answer."""
    s = j.stream
    if s is None or not s.seq.chunks:
        return SKIP
    event, first = s.seq.chunks[0]
    fault = created_recent(j, first.get("created"), "/created")
    if isinstance(fault, Fault):
        return Fault(fault.message, fault.pointer, fault.expected, fault.got, event)
    return fault
