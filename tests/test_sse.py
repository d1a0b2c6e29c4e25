"""The strict SSE reader: legal framings pass, each violation is named, chunk boundaries never matter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eyechart.wire.sse import SSEReader, StreamAnalysis, chunk_findings, read_events


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    usage: Any = ...,
    choices: bool = True,
    id: str = "chatcmpl-1",
    model: str = "m",
    index: int = 0,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not ...:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
A = chunk("a", role="assistant")
STOP_ = chunk(finish="stop")


def good_chunks(include_usage: bool = False) -> list[dict[str, Any]]:
    out = [chunk("Hel", role="assistant"), chunk("lo"), chunk(finish="stop")]
    if include_usage:
        out.append(chunk(choices=False, usage=USAGE))
    return out


def sse(chunks: list[Any], *, done: bool = True, eol: str = "\n", space: str = " ") -> bytes:
    lines = [f"data:{space}{json.dumps(c)}{eol}{eol}" for c in chunks]
    if done:
        lines.append(f"data:{space}[DONE]{eol}{eol}")
    return "".join(lines).encode()


def read(body: bytes, include_usage: bool | None = None) -> StreamAnalysis:
    return read_events([body], include_usage=include_usage)


def must(analysis: StreamAnalysis) -> set[str]:
    return {f.code for f in analysis.violations}


def bytewise(body: bytes, include_usage: bool | None = None) -> StreamAnalysis:
    return read_events([body[i : i + 1] for i in range(len(body))], include_usage=include_usage)


def summary(a: StreamAnalysis) -> tuple[Any, ...]:
    return (
        [(e.offset, e.data, e.done, e.complete) for e in a.events],
        [(f.code, f.severity, f.event, f.offset, f.count) for f in a.findings],
        a.content,
        a.finish_reasons,
        a.usage,
        a.done,
    )


def test_a_good_stream_has_no_findings_and_joins_content() -> None:
    a = read(sse(good_chunks(include_usage=True)), include_usage=True)
    assert a.findings == []
    assert a.text == "Hello" and a.finish_reason == "stop" and a.usage == USAGE
    assert a.done and len(a.events) == 5 and a.events[-1].done
    assert [c["choices"] for c in a.chunks][-1] == []
    assert a.raw == sse(good_chunks(include_usage=True))


@pytest.mark.parametrize(
    "body",
    [
        sse(good_chunks(), eol="\r\n"),
        sse(good_chunks(), eol="\r"),
        sse(good_chunks(), space=""),
        b"\xef\xbb\xbf" + sse(good_chunks()),
        b": keep-alive\n\n" + sse(good_chunks()[:1], done=False) + b":ping\n" + sse(good_chunks()[1:]),
        b"event: message\nid: 7\nretry: 1000\n" + sse(good_chunks()),
        sse(good_chunks())[:-1] + b"\n\n\n",  # extra blank lines
        # a JSON chunk split over several data: lines is joined with \n (valid JSON whitespace)
        b"data: " + json.dumps(good_chunks()[0], indent=1).replace("\n", "\ndata: ").encode() + b"\n\n"
        + sse(good_chunks()[1:]),
        # mixed line ends in one stream
        sse(good_chunks()[:1], done=False, eol="\r\n") + sse(good_chunks()[1:2], done=False, eol="\r")
        + sse(good_chunks()[2:]),
    ],
)  # fmt: skip
def test_every_legal_framing_passes_and_bytewise_equals_whole(body: bytes) -> None:
    a = read(body, include_usage=False)
    assert a.violations == [], a.findings
    assert a.text == "Hello" and a.finish_reason == "stop" and a.done
    assert summary(bytewise(body, include_usage=False)) == summary(a)


def test_unusual_framing_is_noted_as_info() -> None:
    body = b"\xef\xbb\xbf: hi\r\n" + sse(good_chunks(), eol="\r\n")
    notes = {f.code for f in read(body).notes}
    assert {"bom", "comment_lines", "line_ends"} <= notes


def test_cr_at_a_read_boundary_then_lf_is_one_line_end() -> None:
    body = sse(good_chunks(), eol="\r\n")
    cut = body.index(b"\r\n") + 1
    reader = SSEReader()
    assert reader.feed(body[:cut], 1) == []
    completed = reader.feed(body[cut:], 2)
    a = reader.close(3)
    assert len(completed) == 4 and a.violations == []
    assert "'crlf': 8" in a.findings[0].message


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (sse(good_chunks(), done=False), "done_missing"),
        (sse(good_chunks()) + sse([chunk("more")], done=False), "data_after_done"),
        (sse(good_chunks()) + b"data: [DONE]\n\n", "data_after_done"),
        (b"data: {not json}\n\n" + sse(good_chunks()), "invalid_json"),
        (b"data: 42\n\n" + sse(good_chunks()), "invalid_json"),
        (sse(good_chunks(), done=False) + b'data: {"id": "chatcmpl-1"', "incomplete_event"),
        (sse(good_chunks())[:-1], "incomplete_event"),
        (sse(good_chunks()[:1]).replace(b"Hel", b"H\xffl"), "not_utf8"),
        (sse([{"error": {"message": "boom"}}, chunk("x", role="assistant")]), "data_after_error"),
        (sse([]), "no_chunks"),
        (sse([A, chunk("b", id="chatcmpl-2"), STOP_]), "id_changed"),
        (sse([A, chunk("b", model="other"), STOP_]), "model_changed"),
        (sse([chunk("a"), chunk(finish="stop")]), "first_delta_no_role"),
        (sse([chunk("a", role=""), chunk(finish="stop")]), "first_delta_no_role"),
        (sse([chunk("a", role="assistant"), chunk("b", role=""), chunk(finish="stop")]), "role_empty"),
        (sse([chunk("a", role="assistant"), chunk("b")]), "finish_reason_missing"),
        (sse([A, chunk(finish="length"), STOP_]), "finish_reason_repeated"),
    ],
)  # fmt: skip
def test_each_violation_is_named(body: bytes, code: str) -> None:
    a = read(body)
    assert code in must(a), a.findings
    assert summary(bytewise(body)) == summary(a)


def test_role_null_later_is_a_violation_but_absent_is_fine() -> None:
    later_null = chunk("b")
    later_null["choices"][0]["delta"]["role"] = None
    assert "role_empty" in must(read(sse([chunk("a", role="assistant"), later_null, chunk(finish="stop")])))
    assert must(read(sse(good_chunks()))) == set()


def test_usage_rules_with_include_usage() -> None:
    assert must(read(sse(good_chunks()), include_usage=True)) == {"usage_chunk_missing"}
    twice = [*good_chunks(include_usage=True), chunk(choices=False, usage=USAGE)]
    assert "usage_chunk_repeated" in must(read(sse(twice), include_usage=True))
    early = [chunk("a", role="assistant"), chunk(choices=False, usage=USAGE), chunk(finish="stop")]
    assert must(read(sse(early), include_usage=True)) == {"usage_chunk_not_last"}
    everywhere = [chunk("a", role="assistant", usage=USAGE), chunk(finish="stop", usage=USAGE)]
    everywhere.append(chunk(choices=False, usage=USAGE))
    assert must(read(sse(everywhere), include_usage=True)) == {"usage_outside_usage_chunk"}
    nulls = [chunk("a", role="assistant", usage=None), chunk(finish="stop", usage=None)]
    nulls.append(chunk(choices=False, usage=USAGE))
    assert must(read(sse(nulls), include_usage=True)) == set()


def test_usage_rules_without_include_usage() -> None:
    assert must(read(sse(good_chunks(include_usage=True)), include_usage=False)) == {"usage_unrequested"}
    in_last = [chunk("a", role="assistant"), chunk(finish="stop", usage=USAGE)]
    a = read(sse(in_last), include_usage=False)
    assert must(a) == set() and "usage_in_content_chunk" in a.codes and a.usage == USAGE
    # unknown whether usage was asked: the usage rules are skipped
    assert must(read(sse(good_chunks(include_usage=True)), include_usage=None)) == set()


def test_an_error_event_ends_a_stream_legally() -> None:
    a = read(sse([chunk("a", role="assistant"), {"error": {"message": "overloaded"}}], done=False))
    assert "done_missing" not in a.codes and a.error == {"error": {"message": "overloaded"}}
    assert "finish_reason_missing" in a.codes  # the choice never finished: checks decide what it means


def test_several_choices_are_kept_apart() -> None:
    chunks = [
        chunk("a", role="assistant", index=0),
        chunk("x", role="assistant", index=1),
        chunk("b", index=0, finish="stop"),
        chunk("y", index=1, finish="length"),
    ]
    a = read(sse(chunks))
    assert a.violations == []
    assert a.content == {0: "ab", 1: "xy"} and a.finish_reasons == {0: ["stop"], 1: ["length"]}


def test_chunk_findings_is_usable_on_its_own() -> None:
    a = read(sse([chunk("a"), chunk(finish="stop")]))
    assert {f.code for f in chunk_findings(a.events, None)} == {"first_delta_no_role"}


def test_arrival_times_offsets_and_delivery_spread() -> None:
    body = sse(good_chunks())
    parts = body.split(b"\n\n")
    reader = SSEReader(t_start_ns=0)
    for i, part in enumerate(parts[:-1]):
        reader.feed(part + b"\n\n", 1000 * (i + 1))
    a = reader.close(5000)
    assert [e.t_ns for e in a.events] == [1000, 2000, 3000, 4000]
    assert [e.offset for e in a.events] == [
        0,
        len(parts[0]) + 2,
        len(parts[0]) + len(parts[1]) + 4,
        a.events[3].offset,
    ]
    assert body[a.events[3].offset :].startswith(b"data: [DONE]")
    assert a.t_first_content == 1000 and a.t_last_content == 2000 and a.ttft_ns == 1000
    assert a.delivery_spread == pytest.approx(1000 / 5000) and a.content_reads == 2
    # everything in one read: the signature of a buffering proxy
    buffered = SSEReader(t_start_ns=0)
    buffered.feed(body, 4900)
    b = buffered.close(5000)
    assert b.delivery_spread == 0 and b.content_reads == 1 and b.ttft_ns == 4900


def test_raw_bytes_are_bounded_and_counted() -> None:
    reader = SSEReader(max_raw_bytes=1000, max_line_bytes=5000)
    line = b": " + b"x" * 98 + b"\n"
    for _ in range(200):
        reader.feed(line, 1)
    reader.feed(b"data: " + b"y" * 20_000, 2)  # an endless line
    a = reader.close(3)
    assert len(a.raw) == 1000 and a.total_bytes == 200 * 101 + 20_006 and a.raw_truncated
    assert {"line_too_long", "incomplete_event", "invalid_json", "done_missing"} <= a.codes
    assert len(a.events[0].raw) <= 5000 + 200  # the event's raw text is bounded too


def test_feed_after_close_is_a_harness_error_and_close_is_idempotent() -> None:
    reader = SSEReader()
    a = reader.close()
    assert reader.close() is a
    with pytest.raises(RuntimeError):
        reader.feed(b"data: x\n\n")
