"""Checks are data: a stable id, a severity, the contract clause, and on failure the evidence.

A check is a pytest test function in ``conformance/`` decorated with :func:`check`::

    @check("auth.missing_key", severity="MUST", clause="1. Missing or wrong key: 401 with an error body")
    def test_missing_key(api):
        ex = api.chat(api.vision_body(), auth=False)
        expect(ex.status == 401, "a request without a key must get 401", exchange=ex,
               expected=401, got=ex.status)

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import pytest

from eyechart.profiles import Profile
from eyechart.severity import SEVERITIES, Severity
from eyechart.wire.build import HarnessBug as HarnessBug  # re-exported: cases catch it from here

if TYPE_CHECKING:
    from eyechart.wire.exchange import Exchange

SeveritySpec = Severity | Callable[[Profile], Severity]
Status = Literal["pass", "fail", "warn", "skip", "error"]
MARK = "eyechart_check"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CheckSpec:
    """What a check is, independent of any run: its id template, severity rule and clause."""

    id: str
    severity: SeveritySpec
    clause: str

    def resolve_severity(self, profile: Profile) -> Severity:
        sev = self.severity(profile) if callable(self.severity) else self.severity
        if sev not in SEVERITIES:
            raise ValueError(f"check {self.id}: severity {sev!r} is not one of {SEVERITIES}")
        return sev

    def resolve_id(self, params: dict[str, Any], param_id: str | None) -> str:
        """The reported id: placeholders filled from the parameters, else ``id[param-id]``."""
        if "{" in self.id:
            try:
                return self.id.format(**params)
            except (KeyError, IndexError, ValueError):
                pass
        return f"{self.id}[{param_id}]" if param_id else self.id


def check(id: str, *, severity: SeveritySpec, clause: str) -> Callable[[F], F]:
    """Mark a pytest test function as the conformance check ``id`` (dotted: ``area.name``)."""
    if "." not in id or id != id.strip():
        raise ValueError(f"check id {id!r} must be dotted like 'area.name'")
    if not callable(severity) and severity not in SEVERITIES:
        raise ValueError(f"check {id}: severity {severity!r} is not one of {SEVERITIES}")
    spec = CheckSpec(id=id, severity=severity, clause=clause)

    def decorate(fn: F) -> F:
        return pytest.mark.eyechart_check(spec)(fn)

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
    from eyechart.wire import schemas

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


@dataclass
class CheckResult:
    """The verdict of one check in one run, as the reports show it.

    ``status``: pass, fail (a MUST, or a SHOULD under --strict), warn (a SHOULD or INFO finding),
    skip (with its reason in ``message``), error (the harness could not reach a verdict).
    ``evidence``: expected, got, pointer, exchange (request summary, status, headers, first bytes),
    reproducer (a curl command, key as ``$EYECHART_API_KEY``) and exchanges (every request made).
    """

    id: str
    severity: Severity
    status: Status
    clause: str
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    nodeid: str = ""
    duration_s: float = 0.0

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "area": self.area,
            "severity": self.severity,
            "status": self.status,
            "clause": self.clause,
            "message": self.message,
            "evidence": self.evidence,
            "nodeid": self.nodeid,
            "duration_s": round(self.duration_s, 4),
        }
