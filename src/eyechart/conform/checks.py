"""Checks are data: a stable id, a severity, the contract clause, and on failure the evidence.

A check is a pytest test function in ``conformance/`` decorated with :func:`check`::

    @check("auth.missing_key", severity="MUST", clause="auth.key_required")
    def test_missing_key(api):
        ex = api.chat(api.vision_body(), auth=False)
        expect(ex.status == 401, "a request without a key must get 401", exchange=ex,
               expected=401, got=ex.status)

``clause`` is the stable id of the clause of ``conformance/CONTRACT.md`` the check enforces.
Inside a check, :func:`fail`, :func:`expect` and :func:`expect_schema` raise :class:`CheckFailed`,
which carries what was expected, what came, the JSON pointer of a schema error and the exchange; the
plugin turns it into a finding with a curl reproducer. :func:`skip` records a reason, never a pass.
A legal variant of the contract is never a failure: when in doubt, a check passes or uses INFO.

The severity can depend on the profile (``severity=lambda p: p.models_endpoint``); it is resolved once
per run. Parametrized checks may put parameter names in the id (``"images.format_refused.{fmt}"``);
otherwise the pytest parameter id is appended in brackets, so every reported id is unique and stable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

from eyechart.conform.results import CheckResult as CheckResult  # re-exported: the verdict of a check
from eyechart.conform.results import Status as Status
from eyechart.conform.spec import MARK as MARK
from eyechart.conform.spec import CheckSpec as CheckSpec
from eyechart.conform.spec import SeveritySpec
from eyechart.profiles import Profile
from eyechart.severity import SEVERITIES as SEVERITIES
from eyechart.severity import Severity as Severity
from eyechart.wire import schemas
from eyechart.wire.build import HarnessBug as HarnessBug  # re-exported: cases catch it from here
from eyechart.wire.exchange import Exchange

F = TypeVar("F", bound=Callable[..., Any])


def check(id: str, *, severity: SeveritySpec, clause: str) -> Callable[[F], F]:
    """Mark a pytest test function as the conformance check ``id`` (dotted: ``area.name``)."""
    if "." not in id or id != id.strip():
        raise ValueError(f"check id {id!r} must be dotted like 'area.name'")
    if not callable(severity) and severity not in SEVERITIES:
        raise ValueError(f"check {id}: severity {severity!r} is not one of {SEVERITIES}")
    spec = CheckSpec(id=id, severity=severity, clause=clause)

    def decorate(fn: F) -> F:
        marked: F = getattr(pytest.mark, MARK)(spec)(fn)
        return marked

    return decorate


class CheckFailed(Exception):
    """A contract violation found by a check, with the evidence to act on it."""

    def __init__(
        self,
        message: str,
        *,
        exchange: Exchange | None = None,
        expected: Any = None,
        got: Any = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange
        self.expected = expected
        self.got = got
        self.pointer = pointer


def fail(
    message: str,
    *,
    exchange: Exchange | None = None,
    expected: Any = None,
    got: Any = None,
    pointer: str | None = None,
) -> NoReturn:
    """End the current check as failed (its severity decides what that means for the run)."""
    __tracebackhide__ = True
    raise CheckFailed(message, exchange=exchange, expected=expected, got=got, pointer=pointer)


def expect(condition: object, message: str, **evidence: Any) -> None:
    """``fail(message, **evidence)`` unless ``condition``; evidence: exchange, expected, got, pointer."""
    __tracebackhide__ = True
    if not condition:
        fail(message, **evidence)


def expect_schema(name: str, instance: Any, exchange: Exchange | None, profile: Profile) -> None:
    """Fail with the first schema problem (JSON pointer in the evidence) if ``instance`` breaks ``name``."""
    __tracebackhide__ = True
    problems = schemas.problems(name, instance, profile)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fail(
            f"{name} schema: {first}{more}",
            exchange=exchange,
            expected=f"a body valid against the {name} schema",
            got=str(first),
            pointer=first.pointer,
        )


def skip(reason: str) -> NoReturn:
    """Skip the current check with a reason; the report shows the reason, never a pass."""
    __tracebackhide__ = True
    pytest.skip(reason)
