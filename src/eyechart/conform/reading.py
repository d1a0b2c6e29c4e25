"""Reading a response inside a check: each helper returns what was asked for, or ends the check with a
finding that points at the exchange (and the JSON pointer) it is about."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from eyechart import invariants
from eyechart.conform.checks import CheckFailed, expect, expect_schema, fail, skip
from eyechart.conform.printable import decoded
from eyechart.profiles import Profile
from eyechart.wire.exchange import Exchange


def header(ex: Exchange, name: str) -> str | None:
    """A response header, case-insensitively (None when absent)."""
    return ex.response_headers.get(name.lower())


def media_type(ex: Exchange) -> str:
    """The response's media type without parameters, lower case (``application/json``)."""
    return (header(ex, "content-type") or "").split(";", 1)[0].strip().lower()


def json_of(ex: Exchange, what: str = "the response body") -> Any:
    """The body parsed as JSON, or a :class:`CheckFailed` saying what came instead."""
    if ex.json_error is None:
        return ex.json
    head = decoded(ex.body[:120])
    raise CheckFailed(
        f"{what} is not JSON ({ex.json_error})",
        exchange=ex,
        expected="a JSON document",
        got=head or "(empty body)",
    )


def first_choice(ex: Exchange, body: Any, what: str = "the response") -> dict[str, Any]:
    """``choices[0]`` of a chat completion body, or a finding pointing at ``/choices``."""
    __tracebackhide__ = True
    choices = body.get("choices") if isinstance(body, dict) else None
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        fail(f"{what} has no choices[0]", exchange=ex, pointer="/choices", got=choices)
    return choices[0]


def prompt_tokens(ex: Exchange, profile: Profile, what: str) -> int:
    """``usage.prompt_tokens`` of a response: a finding when the profile requires usage, else a skip
    (a check comparing token counts cannot judge a server that does not report them)."""
    __tracebackhide__ = True
    body = json_of(ex)
    usage = body.get("usage") if isinstance(body, dict) else None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        if profile.usage_required:
            fail(
                f"{what}: no integer usage.prompt_tokens",
                exchange=ex,
                pointer="/usage/prompt_tokens",
                got=value,
            )
        skip(f"no usage.prompt_tokens (profile {profile.name} does not require usage)")
    return value


def expect_refusal(
    ex: Exchange,
    what: str,
    profile: Profile,
    *,
    statuses: Collection[int] | None = None,
    if_200: str | None = None,
) -> Any:
    """The refusal the contract asks for: a 4xx (or one of ``statuses``) whose body is an error object
    valid against the ``error`` schema; returns the parsed body. ``if_200``: the message for a 200
    (an answer about something the server should have refused), e.g. "got 200 instead of a 4xx refusal"."""
    __tracebackhide__ = True
    if ex.status == 200 and if_200:
        fail(f"{what} {if_200}", exchange=ex, expected="4xx with an error body", got=200)
    got = ex.status if ex.status is not None else ex.error
    if statuses:
        listed = " or ".join(str(s) for s in statuses)
        expect(
            ex.status in statuses,
            f"{what} was not refused with {listed}",
            exchange=ex,
            expected=listed,
            got=got,
        )
    else:
        expect(
            ex.status is not None and 400 <= ex.status < 500,
            f"{what} did not get a 4xx",
            exchange=ex,
            expected="4xx",
            got=got,
        )
    body = json_of(ex, f"the error body for {what}")
    expect_schema("error", body, ex, profile)
    return body


def expect_invariant(ex: Exchange, check_id: str, profile: Profile) -> None:
    """Judge ``ex`` by the registry's rule ``check_id`` (:mod:`eyechart.invariants`), so a check and the
    registry run on every exchange share one implementation: a finding ends the check, a rule that
    does not apply skips it."""
    __tracebackhide__ = True
    try:
        request = json.loads(ex.request_body) if ex.request_body else None
    except ValueError:
        request = None
    observed = invariants.Observed(
        request=request,
        status=ex.status if ex.status is not None else 0,
        headers=ex.response_headers,
        body=ex.body,
        received_at=time.time(),
        elapsed_s=ex.elapsed_s,
    )
    judgment = invariants.examine(observed, profile)
    for finding in judgment.findings:
        if finding.check == check_id:
            fail(
                finding.message,
                exchange=ex,
                expected=finding.expected,
                got=finding.got,
                pointer=finding.pointer,
            )
    if check_id not in judgment.applied:
        skip(f"{check_id} does not apply to this answer")
