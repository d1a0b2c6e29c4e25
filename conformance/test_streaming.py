"""Streaming, ``"stream": true`` (conformance/CONTRACT.md, ``stream.*``).

Three streams are read once by the strict SSE reader and judged by several checks: ``plain`` (a
deterministic request without ``include_usage``), ``with_usage`` (the same with ``include_usage``) and,
for incremental delivery, ``long`` (an answer of many tokens). The same request unstreamed is the
reference for finish_reason, content and usage. Legal variants never fail: ``role`` repeated in every
delta, ``usage: null`` in content chunks, comments, CR line ends and multi-line data are at most INFO.
"""

from __future__ import annotations

from typing import Any

import pytest

from eyechart.conform.checks import check, expect, expect_schema, fail, skip
from eyechart.conform.session import Session, expect_refusal, first_choice, json_of, media_type
from eyechart.wire.sse import StreamAnalysis, chunk_findings, read_events

IMAGE = "png-rgb"
PROMPT = "What is in this image?"
CAP = 24
LONG_PROMPT = "Describe this image in great detail, at length, covering every part of it."
LONG_CAP = 96
MIN_CONTENT_EVENTS = 8  # fewer content events than this: the answer is too short to judge delivery
MIN_SPREAD = 0.10  # first content at or before 90 % of the time to the last content

Stream = tuple[Any, StreamAnalysis]


def _body(api: Session, prompt: str = PROMPT, cap: int = CAP, **opts: Any) -> dict[str, Any]:
    return api.vision_body([IMAGE], prompt, temperature=0, seed=7, max_tokens=cap, **opts)


def _ok_stream(ex: Any, what: str) -> None:
    expect(ex.status == 200, f"{what} did not get 200", exchange=ex, expected=200, got=ex.status)


@pytest.fixture(scope="module")
def plain(api: Session) -> Stream:
    """A deterministic vision request, streamed without include_usage."""
    return api.stream(_body(api, stream=True))


@pytest.fixture(scope="module")
def with_usage(api: Session) -> Stream:
    """The same request with ``stream_options.include_usage``."""
    return api.stream(_body(api, stream=True, stream_options={"include_usage": True}))


@pytest.fixture(scope="module")
def unstreamed(api: Session) -> tuple[Any, Any]:
    """The same request unstreamed: the reference for finish_reason, content and usage."""
    ex = api.chat(_body(api))
    expect(
        ex.status == 200, "the unstreamed request did not get 200", exchange=ex, expected=200, got=ex.status
    )
    return ex, json_of(ex)


def _streams(plain: Stream, with_usage: Stream) -> list[Stream]:
    return [s for s in (plain, with_usage) if s[0].status == 200]


def _judge_codes(streams: list[Stream], codes: tuple[str, ...], message: str) -> None:
    """Fail with the first finding among ``codes`` in any of the streams."""
    __tracebackhide__ = True
    if not streams:
        skip("no stream got 200 (see stream.content_type)")
    for ex, an in streams:
        for finding in an.findings:
            if finding.code in codes:
                fail(f"{message}: {finding.message}", exchange=ex, got=str(finding))


@check("stream.content_type", severity="MUST", clause="stream.content_type")
def test_content_type(plain: Stream) -> None:
    ex, _ = plain
    _ok_stream(ex, "a streamed request")
    expect(
        media_type(ex) == "text/event-stream",
        "the stream is not text/event-stream",
        exchange=ex,
        expected="text/event-stream",
        got=media_type(ex) or "(no Content-Type)",
    )


