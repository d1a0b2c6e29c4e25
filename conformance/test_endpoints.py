"""Endpoints and auth (conformance/CONTRACT.md, ``endpoints.*``, ``models.*``, ``auth.*``).

``{base}`` is what an OpenAI SDK takes as ``base_url``. The model list is MUST where the profile says
(``models_endpoint``); auth checks need a key (without ``--api-key`` the target is taken to run open
and they are skipped with that reason, never passed). Auth is a deployment fact: with
``--set auth_required=false`` (a self-hosted server started without a key) the auth checks still run
but are INFO, and a request the open target answers is recorded as "the target runs without auth".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eyechart.conform.checks import Severity, check, expect, expect_schema, fail, skip
from eyechart.conform.session import Session, json_of, media_type
from eyechart.profiles import Profile

WRONG_KEY = "eyechart-wrong-key-0000"


@pytest.fixture(scope="module")
def models_list(api: Session) -> tuple[Any, Any]:
    ex = api.models()
    return ex, (json_of(ex, "GET /models") if ex.status == 200 else None)


def _needs_key(api: Session) -> None:
    if not api.api_key:
        skip("no --api-key given: the target is taken to run without auth")


def _auth(severity: Severity) -> Callable[[Profile], Severity]:
    """The severity of an auth check: as given, INFO when the profile says the target runs open."""
    return lambda p: severity if p.auth_required else "INFO"


def _expect_401_with_error(api: Session, ex: Any, what: str) -> None:
    __tracebackhide__ = True
    if not api.profile.auth_required and ex.status != 401:
        fail(
            f"the target runs without auth: {what} got {ex.status} (profile: auth_required = false)",
            exchange=ex,
            expected="401 (when auth is required)",
            got=ex.status,
        )
    expect(ex.status == 401, f"{what}: expected 401", exchange=ex, expected=401, got=ex.status)
    body = json_of(ex, f"the 401 body of {what}")
    expect(
        isinstance(body, dict)
        and isinstance(body.get("error"), dict)
        and isinstance(body["error"].get("message"), str),
        f"{what}: the 401 has no error body with a message",
        exchange=ex,
        expected='{"error": {"message": ...}}',
        got=body,
    )


@check(
    "models.list",
    severity=lambda p: p.models_endpoint,
    clause="models.list",
)
def test_models_list(api: Session, models_list: tuple[Any, Any]) -> None:
    ex, body = models_list
    expect(ex.status == 200, "GET /models did not answer 200", exchange=ex, expected=200, got=ex.status)
    expect(
        media_type(ex) == "application/json",
        "GET /models is not application/json",
        exchange=ex,
        expected="application/json",
        got=media_type(ex) or "(no Content-Type)",
    )
    expect_schema("models", body, ex, api.profile)


@check("models.lists_model", severity="SHOULD", clause="models.list")
def test_models_lists_model(api: Session, models_list: tuple[Any, Any]) -> None:
    ex, body = models_list
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        skip("GET /models gives no model list (see models.list)")
    ids = [m.get("id") for m in body["data"] if isinstance(m, dict)]
    expect(
        api.model in ids,
        f"the model under test {api.model!r} is not listed",
        exchange=ex,
        expected=api.model,
        got=ids[:20],
    )


@check(
    "endpoints.chat_completions",
    severity="MUST",
    clause="endpoints.base",
)
def test_chat_completions(api: Session) -> None:
    ex = api.chat(api.vision_body())
    expect(
        ex.status == 200, "a valid vision request did not get 200", exchange=ex, expected=200, got=ex.status
    )


@check(
    "endpoints.other_route_style",
    severity="INFO",
    clause="endpoints.base",
)
def test_other_route_style(api: Session) -> None:
    base = api.base_url
    if base.endswith("/v1/openai"):
        other = base.removesuffix("/openai")
    elif base.endswith("/v1"):
        other = base + "/openai"
    else:
        skip(f"the base URL {base} is neither …/v1 nor …/v1/openai")
    ex = api.request("GET", other + "/models")
    expect(
        ex.status == 200,
        f"the other route style {other} is not served",
        exchange=ex,
        expected=200,
        got=ex.status,
    )


@check("auth.missing_key", severity=_auth("MUST"), clause="auth.key")
def test_missing_key(api: Session) -> None:
    _needs_key(api)
    _expect_401_with_error(api, api.chat(api.vision_body(), auth=False), "a chat request without a key")


@check("auth.wrong_key", severity=_auth("MUST"), clause="auth.key")
def test_wrong_key(api: Session) -> None:
    _needs_key(api)
    _expect_401_with_error(
        api, api.chat(api.vision_body(), auth=WRONG_KEY), "a chat request with a wrong key"
    )


@check(
    "auth.stream_plain_json",
    severity=_auth("MUST"),
    clause="auth.stream",
)
def test_stream_unauthorised_is_plain_json(api: Session) -> None:
    _needs_key(api)
    ex = api.chat(api.vision_body(stream=True), auth=WRONG_KEY)
    if not api.profile.auth_required:
        _expect_401_with_error(api, ex, "a streamed request with a wrong key")
    expect(
        ex.status == 401,
        "a streamed request with a wrong key: expected 401",
        exchange=ex,
        expected=401,
        got=ex.status,
    )
    expect(
        media_type(ex) == "application/json",
        "the 401 of a streamed request is not plain JSON",
        exchange=ex,
        expected="Content-Type: application/json",
        got=media_type(ex) or "(no Content-Type)",
    )
    head = (ex.body or b"").lstrip()[:5]
    expect(
        not head.startswith((b"data:", b":", b"event")),
        "the 401 body is an event stream",
        exchange=ex,
        expected="a JSON error object",
        got=head.decode("utf-8", "replace"),
    )
    _expect_401_with_error(api, ex, "a streamed request with a wrong key")


@check(
    "auth.models_key",
    severity=_auth("SHOULD"),
    clause="auth.key",
)
def test_models_without_key(api: Session) -> None:
    _needs_key(api)
    _expect_401_with_error(api, api.models(auth=False), "GET /models without a key")
