"""Errors (conformance/CONTRACT.md, ``errors.*``).

Each client mistake is sent once (``mistakes`` caches the exchanges) and judged by several checks:
4xx never 5xx with an ``error`` object (MUST), the exact status the contract names (SHOULD, since a
422 is still a client error), and, over all of them, the full envelope, a string ``code`` and no
stack traces or internal paths (SHOULD).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from eyechart.conform.checks import check, expect, expect_schema, fail, skip
from eyechart.conform.session import Session, expect_refusal, json_of
from eyechart.images import fixtures
from eyechart.invariants.errors import TRACE_PATTERNS

# case -> (what it is, the body, the statuses the contract names)
Body = Callable[[Session], Any]
CASES: dict[str, tuple[str, Body, tuple[int, ...]]] = {
    "unknown_model": (
        "an unknown model",
        lambda a: {**a.text_body(), "model": "eyechart/no-such-model-0"},
        (404, 400),
    ),
    "empty_messages": ("an empty messages list", lambda a: {**a.text_body(), "messages": []}, (400,)),
    "missing_messages": (
        "a request without messages",
        lambda a: {"model": a.model, a.profile.max_tokens_param: 8},  # a lenient server must not run long
        (400,),
    ),
    "empty_content": (
        "an empty content list",
        lambda a: a.body([{"role": "user", "content": []}]),
        (400,),
    ),
    "image_url_string": (
        "image_url given as a bare string",
        lambda a: a.body(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "image_url", "image_url": a.data_uri("png-rgb")},
                    ],
                }
            ]
        ),
        (400,),
    ),
    "body_not_object": ("a JSON body that is not an object", lambda a: ["not", "a", "request"], (400,)),
}


@pytest.fixture(scope="module")
def mistakes(api: Session) -> dict[str, Any]:
    """Each case's exchange, sent on first use."""
    return {}


def _send(api: Session, mistakes: dict[str, Any], case: str) -> Any:
    if case not in mistakes:
        _, make, _ = CASES[case]
        mistakes[case] = api.chat(make(api), valid=False)
    return mistakes[case]


def _all(api: Session, mistakes: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(case, _send(api, mistakes, case)) for case in CASES]


@pytest.mark.parametrize("case", list(CASES))
@check(
    "errors.client_mistake.{case}",
    severity="MUST",
    clause="errors.client_mistakes",
)
def test_client_mistake(api: Session, mistakes: dict[str, Any], case: str) -> None:
    what, _, _ = CASES[case]
    expect_refusal(_send(api, mistakes, case), what, api.profile)


@pytest.mark.parametrize("case", list(CASES))
@check(
    "errors.status.{case}",
    severity="SHOULD",
    clause="errors.client_mistakes",
)
def test_exact_status(api: Session, mistakes: dict[str, Any], case: str) -> None:
    what, _, statuses = CASES[case]
    ex = _send(api, mistakes, case)
    if ex.status is None or not 400 <= ex.status < 500:
        skip(f"not a 4xx (see errors.client_mistake.{case})")
    expect(
        ex.status in statuses,
        f"{what} got {ex.status}",
        exchange=ex,
        expected=" or ".join(map(str, statuses)),
        got=ex.status,
    )


@check(
    "errors.envelope_fields",
    severity="SHOULD",
    clause="errors.envelope",
)
def test_envelope_fields(api: Session, mistakes: dict[str, Any]) -> None:
    judged = 0
    for _case, ex in _all(api, mistakes):
        if ex.status is None or ex.status < 400:
            continue
        try:
            body = json_of(ex)
        except Exception:
            continue  # a non-JSON error body is errors.client_mistake's finding
        judged += 1
        expect_schema("error-strict", body, ex, api.profile)
    if not judged:
        skip("no error response with a JSON body to judge")


@check(
    "errors.code_string",
    severity="SHOULD",
    clause="errors.envelope",
)
def test_code_string(api: Session, mistakes: dict[str, Any]) -> None:
    for _case, ex in _all(api, mistakes):
        try:
            body = json_of(ex)
        except Exception:
            continue
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and "code" in err:
            code = err["code"]
            expect(
                code is None or isinstance(code, str),
                "error.code is not a string",
                exchange=ex,
                expected="a string or null",
                got=code,
                pointer="/error/code",
            )


@check("errors.no_internals", severity="SHOULD", clause="errors.no_internals")
def test_no_internals(api: Session, mistakes: dict[str, Any]) -> None:
    for _case, ex in _all(api, mistakes):
        text = (ex.body or b"")[:65536].decode("utf-8", "replace")
        for pattern in TRACE_PATTERNS:
            found = pattern.search(text)
            if found:
                fail(
                    "an error response shows a stack trace or an internal path",
                    exchange=ex,
                    expected="a message for the client",
                    got=found.group(0)[:200],
                )


# ---------------------------------------------------------------------------------------------- content parts

PARTS: dict[str, tuple[str, dict[str, Any]]] = {
    "no_image_url": ("an image_url part without its image_url object", {"type": "image_url"}),
    "unknown_type": (
        "a content part of an unknown type",
        {"type": "eyechart_unknown", "eyechart_unknown": {"data": "x"}},
    ),
}


@pytest.mark.parametrize("case", list(PARTS))
@check("errors.content_part.{case}", severity="MUST", clause="errors.content_parts")
def test_content_part(api: Session, case: str) -> None:
    what, part = PARTS[case]
    body = api.body(
        [{"role": "user", "content": [{"type": "text", "text": "Describe it."}, part]}], max_tokens=8
    )
    expect_refusal(
        api.chat(body, valid=False),
        what,
        api.profile,
        if_200="got 200: the part was silently dropped instead of refused",
    )


# ---------------------------------------------------------------------------------------------- image URLs


@pytest.fixture(scope="module")
def local_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PNG on this host: a target running here that reads local files answers about it."""
    path = tmp_path_factory.mktemp("local-image") / "eyechart-local.png"
    path.write_bytes(fixtures.get("png-rgb").data())
    return path


def _on_this_host(api: Session) -> bool:
    host = urlsplit(api.base_url).hostname or ""
    try:
        return api.embedded or host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _not_a_url(form: str, path: Path) -> str:
    if form == "bare_path":
        return str(path)
    if form == "file_url":
        return path.as_uri()
    return base64.b64encode(path.read_bytes()).decode()  # raw_base64


@pytest.mark.parametrize("form", ["bare_path", "raw_base64", "file_url"])
@check("errors.image_url.{form}", severity="MUST", clause="errors.image_url")
def test_image_url_not_a_url(api: Session, form: str, local_image: Path) -> None:
    url = _not_a_url(form, local_image)
    what = f"an image url that is {form.replace('_', ' ')} ({url[:60]})"
    part = {"type": "image_url", "image_url": {"url": url}}
    body = api.body(
        [{"role": "user", "content": [{"type": "text", "text": "Describe it."}, part]}], max_tokens=8
    )
    ex = api.chat(body, valid=False)
    if ex.status == 200:
        if form == "raw_base64":
            why = "it decoded raw base64 as an image, where a data: URI is required"
        elif _on_this_host(api):
            why = f"it read the local file {local_image} (the target runs on this host) and answered about it"
        else:
            why = "a local file read cannot be proven for a remote target, but the URL was not refused"
        fail(f"{what} got 200: {why}", exchange=ex, expected="400 with an error body", got=200)
    expect_refusal(ex, what, api.profile)
