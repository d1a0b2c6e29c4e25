"""The registry: each invariant is a small pure rule with a stable id, a severity and a contract clause.

A rule reads a :class:`~eyechart.invariants.observed.Judged` view and returns None (it holds),
:data:`SKIP` (it does not apply to this exchange: not counted as sampled) or a :class:`Fault` (the first
place it breaks, with the others counted). :func:`examine` runs every rule registered for the exchange's
kind and turns faults into :class:`Finding` s. A rule that raises is a harness bug: it is reported in
``Judgment.errors``, never as the target's fault, and never stops the other rules.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eyechart.invariants.observed import KINDS, Judged, Kind, Observed
from eyechart.profiles import Profile
from eyechart.severity import SEVERITIES, Severity

if TYPE_CHECKING:
    from eyechart.invariants.crossing import CrossState

SeveritySpec = Severity | Callable[[Profile], Severity]
_SHOWN = 300  # characters of an expected/got value kept in a finding


class Skip(enum.Enum):
    SKIP = "skip"


SKIP = Skip.SKIP


@dataclass(frozen=True)
class Fault:
    """Where and how a rule broke: the first occurrence (event index in a stream), ``count`` in all."""

    message: str
    pointer: str | None = None
    expected: Any = None
    got: Any = None
    event: int | None = None
    count: int = 1


Outcome = Fault | Skip | None
Rule = Callable[[Judged], Outcome]


@dataclass(frozen=True)
class Finding:
    """One broken invariant on one exchange, with its evidence."""

    check: str
    severity: Severity
    clause: str
    message: str
    pointer: str | None = None  # JSON pointer into the body (into the chunk, for a stream)
    expected: Any = None
    got: Any = None
    event: int | None = None  # index of the first offending event of a stream
    offset: int | None = None  # its byte offset in the body
    count: int = 1
    request_id: str | None = None

    def __str__(self) -> str:
        where = f" (event {self.event})" if self.event is not None else ""
        times = f" ×{self.count}" if self.count > 1 else ""
        return f"{self.severity} {self.check}{where}{times}: {self.message}"

    def evidence(self) -> dict[str, Any]:
        """The non-empty evidence as JSON-safe values, long ones shortened (for reports and examples)."""
        out: dict[str, Any] = {"message": self.message}
        for key in ("pointer", "expected", "got", "event", "offset", "request_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = _shown(value)
        if self.count > 1:
            out["count"] = self.count
        return out


def _shown(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


@dataclass(frozen=True)
class Invariant:
    id: str
    kinds: tuple[Kind, ...]
    severity: SeveritySpec
    clause: str
    doc: str
    rule: Rule = field(repr=False)
    cross: bool = False  # needs the cross-exchange state (skipped without one)

    def resolve_severity(self, profile: Profile) -> Severity:
        sev = self.severity(profile) if callable(self.severity) else self.severity
        if sev not in SEVERITIES:
            raise ValueError(f"invariant {self.id}: severity {sev!r} is not one of {SEVERITIES}")
        return sev


_REGISTRY: dict[str, Invariant] = {}


def invariant(
    id: str, *, kinds: Iterable[Kind], severity: SeveritySpec, clause: str, cross: bool = False
) -> Callable[[Rule], Rule]:
    """Register ``rule`` as the invariant ``id``; its docstring's first paragraph is its one-line doc."""
    kinds = tuple(kinds)
    if "." not in id or id in _REGISTRY:
        raise ValueError(f"invariant id {id!r} must be dotted and unique")
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"invariant {id}: kinds {kinds!r} must be among {KINDS}")
    if not callable(severity) and severity not in SEVERITIES:
        raise ValueError(f"invariant {id}: severity {severity!r} is not one of {SEVERITIES}")

    def register(rule: Rule) -> Rule:
        doc = " ".join((rule.__doc__ or "").strip().split("\n\n")[0].split())
        _REGISTRY[id] = Invariant(id, kinds, severity, clause, doc, rule, cross)
        return rule

    return register


def registered() -> list[Invariant]:
    """Every registered invariant, by id."""
    return sorted(_REGISTRY.values(), key=lambda inv: inv.id)


def describe(profile: Profile | None = None) -> list[dict[str, str]]:
    """One row per invariant (id, severity, clause, doc, kinds): for ``--list`` and the reports. The
    severity is resolved for ``profile``; without one a profile-dependent severity reads ``profile``."""
    rows = []
    for inv in registered():
        severity: str = "profile" if callable(inv.severity) else inv.severity
        if profile is not None:
            severity = inv.resolve_severity(profile)
        rows.append(
            {
                "id": inv.id,
                "severity": severity,
                "clause": inv.clause,
                "doc": inv.doc,
                "kinds": ",".join(inv.kinds),
            }
        )
    return rows


@dataclass(frozen=True)
class Judgment:
    """What the invariants said about one exchange: which applied, which broke, which could not run."""

    applied: tuple[str, ...]
    findings: tuple[Finding, ...]
    errors: tuple[tuple[str, str], ...] = ()  # (invariant id, harness error text)

    @property
    def failed(self) -> set[str]:
        return {f.check for f in self.findings}


def examine(observed: Observed, profile: Profile, state: CrossState | None = None) -> Judgment:
    """Run every invariant that applies to ``observed``; with ``state``, also the cross-exchange ones
    (and remember this exchange in it)."""
    judged = Judged(observed, profile, state)
    if judged.kind is None:
        return Judgment((), ())
    applied: list[str] = []
    findings: list[Finding] = []
    errors: list[tuple[str, str]] = []
    for inv in _REGISTRY.values():
        if judged.kind not in inv.kinds or (inv.cross and state is None):
            continue
        try:
            outcome = inv.rule(judged)
        except Exception as exc:  # a harness bug must not stop the run nor blame the target
            errors.append((inv.id, f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        if outcome is SKIP:
            continue
        applied.append(inv.id)
        if isinstance(outcome, Fault):
            findings.append(_finding(inv, outcome, judged))
    if state is not None:
        try:
            state.remember(judged)
        except Exception as exc:
            errors.append(("crossing.state", f"{type(exc).__name__}: {str(exc)[:200]}"))
    return Judgment(tuple(applied), tuple(findings), tuple(errors))


def judge(observed: Observed, profile: Profile, state: CrossState | None = None) -> list[Finding]:
    """The findings of every invariant on one exchange (empty: it kept them all)."""
    return list(examine(observed, profile, state).findings)


def _finding(inv: Invariant, fault: Fault, judged: Judged) -> Finding:
    offset = None
    if fault.event is not None and judged.kind == "stream" and judged.stream is not None:
        offset = judged.stream.offset(fault.event)
    return Finding(
        check=inv.id,
        severity=inv.resolve_severity(judged.profile),
        clause=inv.clause,
        message=fault.message,
        pointer=fault.pointer,
        expected=fault.expected,
        got=fault.got,
        event=fault.event,
        offset=offset,
        count=fault.count,
        request_id=judged.observed.request_id,
    )
