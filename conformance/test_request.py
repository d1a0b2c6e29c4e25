"""Requests (conformance/CONTRACT.md, ``request.*``): the forms a server must accept.

Every body here passes the harness's own request schema before it is sent (``request.harness_validates``
proves that a malformed one never leaves the harness), so a refusal is the server's, not ours.
"""

from __future__ import annotations

from typing import Any

import pytest

from eyechart.conform.checks import HarnessBug, check, expect, fail, skip
from eyechart.conform.session import Session, json_of

IMAGE = "png-rgb"


def _accepted(api: Session, body: dict[str, Any], what: str) -> Any:
    ex = api.chat(body)
    expect(ex.status == 200, f"{what} was refused", exchange=ex, expected=200, got=ex.status)
    return ex


@check(
    "request.harness_validates",
    severity="MUST",
    clause="request.validated",
)
def test_harness_validates_its_requests(api: Session) -> None:
    malformed = [
        {"model": api.model, "messages": []},
        {
            "model": api.model,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
        },
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": api.model, "messages": [{"role": "system", "content": [api.image_part(IMAGE)]}]},
    ]
    for body in malformed:
        with pytest.raises(HarnessBug):
            api.chat(body)
        with pytest.raises(HarnessBug):
            api.stream(body)
    if api.check_exchanges():
        fail("a request the schema rejects was sent anyway", got=len(api.check_exchanges()))


@check("request.content_string", severity="MUST", clause="request.content")
def test_content_string(api: Session) -> None:
    _accepted(api, api.text_body("Say hello in three words."), "a user message with string content")


@check(
    "request.content_text_parts",
    severity="MUST",
    clause="request.content",
)
def test_content_text_parts(api: Session) -> None:
    body = api.body([{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}])
    _accepted(api, body, "a user message with a text part")


@check(
    "request.content_image_parts",
    severity="MUST",
    clause="request.content",
)
def test_content_image_parts(api: Session) -> None:
    _accepted(api, api.vision_body([IMAGE], "What is in this image?"), "a text + image_url request")


@check("request.image_only", severity="SHOULD", clause="request.content")
def test_image_only(api: Session) -> None:
    body = api.body([{"role": "user", "content": [api.image_part(IMAGE)]}])
    _accepted(api, body, "a user message with only an image part")


@check("request.role_system", severity="MUST", clause="request.messages")
def test_role_system(api: Session) -> None:
    _accepted(api, api.vision_body([IMAGE], system="You are a terse assistant."), "a system + user request")


@check(
    "request.role_system_parts",
    severity="SHOULD",
    clause="request.content",
)
def test_role_system_parts(api: Session) -> None:
    body = api.vision_body([IMAGE])
    body["messages"].insert(0, {"role": "system", "content": [{"type": "text", "text": "Be terse."}]})
    _accepted(api, body, "a system message with text parts")


@check("request.multi_turn", severity="MUST", clause="request.messages")
def test_multi_turn(api: Session) -> None:
    first = api.vision_body([IMAGE], "What is in this image?")["messages"][0]
    body = api.body(
        [
            first,
            {"role": "assistant", "content": "An image."},
            {"role": "user", "content": "Say it in two words."},
        ]
    )
    _accepted(api, body, "a multi-turn conversation")


@check("request.assistant_parts", severity="SHOULD", clause="request.content")
def test_assistant_parts(api: Session) -> None:
    body = api.body(
        [
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
            {"role": "user", "content": "Say goodbye."},
        ]
    )
    _accepted(api, body, "an assistant turn with parts content")


@check(
    "request.assistant_empty",
    severity="SHOULD",
    clause="request.content",
)
def test_assistant_empty(api: Session) -> None:
    body = api.body(
        [
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Say goodbye."},
        ]
    )
    _accepted(api, body, "an assistant turn with empty content")


@check("request.profile_roles", severity="MUST", clause="request.messages")
def test_profile_roles(api: Session) -> None:
    extra = [r for r in api.profile.roles if r in ("developer",)]
    if not extra:
        skip(f"profile {api.profile.name} lists no extra text role (roles: {', '.join(api.profile.roles)})")
    for role in extra:
        body = api.vision_body([IMAGE])
        body["messages"].insert(0, {"role": role, "content": "Be terse."})
        _accepted(api, body, f"a {role} message")


@check("request.option_max_tokens", severity="MUST", clause="request.token_cap")
def test_option_max_tokens(api: Session) -> None:
    _accepted(api, api.vision_body([IMAGE], max_tokens=8), api.profile.max_tokens_param)


@check("request.option_other_cap", severity="INFO", clause="request.token_cap")
def test_option_other_cap(api: Session) -> None:
    other = "max_completion_tokens" if api.profile.max_tokens_param == "max_tokens" else "max_tokens"
    body = api.vision_body([IMAGE])
    body.pop(api.profile.max_tokens_param, None)
    body[other] = 8
    _accepted(api, body, other)


@pytest.mark.parametrize(
    "option",
    [
        pytest.param({"temperature": 0}, id="temperature_0"),
        pytest.param({"temperature": 1.3}, id="temperature_1_3"),
        pytest.param({"top_p": 0.9}, id="top_p"),
        pytest.param({"seed": 1234, "temperature": 0}, id="seed"),
        pytest.param({"stop": "\n\n"}, id="stop_string"),
        pytest.param({"stop": ["###", "END", "\n\n\n", "Q:"]}, id="stop_list"),
        pytest.param({"stream": False}, id="stream_false"),
    ],
)
@check(
    "request.option",
    severity="MUST",
    clause="request.options",
)
def test_options(api: Session, option: dict[str, Any]) -> None:
    body = api.vision_body([IMAGE])
    body.update(option)  # as given: vision_body(stream=False) would leave "stream" out of the body
    _accepted(api, body, f"the option {option}")


@check("request.option_n", severity="MUST", clause="request.n")
def test_option_n(api: Session) -> None:
    if not api.profile.n_supported:
        skip(f"profile {api.profile.name} does not support n > 1")
    ex = _accepted(api, api.vision_body([IMAGE], n=2, max_tokens=8), "n=2")
    choices = json_of(ex).get("choices")
    expect(
        isinstance(choices, list) and len(choices) == 2,
        "n=2 did not give 2 choices",
        exchange=ex,
        expected=2,
        got=len(choices) if isinstance(choices, list) else choices,
    )


@check("request.extra_keys", severity="SHOULD", clause="request.extra_keys")
def test_extra_keys(api: Session) -> None:
    body = api.vision_body([IMAGE], eyechart_probe="ignored")
    body["messages"][0]["eyechart_note"] = "ignored"
    _accepted(api, body, "a request with unknown extra keys")


@check("request.max_completion_tokens_honoured", severity="MUST", clause="request.token_cap")
def test_max_completion_tokens_honoured(api: Session) -> None:
    cap = 3
    body = api.vision_body([IMAGE], "Describe this image in great detail, at length.", max_tokens=None)
    body["max_completion_tokens"] = cap
    ex = api.chat(body)
    if ex.status != 200:
        skip(f"max_completion_tokens is not accepted (status {ex.status}; see request.option_other_cap)")
    usage = json_of(ex).get("usage")
    got = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(got, int) or isinstance(got, bool):
        skip("no usage.completion_tokens to judge the cap by")
    expect(
        got <= cap,
        f"max_completion_tokens {cap} was accepted but not honoured",
        exchange=ex,
        expected=f"completion_tokens ≤ {cap}",
        got=got,
        pointer="/usage/completion_tokens",
    )