@check(
    "stream.done_sentinel",
    severity="MUST",
    clause="stream.done",
)
def test_done_sentinel(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(
        _streams(plain, with_usage),
        ("done_missing", "incomplete_event"),
        "the stream did not end with [DONE]",
    )


@check("stream.nothing_after_done", severity="MUST", clause="stream.done")
def test_nothing_after_done(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(_streams(plain, with_usage), ("data_after_done",), "an event came after [DONE]")


@check("stream.valid_json", severity="MUST", clause="stream.events")
def test_valid_json(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(
        _streams(plain, with_usage),
        ("invalid_json", "not_utf8", "no_chunks"),
        "a data: line is not a JSON chunk",
    )


@check(
    "stream.chunk_schema",
    severity="MUST",
    clause="stream.chunk",
)
def test_chunk_schema(api: Session, plain: Stream, with_usage: Stream) -> None:
    streams = _streams(plain, with_usage)
    if not streams:
        skip("no stream got 200 (see stream.content_type)")
    for ex, an in streams:
        for chunk in an.chunks:
            expect_schema("chunk", chunk, ex, api.profile)


@check("stream.same_id", severity="MUST", clause="stream.same_id")
def test_same_id(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(_streams(plain, with_usage), ("id_changed",), "the chunk id changes within one stream")


@check("stream.same_model", severity="MUST", clause="stream.same_id")
def test_same_model(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(_streams(plain, with_usage), ("model_changed",), "the chunk model changes within one stream")


@check(
    "stream.first_delta_role",
    severity="MUST",
    clause="stream.roles",
)
def test_first_delta_role(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(
        _streams(plain, with_usage), ("first_delta_no_role",), "the first delta has no assistant role"
    )


@check("stream.later_role_not_empty", severity="MUST", clause="stream.roles")
def test_later_role_not_empty(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(_streams(plain, with_usage), ("role_empty",), "a later delta has an empty role")


@check("stream.one_finish_reason", severity="MUST", clause="stream.finish_reason")
def test_one_finish_reason(plain: Stream, with_usage: Stream) -> None:
    _judge_codes(
        _streams(plain, with_usage),
        ("finish_reason_missing", "finish_reason_repeated"),
        "not exactly one finish_reason",
    )


@check(
    "stream.finish_reason_matches",
    severity="MUST",
    clause="stream.finish_reason",
)
def test_finish_reason_matches(plain: Stream, unstreamed: tuple[Any, Any]) -> None:
    ex, an = plain
    _ok_stream(ex, "a streamed request")
    if an.finish_reason is None:
        skip("the stream has no single finish_reason (see stream.one_finish_reason)")
    uex, ubody = unstreamed
    want = first_choice(uex, ubody, "the unstreamed response").get("finish_reason")
    expect(
        an.finish_reason == want,
        "the streamed finish_reason differs from the unstreamed one",
        exchange=ex,
        expected=want,
        got=an.finish_reason,
    )


@check(
    "stream.content_matches",
    severity="SHOULD",
    clause="stream.content",
)
def test_content_matches(plain: Stream, unstreamed: tuple[Any, Any]) -> None:
    ex, an = plain
    _ok_stream(ex, "a streamed request")
    uex, ubody = unstreamed
    want = (first_choice(uex, ubody, "the unstreamed response").get("message") or {}).get("content") or ""
    expect(
        an.text == want,
        "the streamed content differs from the unstreamed content",
        exchange=ex,
        expected=want[:300],
        got=an.text[:300],
    )


@check(
    "stream.usage_chunk",
    severity="MUST",
    clause="stream.usage",
)
def test_usage_chunk(api: Session, with_usage: Stream) -> None:
    if not api.profile.include_usage_supported:
        skip(f"profile {api.profile.name} does not support stream_options.include_usage")
    ex, an = with_usage
    _ok_stream(ex, "a streamed request with include_usage")
    for finding in chunk_findings(an.events, include_usage=True):
        if finding.code.startswith("usage"):
            fail(f"include_usage: {finding.message}", exchange=ex, got=str(finding))
    last_data = [e for e in an.events if not e.done]
    expect(
        last_data and last_data[-1].is_chunk and last_data[-1].json.get("choices") == [],
        "the usage chunk is not the last event before [DONE]",
        exchange=ex,
        expected='{"choices": [], "usage": {...}} then [DONE]',
        got=last_data[-1].data[:200] if last_data else None,
    )


@check(
    "stream.usage_matches",
    severity="MUST",
    clause="stream.usage",
)
def test_usage_matches(api: Session, with_usage: Stream, unstreamed: tuple[Any, Any]) -> None:
    if not api.profile.include_usage_supported:
        skip(f"profile {api.profile.name} does not support stream_options.include_usage")
    ex, an = with_usage
    _ok_stream(ex, "a streamed request with include_usage")
    usage = an.usage_chunk.get("usage") if an.usage_chunk else None
    if not isinstance(usage, dict):
        skip("no usage chunk (see stream.usage_chunk)")
    uex, ubody = unstreamed
    ref = ubody.get("usage") if isinstance(ubody, dict) else None
    if not isinstance(ref, dict):
        skip("the unstreamed response has no usage to compare with")
    expect(
        usage.get("prompt_tokens") == ref.get("prompt_tokens"),
        "the streamed prompt_tokens differ from the unstreamed prompt_tokens",
        exchange=ex,
        expected=ref.get("prompt_tokens"),
        got=usage.get("prompt_tokens"),
    )
    completion = usage.get("completion_tokens")
    if not isinstance(completion, int) or isinstance(completion, bool):
        fail("usage.completion_tokens is not an integer", exchange=ex, got=completion)
    expect(
        completion <= CAP,
        f"completion_tokens exceeds the cap of {CAP}",
        exchange=ex,
        expected=f"≤ {CAP}",
        got=completion,
    )
    if an.text:
        expect(
            completion >= 1,
            "content was streamed but completion_tokens is 0",
            exchange=ex,
            expected="≥ 1",
            got=completion,
        )
    want_text = (first_choice(uex, ubody, "the unstreamed response").get("message") or {}).get(
        "content"
    ) or ""
    if an.text == want_text and an.finish_reason == first_choice(uex, ubody, "the unstreamed response").get(
        "finish_reason"
    ):
        expect(
            completion == ref.get("completion_tokens"),
            "the same answer streamed and unstreamed counts different completion_tokens",
            exchange=ex,
            expected=ref.get("completion_tokens"),
            got=completion,
        )


@check("stream.no_unasked_usage", severity="MUST", clause="stream.usage")
def test_no_unasked_usage(plain: Stream) -> None:
    ex, an = plain
    _ok_stream(ex, "a streamed request")
    for event in an.events:
        if event.is_chunk and event.json.get("choices") == [] and isinstance(event.json.get("usage"), dict):
            fail(
                "a usage-only chunk came although include_usage was not asked",
                exchange=ex,
                expected="no chunk with empty choices",
                got=event.data[:200],
            )


@check(
    "stream.incremental",
    severity=lambda p: p.incremental_streaming,
    clause="stream.incremental",
)
def test_incremental(api: Session) -> None:
    ex, an = api.stream(_body(api, LONG_PROMPT, LONG_CAP, stream=True))
    _ok_stream(ex, "a long streamed request")
    if an.content_events < MIN_CONTENT_EVENTS:
        skip(f"the answer came in {an.content_events} content events: too short to judge delivery")
    if an.t_first_content is None or an.t_last_content is None or an.t_start_ns is None:
        skip("no content timing")
    window = an.t_last_content - an.t_start_ns
    spread = (an.t_last_content - an.t_first_content) / window if window > 0 else 0.0
    expect(
        an.content_reads >= 2 and spread >= MIN_SPREAD,
        "the content arrived all at once at the end (buffered, not streamed)",
        exchange=ex,
        expected=f"content over ≥ 2 reads, the first at or before {1 - MIN_SPREAD:.0%}"
        " of the time to the last",
        got=f"{an.content_events} content events in {an.content_reads} reads; first content at "
        f"{(an.t_first_content - an.t_start_ns) / 1e6:.0f} ms, last at {window / 1e6:.0f} ms",
    )


@check(
    "stream.error_plain_json",
    severity="MUST",
    clause="stream.errors",
)
def test_error_plain_json(api: Session) -> None:
    cases = [
        ("an unknown model", {**api.text_body(stream=True), "model": "eyechart/no-such-model-0"}),
        ("an empty messages list", {**api.text_body(stream=True), "messages": []}),
    ]
    for what, body in cases:
        ex = api.chat(body, valid=False)
        if ex.status is not None and ex.status >= 400:
            expect(
                media_type(ex) != "text/event-stream",
                f"the error for {what} came as an event stream",
                exchange=ex,
                expected="application/json",
                got=media_type(ex),
            )
            expect_schema("error", json_of(ex, f"the error body for {what}"), ex, api.profile)
            return
        if ex.status == 200 and media_type(ex) == "text/event-stream":
            first = next((e for e in read_events([ex.body or b""]).events if not e.done), None)
            if first is not None and first.is_error:
                fail(
                    f"the request error for {what} came as a 200 event stream holding an error event",
                    exchange=ex,
                    expected="a 4xx plain JSON error response",
                    got=first.data[:200],
                )
    skip("the server accepted every deliberately wrong streamed request: no error to judge (see errors.*)")


@check(
    "stream.error_event_last",
    severity="MUST",
    clause="stream.error_event",
)
def test_error_event_last(plain: Stream, with_usage: Stream) -> None:
    streams = [s for s in _streams(plain, with_usage) if s[1].error is not None]
    if not streams:
        skip("no stream carried an error event")
    _judge_codes(streams, ("data_after_error",), "events came after the error event")


@check(
    "stream.framing",
    severity="INFO",
    clause="stream.framing",
)
def test_framing(plain: Stream, with_usage: Stream) -> None:
    streams = _streams(plain, with_usage)
    if not streams:
        skip("no stream got 200 (see stream.content_type)")
    notes = sorted({str(n) for _, an in streams for n in an.notes})
    if notes:
        fail("legal but unusual framing: " + "; ".join(notes), exchange=streams[0][0], got=notes)


def _stream_kind(ex: Any) -> str:
    """What a 200 event stream answering a request error holds, in the words of the finding."""
    events = read_events([ex.body or b""]).events
    data = [e for e in events if not e.done]
    if not events:
        return "an empty 200 event stream"
    if data and data[0].is_error:
        return "a 200 event stream holding an error event"
    if not any(e.done for e in events) or ex.error_class == "timeout":
        return "an unterminated 200 event stream (no [DONE])"
    return "a complete 200 event stream with an answer (the bad image was not refused)"


@check("stream.bad_image_plain_json", severity="MUST", clause="stream.errors")
def test_bad_image_plain_json(api: Session) -> None:
    body = api.vision_body(["jpeg-truncated"], PROMPT, stream=True, max_tokens=8)
    ex = api.chat(body, timeout=15.0, allow_transport_error=True)
    if ex.status == 200 and media_type(ex) == "text/event-stream":
        fail(
            f"a truncated JPEG with stream: true got {_stream_kind(ex)}",
            exchange=ex,
            expected="a 4xx plain JSON error response before any event-stream byte",
            got=(ex.body or b"")[:200].decode("utf-8", "replace") or "(no body)",
        )
    expect(
        media_type(ex) != "text/event-stream",
        f"the error for a truncated JPEG with stream: true came as a {ex.status} event stream",
        exchange=ex,
        expected="application/json",
        got=media_type(ex),
    )
    expect_refusal(ex, "a truncated JPEG with stream: true", api.profile, if_200="got 200 instead of a 4xx")
