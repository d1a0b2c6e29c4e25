"""The invariant registry: every invariant fails on a broken exchange and holds on a faithful one; legal
variants never fail; the fast framing path judges like the strict reader; real bytes from the reference
target keep every invariant, and the crossing rules catch ids and usage moved between real streams."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import httpx
import pytest

from eyechart import invariants
from eyechart.invariants import registry, schemacache
from eyechart.invariants.observed import Observed
from eyechart.profiles import Profile, load_profile
from eyechart.target.launch import RunningTarget, start_target
from eyechart.wire import schemas

PROFILE = load_profile()
NOW = float(int(time.time()))
REQ: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
SREQ = {**REQ, "stream": True}
UREQ = {**SREQ, "stream_options": {"include_usage": True}}
JSON = {"Content-Type": "application/json"}
SSE = {"content-type": "text/event-stream; charset=utf-8"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "estimated_cost": 0.0}


def response_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(NOW),
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": dict(USAGE),
    }
    body.update(changes)
    return body


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    usage: Any = ...,
    choices: bool = True,
    **changes: Any,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": int(NOW),
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not ...:
        body["usage"] = usage
    body.update(changes)
    return body


def good_chunks(usage: dict[str, Any] | None = USAGE) -> list[dict[str, Any]]:
    out = [chunk("Hel", role="assistant"), chunk("lo"), chunk(finish="stop")]
    if usage is not None:
        out.append(chunk(choices=False, usage=dict(usage)))
    return out


def sse(events: list[Any], *, done: bool = True, eol: str = "\n") -> bytes:
    lines = [f"data: {json.dumps(e)}{eol}{eol}" for e in events]
    if done:
        lines.append(f"data: [DONE]{eol}{eol}")
    return "".join(lines).encode()


def response(body: Any = None, *, headers: dict[str, str] = JSON, req: dict[str, Any] = REQ) -> Observed:
    raw = body if isinstance(body, bytes) else json.dumps(response_body() if body is None else body).encode()
    return Observed(req, 200, headers, raw, received_at=NOW, elapsed_s=1.0)


def stream(
    events: list[Any] | bytes | None = None,
    *,
    req: dict[str, Any] = UREQ,
    headers: dict[str, str] = SSE,
    done: bool = True,
) -> Observed:
    if not isinstance(events, bytes):
        events = sse(good_chunks() if events is None else events, done=done)
    return Observed(req, 200, headers, events, received_at=NOW)


ERR = {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": "x"}}


def error(body: Any = ERR, *, status: int = 400, headers: dict[str, str] = JSON, req: Any = REQ) -> Observed:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Observed(req, status, headers, raw)


def with_usage(**counts: Any) -> dict[str, Any]:
    return response_body(usage={**USAGE, **counts})


def chunks_with(*, extra: list[Any] | None = None, **counts: Any) -> list[Any]:
    return [*good_chunks(None), chunk(choices=False, usage={**USAGE, **counts}), *(extra or [])]


# invariant id -> (an exchange that keeps it, one that breaks it)
CASES: dict[str, tuple[Observed, Observed]] = {
    "response.content_type": (response(), response(headers={"content-type": "text/plain"})),
    "response.schema": (response(), response(response_body(object="chat.completion.chunk"))),
    "response.strict_spec": (
        response(),
        response(
            response_body(
                choices=[
                    {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
                ]
            )
        ),
    ),
    "response.usage_total": (response(), response(with_usage(total_tokens=8))),
    "response.estimated_cost": (response(), response(with_usage(estimated_cost=-1))),
    "response.created_recent": (response(), response(response_body(created=int(NOW) - 100_000))),
    "response.cap_respected": (
        response(),
        response(with_usage(completion_tokens=20, total_tokens=25)),
    ),
    "response.usage_counts_content": (response(), response(with_usage(completion_tokens=0, total_tokens=5))),
    "stream.content_type": (stream(), stream(headers={"content-type": "text/plain"})),
    "stream.done_sentinel": (stream(), stream(done=False)),
    "stream.nothing_after_done": (stream(), stream(sse(good_chunks()) + b"data: [DONE]\n\n")),
    "stream.valid_json": (stream(), stream(b"data: {not json}\n\n" + sse(good_chunks()))),
    "stream.chunk_schema": (
        stream(),
        stream([*good_chunks()[:1], chunk("x", created="1"), *good_chunks()[2:]]),
    ),
    "stream.same_id": (
        stream(),
        stream([chunk("a", role="assistant"), chunk("b", id="chatcmpl-2"), *good_chunks()[2:]]),
    ),
    "stream.same_model": (
        stream(),
        stream([chunk("a", role="assistant"), chunk("b", model="n"), *good_chunks()[2:]]),
    ),
    "stream.first_delta_role": (stream(), stream([chunk("a"), *good_chunks()[1:]])),
    "stream.later_role_not_empty": (
        stream(),
        stream([chunk("a", role="assistant"), chunk("b", role=""), *good_chunks()[2:]]),
    ),
    "stream.one_finish_reason": (
        stream(),
        stream([chunk("a", role="assistant"), chunk("b", finish="length"), *good_chunks()[2:]]),
    ),
    "stream.usage_chunk": (stream(), stream(good_chunks(None))),
    "stream.no_unasked_usage": (stream(good_chunks(None), req=SREQ), stream(req=SREQ)),
    "stream.error_event_last": (
        stream([chunk("a", role="assistant"), ERR], done=False),
        stream([chunk("a", role="assistant"), ERR, chunk("b")], done=False),
    ),
    "stream.framing": (stream(), stream(sse(good_chunks(), eol="\r\n"))),
    "stream.usage_total": (stream(), stream(chunks_with(total_tokens=8))),
    "stream.cap_respected": (stream(), stream(chunks_with(completion_tokens=20, total_tokens=25))),
    "stream.usage_counts_content": (stream(), stream(chunks_with(completion_tokens=0, total_tokens=5))),
    "stream.usage_covers_chunks": (stream(), stream(chunks_with(completion_tokens=1, total_tokens=6))),
    "stream.created_recent": (
        stream(),
        stream([chunk("a", role="assistant", created=7), *good_chunks()[1:]]),
    ),
    "errors.envelope": (error(), error({"detail": "nope"})),
    "errors.envelope_fields": (error(), error({"error": {"message": "bad"}})),
    "errors.code_string": (error(), error({"error": {**ERR["error"], "code": 400}})),
    "errors.no_internals": (
        error(),
        error(
            {
                "error": {
                    **ERR["error"],
                    "message": 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f',
                }
            }
        ),
    ),
    "stream.error_plain_json": (error(req=SREQ), error(req=SREQ, headers=SSE, status=500)),
}
CROSSING = {"crossing.id_unique", "crossing.prompt_tokens_stable"}  # judged with state, below


def checks(observed: Observed, profile: Profile = PROFILE, **kw: Any) -> set[str]:
    return {f.check for f in invariants.judge(observed, profile, **kw)}


def test_every_invariant_has_a_failing_and_a_passing_case() -> None:
    assert {inv.id for inv in invariants.registered()} == set(CASES) | CROSSING


@pytest.mark.parametrize("check", list(CASES))
def test_invariant_holds_on_the_faithful_case_and_breaks_on_the_broken_one(check: str) -> None:
    good, bad = CASES[check]
    judged = invariants.examine(good, PROFILE)
    assert check in judged.applied and judged.findings == () and judged.errors == ()
    broken = invariants.examine(bad, PROFILE)
    assert check in broken.failed and broken.errors == (), broken.findings
    finding = next(f for f in broken.findings if f.check == check)
    inv = next(i for i in invariants.registered() if i.id == check)
    assert finding.severity == inv.resolve_severity(PROFILE) and finding.clause == inv.clause
    assert finding.message and json.dumps(finding.evidence())


@pytest.mark.parametrize(
    "check", [c for c in CASES if c.startswith("stream.") and CASES[c][1].kind == "stream"]
)
def test_the_strict_reader_judges_like_the_fast_path(check: str) -> None:
    """The same broken stream framed with CRLF (strict reader) fails the same invariants, plus framing."""
    bad = CASES[check][1]
    crlf = Observed(bad.request, bad.status, bad.headers, bad.body.replace(b"\n", b"\r\n"), bad.received_at)
    assert checks(crlf) - {"stream.framing"} == checks(bad) - {"stream.framing"}


def test_findings_locate_the_first_offending_chunk() -> None:
    bad = CASES["stream.same_id"][1]
    (finding,) = [f for f in invariants.judge(bad, PROFILE) if f.check == "stream.same_id"]
    assert finding.event == 1 and bad.body[finding.offset :].startswith(b'data: {"id": "chatcmpl-2"')
    (schema,) = [f for f in invariants.judge(CASES["stream.chunk_schema"][1], PROFILE)]
    assert schema.pointer == "/created" and schema.event == 1


def _mutants(value: Any) -> list[Any]:
    """Every value with one node removed, or replaced by a value of each other JSON type."""
    out = []
    others: list[Any] = ["", "x", "stop", 0, 1, -1, 1.5, -0.5, True, None, [], {}]
    if isinstance(value, dict):
        for key in value:
            smaller = dict(value)
            del smaller[key]
            out.append(smaller)
            for sub in [*_mutants(value[key]), *others]:
                out.append({**value, key: sub})
    elif isinstance(value, list):
        for i in range(len(value)):
            for sub in [*_mutants(value[i]), *others]:
                out.append([*value[:i], sub, *value[i + 1 :]])
        out.append([])
    return out


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("chunk", chunk("a", role="assistant", usage=None)),
        ("chunk", chunk(choices=False, usage=dict(USAGE))),
        ("response", response_body()),
        ("response-strict", response_body()),
        ("error", ERR),
        ("error-strict", ERR),
    ],
)
def test_the_schema_cache_agrees_with_jsonschema_on_every_mutant(name: str, valid: Any) -> None:
    assert schemacache.problems(name, valid, PROFILE) == []
    mutants = _mutants(valid)
    assert len(mutants) > 50
    for mutant in mutants:
        want = bool(schemas.problems(name, mutant, PROFILE))
        assert bool(schemacache.problems(name, mutant, PROFILE)) == want, mutant
        assert bool(schemacache.problems(name, mutant, PROFILE)) == want, mutant  # now from the cache


def test_chunks_judged_once_per_stream_by_text_still_fail_alone() -> None:
    """Chunks that differ only in their content text share a verdict; any other difference does not."""
    valid = chunk("a", role="assistant")
    mutants = [m for m in _mutants(valid) if isinstance(m, dict)]
    texts_of = [
        json.dumps(valid, separators=(",", ":")),
        *(json.dumps(m, separators=(",", ":")) for m in mutants),
    ]
    found = dict(schemacache.failures("chunk", PROFILE, [valid, *mutants], texts_of))
    want = {n + 1 for n, m in enumerate(mutants) if schemas.problems("chunk", m, PROFILE)}
    assert set(found) == want and len(want) > 20
    escaped = {
        **valid,
        "choices": [{"index": 0, "delta": {"content": 'say \\"hi\\"'}, "finish_reason": "eos"}],
    }
    texts = [json.dumps(valid), json.dumps(escaped)]
    assert [n for n, _ in schemacache.failures("chunk", PROFILE, [valid, escaped], texts)] == [1]


def test_a_schema_using_keywords_a_skeleton_loses_is_never_cached() -> None:
    request = schemas.validator("request", PROFILE).schema
    assert schemacache._cacheable(request, PROFILE) is None  # pattern, maximum: always validated in full
    assert schemacache._cacheable(schemas.validator("chunk", PROFILE).schema, PROFILE) is not None


def test_legal_variants_never_fail() -> None:
    good = good_chunks()
    multiline = b"".join(
        b"data: " + json.dumps(c, indent=1).replace("\n", "\ndata: ").encode() + b"\n\n" for c in good
    )
    variants = {
        "crlf": sse(good, eol="\r\n"),
        "cr": sse(good, eol="\r"),
        "no space": sse(good).replace(b"data: ", b"data:"),
        "comments": b": keep-alive\n\n" + sse(good).replace(b"\n\ndata", b"\n\n: ping\ndata"),
        "multiline": multiline + b"data: [DONE]\n\n",
        "usage null": sse([{**c, "usage": None} if c["choices"] else c for c in good]),
        "extra keys": sse([{**c, "system_fingerprint": "fp", "x_extra": {"a": 1}} for c in good]),
        "role in every delta": sse(
            [chunk("Hel", role="assistant"), chunk("lo", role="assistant"), *good[2:]]
        ),
        "canonical model": sse([{**c, "model": "vendor/m-canonical"} for c in good]),
    }
    for name, body in variants.items():
        found = invariants.judge(stream(body), PROFILE)
        assert [f for f in found if f.severity != "INFO"] == [], (name, found)
    extra = response_body(system_fingerprint="fp", service_tier="default")
    assert invariants.judge(response(extra), PROFILE) == []


def test_an_error_event_mid_stream_is_a_legal_end() -> None:
    body = sse(
        [chunk("a", role="assistant"), {"error": {"message": "overloaded", "type": "server_error"}}],
        done=False,
    )
    found = checks(stream(body))
    assert found == set(), found  # no finish_reason, no usage chunk, no [DONE]: all legal after an error


def test_an_unstreamed_answer_to_a_stream_request_fails_only_the_content_type() -> None:
    assert checks(stream(json.dumps(response_body()).encode(), headers=JSON)) == {"stream.content_type"}


def test_usage_rules_follow_the_profile() -> None:
    no_usage_profile = PROFILE.with_overrides({"include_usage_supported": False, "estimated_cost": False})
    assert "stream.usage_chunk" not in invariants.examine(stream(good_chunks(None)), no_usage_profile).applied
    no_cost = response_body(usage={k: v for k, v in USAGE.items() if k != "estimated_cost"})
    assert checks(response(no_cost)) >= {"response.estimated_cost", "response.schema"}
    assert checks(response(no_cost), no_usage_profile) == set()
    lax = PROFILE.with_overrides({"strict_spec_severity": "INFO"})
    (strict,) = invariants.judge(CASES["response.strict_spec"][1], lax)
    assert strict.severity == "INFO"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": ' + b"[" * 100_000,
        b"\xff\xfe garbage",
        b"",
    ],
)
def test_hostile_bodies_are_findings_never_crashes(body: bytes) -> None:
    for observed in (
        response(body),
        stream(b"data: " + body + b"\n\ndata: [DONE]\n\n"),
        stream(body),
        error(body, status=503),
    ):
        judged = invariants.examine(observed, PROFILE)
        assert judged.errors == () and judged.findings


def test_a_request_body_that_is_not_an_object_is_judged_by_its_answer() -> None:
    assert checks(error(req=["not", "a", "request"])) == set()
    assert checks(response(req="text")) == set()
    assert checks(error({"detail": "no"}, req=None)) == {"errors.envelope"}


def test_statuses_that_are_neither_answers_nor_errors_are_not_judged() -> None:
    redirect = Observed(REQ, 302, {}, b"")
    assert invariants.examine(redirect, PROFILE) == invariants.Judgment((), ())


def test_a_rule_that_raises_is_a_harness_error_not_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(j: Any) -> None:
        raise KeyError("bug")

    bad = registry.Invariant("response.broken_rule", ("response",), "MUST", "response.shape", "", broken)
    monkeypatch.setitem(registry._REGISTRY, bad.id, bad)
    judged = invariants.examine(response(), PROFILE)
    assert judged.findings == () and judged.errors == (("response.broken_rule", "KeyError: 'bug'"),)
    tally = invariants.Tally()
    tally.add(judged)
    assert tally.to_dict()["response.broken_rule"]["errors"] == 1


def test_registration_refuses_duplicate_or_undotted_ids_and_bad_severities() -> None:
    for kwargs in (
        {"id": "response.schema", "kinds": ["response"], "severity": "MUST"},
        {"id": "noarea", "kinds": ["response"], "severity": "MUST"},
        {"id": "x.y", "kinds": ["answer"], "severity": "MUST"},
        {"id": "x.y", "kinds": ["response"], "severity": "MAYBE"},
    ):
        with pytest.raises(ValueError):
            invariants.invariant(clause="c", **kwargs)  # type: ignore[arg-type]


def test_describe_lists_every_invariant_with_its_severity_and_clause() -> None:
    rows = invariants.describe(PROFILE)
    assert [r["id"] for r in rows] == sorted(inv.id for inv in invariants.registered())
    assert all(r["severity"] in ("MUST", "SHOULD", "INFO") and r["clause"] and r["doc"] for r in rows)
    generic = {r["id"]: r["severity"] for r in invariants.describe()}
    assert generic["response.strict_spec"] == "profile" and generic["stream.same_id"] == "MUST"


# --- crossing ---------------------------------------------------------------------------------------


def _other_stream(**usage: Any) -> Observed:
    """An answer to another request (another image: another prompt)."""
    req = {**UREQ, "messages": [{"role": "user", "content": "another prompt"}]}
    chunks = [{**c, "id": "chatcmpl-2"} for c in good_chunks({**USAGE, **usage})]
    return stream(chunks, req=req)


def test_an_id_on_two_different_answers_is_caught_but_a_replayed_answer_is_legal() -> None:
    state = invariants.CrossState()
    assert checks(stream(), state=state) == set()
    assert checks(stream(), state=state) == set()  # a cache replaying the same answer
    assert checks(response(), state=state) == set()  # the same answer, unstreamed, same id: legal
    crossed = [{**c, "id": "chatcmpl-1"} for c in good_chunks()]
    crossed[1] = chunk("LO")
    assert checks(stream(crossed), state=state) == {"crossing.id_unique"}
    other = _other_stream()
    assert checks(other, state=state) == set()
    stolen = Observed(other.request, 200, SSE, other.body.replace(b"chatcmpl-2", b"chatcmpl-1"))
    (finding,) = invariants.judge(stolen, PROFILE, state)
    assert finding.check == "crossing.id_unique" and "another request" in finding.message


def test_prompt_tokens_must_not_change_for_the_same_prompt() -> None:
    state = invariants.CrossState()
    assert checks(stream(), state=state) == set()
    assert checks(response(), state=state) == set()  # stream = non-stream, other max_tokens: same key
    assert checks(_other_stream(prompt_tokens=9, total_tokens=11), state=state) == set()  # another prompt
    moved = stream(chunks_with(prompt_tokens=9, total_tokens=11))
    (finding,) = invariants.judge(moved, PROFILE, state)
    assert finding.check == "crossing.prompt_tokens_stable" and finding.expected == 5 and finding.got == 9
    keyed = Observed(
        UREQ, 200, SSE, moved.body.replace(b"chatcmpl-1", b"chatcmpl-7"), request_key="template-7"
    )
    assert checks(keyed, state=state) == set()  # a caller-given key names another prompt


def test_crossing_rules_need_state_and_the_state_is_bounded() -> None:
    assert not CROSSING & set(invariants.examine(stream(), PROFILE).applied)
    state = invariants.CrossState(max_entries=10)
    for i in range(50):
        req = {**UREQ, "messages": [{"role": "user", "content": f"prompt {i}"}]}
        invariants.examine(
            stream([{**c, "id": f"chatcmpl-{i}"} for c in good_chunks()], req=req), PROFILE, state
        )
    assert len(state.ids) <= 10 and len(state.prompt_tokens) <= 10 and "chatcmpl-49" in state.ids


# --- tally ------------------------------------------------------------------------------------------


def test_tally_counts_sampled_and_failed_bounds_examples_and_merges() -> None:
    a, b = invariants.Tally(max_examples=2), invariants.Tally(max_examples=2)
    bad = CASES["stream.same_id"][1]
    for _ in range(3):
        a.add(invariants.examine(bad, PROFILE))
        b.add(invariants.examine(stream(), PROFILE))
    b.add(invariants.examine(Observed(bad.request, 200, SSE, bad.body, request_id="req-9"), PROFILE))
    assert (
        a.to_dict()["stream.same_id"]["failed"] == 3 and len(a.to_dict()["stream.same_id"]["examples"]) == 2
    )
    merged = invariants.Tally.from_dict(json.loads(json.dumps(a.to_dict())), max_examples=2).merge(b)
    entry = merged.to_dict()["stream.same_id"]
    assert entry["sampled"] == 7 and entry["failed"] == 4 and len(entry["examples"]) == 2
    assert merged.failed == {"stream.same_id": 4}
    assert b.to_dict()["stream.same_id"]["examples"][0]["request_id"] == "req-9"
    assert set(entry) == {"sampled", "failed", "examples"}
    assert "stream.usage_covers_chunks" in merged.to_dict()  # sampled, never failed, still listed


# --- real bytes from the reference target ----------------------------------------------------------


def _observe(client: httpx.Client, t: RunningTarget, body: dict[str, Any]) -> Observed:
    headers = {"Authorization": f"Bearer {t.api_key}"}
    resp = client.post(f"{t.base_url}/chat/completions", json=body, headers=headers)
    return Observed(body, resp.status_code, dict(resp.headers), resp.content, received_at=time.time(),
                    elapsed_s=resp.elapsed.total_seconds())  # fmt: skip


USAGE_ON = {"include_usage": True}


def _chat(t: RunningTarget, text: str, **opts: Any) -> dict[str, Any]:
    return {"model": t.model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **opts}


def test_real_answers_streams_and_errors_keep_every_invariant(target: RunningTarget) -> None:
    state, tally = invariants.CrossState(), invariants.Tally()
    with httpx.Client(timeout=30) as client:
        bodies = [
            _chat(target, "Say hello."),
            _chat(target, "Say hello.", stream=True),
            _chat(target, "Say hello.", stream=True, stream_options=USAGE_ON),
            _chat(target, "Name three colours.", stream=True, stream_options=USAGE_ON),
            {**_chat(target, "Hi"), "model": "eyechart/no-such-model-0"},
            {**_chat(target, "Hi", stream=True), "messages": []},
        ]
        exchanges = [_observe(client, target, body) for body in bodies]
    assert [o.kind for o in exchanges] == ["response", "stream", "stream", "stream", "error", "error"]
    for observed in exchanges:
        judged = invariants.examine(observed, PROFILE, state)
        tally.add(judged)
        assert judged.findings == () and judged.errors == (), (observed.body[:300], judged.findings)
    sampled = tally.to_dict()
    assert sampled["stream.same_id"]["sampled"] == 3 and sampled["stream.usage_chunk"]["sampled"] == 2
    assert sampled["crossing.prompt_tokens_stable"]["sampled"] == 3 and not tally.failed

    # A target that put another stream's id or usage into a stream: the crossing rules name it.
    hello, colours = exchanges[2], exchanges[3]
    hello_id = json.loads(hello.body.split(b"\n\n")[0][6:])["id"]
    colours_id = json.loads(colours.body.split(b"\n\n")[0][6:])["id"]
    stolen_id = Observed(
        colours.request, 200, SSE, colours.body.replace(colours_id.encode(), hello_id.encode())
    )
    assert "crossing.id_unique" in checks(stolen_id, state=state)

    def usage_of(o: Observed) -> bytes:
        """The usage object's text in the last chunk before [DONE]."""
        return o.body.rsplit(b"\n\ndata: ", 2)[-2].split(b'"usage":')[1]

    stolen_usage = Observed(
        colours.request, 200, SSE, colours.body.replace(usage_of(colours), usage_of(hello))
    )
    assert "crossing.prompt_tokens_stable" in checks(stolen_usage, state=state)


def test_real_malformed_chunk_and_injected_errors_are_caught() -> None:
    with (
        start_target(args=["--speed", "20", "--faults", "malformed=1,seed=3"]) as t,
        httpx.Client(timeout=30) as c,
    ):
        broken = _observe(c, t, _chat(t, "Say hello.", stream=True))
    assert "stream.valid_json" in checks(broken)
    with start_target(args=["--speed", "20", "--faults", "error_rate=1"]) as t, httpx.Client(timeout=30) as c:
        failed = _observe(c, t, _chat(t, "Say hello.", stream=True))
    assert failed.status == 500 and checks(failed) == set()  # a 5xx with a proper envelope keeps them all


def test_examples_never_carry_the_request_body() -> None:
    secret_req = {**UREQ, "messages": [{"role": "user", "content": "sk-secret-value"}]}
    bad = Observed(secret_req, 200, SSE, CASES["stream.same_id"][1].body)
    tally = invariants.Tally()
    tally.add(invariants.examine(copy.deepcopy(bad), PROFILE, invariants.CrossState()))
    assert "sk-secret-value" not in json.dumps(tally.to_dict())
