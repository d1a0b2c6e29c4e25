"""The non-streamed response (conformance/CONTRACT.md, ``response.*``).

One plain vision request (``answer``) is judged by several checks; the finish-reason checks make their
own requests. Verdicts only where the contract is unambiguous: a model that never ends on its own is
a skip of ``response.finish_stop_natural``, not a failure.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from eyechart.conform.checks import check, expect, expect_schema, fail, skip
from eyechart.conform.reading import expect_invariant
from eyechart.conform.session import Session, first_choice, json_of

IMAGE = "png-rgb"
LONG_PROMPT = "Describe this image in great detail, at length, covering every part of it."
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


@pytest.fixture(scope="module")
def answer(api: Session) -> tuple[Any, Any, float, float]:
    """One deterministic vision request: (exchange, parsed body, time sent, time answered)."""
    sent = time.time()
    ex = api.chat(api.vision_body([IMAGE], "What is in this image?", temperature=0, seed=7, max_tokens=24))
    done = time.time()
    expect(
        ex.status == 200, "a valid vision request did not get 200", exchange=ex, expected=200, got=ex.status
    )
    return ex, json_of(ex), sent, done


def _usage(ex: Any, body: Any, api: Session) -> dict[str, Any]:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        if api.profile.usage_required:
            fail(
                "the response has no usage object",
                exchange=ex,
                expected="usage {...}",
                got=usage,
                pointer="/usage",
            )
        skip(f"no usage in the response (profile {api.profile.name} does not require it)")
    return usage


@check("response.content_type", severity="MUST", clause="response.content_type")
def test_content_type(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    expect_invariant(answer[0], "response.content_type", api.profile)


@check(
    "response.schema",
    severity="MUST",
    clause="response.shape",
)
def test_schema(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    ex, body, _, _ = answer
    expect_schema("response", body, ex, api.profile)


@check("response.created_recent", severity="SHOULD", clause="response.created")
def test_created_recent(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    expect_invariant(answer[0], "response.created_recent", api.profile)


@check(
    "response.usage_total",
    severity="MUST",
    clause="response.usage",
)
def test_usage_total(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    ex, body, _, _ = answer
    _usage(ex, body, api)  # no usage at all: a finding where the profile requires it, else a skip
    expect_invariant(ex, "response.usage_total", api.profile)


@check(
    "response.estimated_cost",
    severity=lambda p: "MUST" if p.estimated_cost else "INFO",
    clause="response.usage",
)
def test_estimated_cost(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    ex, body, _, _ = answer
    usage = _usage(ex, body, api)
    cost = usage.get("estimated_cost")
    if cost is None and not api.profile.estimated_cost:
        skip(f"no estimated_cost (profile {api.profile.name} does not expect it)")
    expect(
        isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0,
        "usage.estimated_cost is missing or not a non-negative number",
        exchange=ex,
        expected="a number ≥ 0",
        got=cost,
        pointer="/usage/estimated_cost",
    )


@check(
    "response.strict_spec",
    severity=lambda p: p.strict_spec_severity,
    clause="response.strict_spec",
)
def test_strict_spec(api: Session, answer: tuple[Any, Any, float, float]) -> None:
    ex, body, _, _ = answer
    expect_schema("response-strict", body, ex, api.profile)


@check("response.cap_respected", severity="MUST", clause="response.cap")
def test_cap_respected(api: Session) -> None:
    cap = 5
    ex = api.chat(api.vision_body([IMAGE], LONG_PROMPT, max_tokens=cap))
    expect(ex.status == 200, "a capped request did not get 200", exchange=ex, expected=200, got=ex.status)
    body = json_of(ex)
    got = _usage(ex, body, api).get("completion_tokens")
    expect(
        isinstance(got, int) and got <= cap,
        f"completion_tokens exceeds the cap of {cap}",
        exchange=ex,
        expected=f"≤ {cap}",
        got=got,
        pointer="/usage/completion_tokens",
    )


@check("response.finish_length", severity="MUST", clause="response.finish_reason")
def test_finish_length(api: Session) -> None:
    cap = 3
    ex = api.chat(api.vision_body([IMAGE], LONG_PROMPT, temperature=0, seed=7, max_tokens=cap))
    expect(ex.status == 200, "a capped request did not get 200", exchange=ex, expected=200, got=ex.status)
    body = json_of(ex)
    choice = first_choice(ex, body)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    produced = usage.get("completion_tokens")
    if isinstance(produced, int) and produced < cap:
        skip(f"the answer ended by itself after {produced} of {cap} tokens: the cap was never reached")
    expect(
        choice.get("finish_reason") == "length",
        'the cap was reached but finish_reason is not "length"',
        exchange=ex,
        expected="length",
        got=choice.get("finish_reason"),
        pointer="/choices/0/finish_reason",
    )


@check("response.finish_stop_natural", severity="MUST", clause="response.finish_reason")
def test_finish_stop_natural(api: Session) -> None:
    cap = 256
    ex = api.chat(
        api.vision_body(
            [IMAGE],
            "Name the main colour of this image in one word.",
            temperature=0,
            seed=7,
            max_tokens=cap,
        )
    )
    expect(ex.status == 200, "the request did not get 200", exchange=ex, expected=200, got=ex.status)
    body = json_of(ex)
    choice = first_choice(ex, body)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    produced = usage.get("completion_tokens")
    if not isinstance(produced, int) or produced >= cap:
        skip(f"the answer did not end by itself within {cap} tokens (or usage is missing)")
    expect(
        choice.get("finish_reason") in ("stop", "tool_calls", "content_filter", "function_call"),
        'the answer ended before the cap but finish_reason is not "stop"',
        exchange=ex,
        expected="stop",
        got=choice.get("finish_reason"),
        pointer="/choices/0/finish_reason",
    )
    expect(
        choice.get("finish_reason") in FINISH_REASONS,
        "finish_reason is not a known value",
        exchange=ex,
        expected=list(FINISH_REASONS),
        got=choice.get("finish_reason"),
    )


@check("response.finish_stop_string", severity="MUST", clause="response.finish_reason")
def test_finish_stop_string(api: Session) -> None:
    base = api.vision_body([IMAGE], LONG_PROMPT, temperature=0, seed=7, max_tokens=48)
    first = api.chat(base)
    expect(first.status == 200, "the request did not get 200", exchange=first, expected=200, got=first.status)
    text = first_choice(first, json_of(first)).get("message", {}).get("content") or ""
    words = [w for w in text.split() if len(w) >= 4 and w.isalpha()]
    if len(words) < 2:
        skip("the answer has too few words to pick a stop string from")
    stop = words[len(words) // 2]
    ex = api.chat({**base, "stop": [stop]})
    expect(
        ex.status == 200,
        "a request with a stop string did not get 200",
        exchange=ex,
        expected=200,
        got=ex.status,
    )
    choice = first_choice(ex, json_of(ex))
    content = (choice.get("message") or {}).get("content") or ""
    if choice.get("finish_reason") != "stop" and stop not in content and content != text:
        skip(f"the answer changed between two deterministic requests; {stop!r} was never produced")
    expect(
        choice.get("finish_reason") == "stop",
        f'the stop string {stop!r} was hit but finish_reason is not "stop"',
        exchange=ex,
        expected="stop",
        got=choice.get("finish_reason"),
        pointer="/choices/0/finish_reason",
    )
    expect(
        stop not in content,
        f"the content still contains the stop string {stop!r}",
        exchange=ex,
        expected=f"content ending before {stop!r}",
        got=content[-200:],
        pointer="/choices/0/message/content",
    )
