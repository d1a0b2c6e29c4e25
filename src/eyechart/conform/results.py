"""The outcome of a conformance run as data: each check's verdict, the run, and the rules that judge it.

Everything a report shows is decided here (the status order, the exit-code rule); ``eyechart.report``
only renders a :class:`ConformanceRun`. Statuses: ``pass``; ``fail`` (a MUST, or a SHOULD under
``--strict``); ``warn`` (a SHOULD or INFO finding); ``skip`` (with its reason); ``error`` (the harness
could not reach a verdict).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from eyechart.exitcodes import ExitCode
from eyechart.severity import SEVERITIES, Severity

Status = Literal["pass", "fail", "warn", "skip", "error"]
STATUSES: tuple[Status, ...] = ("fail", "error", "warn", "skip", "pass")  # report order: action first
SEVERITY_ORDER = {sev: i for i, sev in enumerate(SEVERITIES)}


def status_for_finding(severity: Severity, strict: bool) -> Status:
    """A check that found a problem: ``fail`` for a MUST (or a SHOULD under strict), else ``warn``."""
    return "fail" if severity == "MUST" or (severity == "SHOULD" and strict) else "warn"


@dataclass
class CheckResult:
    """The verdict of one check in one run, as the reports show it.

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


@dataclass
class ConformanceRun:
    """One run of the suite: where it ran, how, and every check's verdict."""

    target: str
    model: str
    profile: str
    started: float
    finished: float
    results: list[CheckResult]
    embedded: bool = False
    strict: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # selected but never reported (run aborted)
    deselected: int = 0
    secrets: list[str] = field(default_factory=list)  # scrubbed from every output, never written

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished - self.started)

    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in STATUSES}

    def counts_by_severity(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for sev in SEVERITY_ORDER:
            c: Counter[str] = Counter(r.status for r in self.results if r.severity == sev)
            out[sev] = {s: c.get(s, 0) for s in STATUSES}
        return out

    def ordered(self) -> list[CheckResult]:
        """Failures first, then errors, warnings, skips, passes; MUST before SHOULD; by id."""
        return sorted(
            self.results, key=lambda r: (STATUSES.index(r.status), SEVERITY_ORDER[r.severity], r.id)
        )

    def findings(self) -> list[CheckResult]:
        """What needs a reader's attention, most urgent first: failures, errors, warnings."""
        return [r for r in self.ordered() if r.status in ("fail", "error", "warn")]


def exit_code(run: ConformanceRun) -> ExitCode:
    """0 all MUST pass (SHOULD only under --strict) · 1 a check failed · 4 the run proved nothing.

    A harness error leaves a check without a verdict, so a run with errors and no failure is invalid
    (4), as is a run where no check ran or one that stopped before every selected check reported.
    """
    counts = run.counts()
    if counts["fail"]:
        return ExitCode.FAILED
    if counts["error"] or run.not_run or not run.results or counts["pass"] + counts["warn"] == 0:
        return ExitCode.INVALID_RUN
    return ExitCode.OK
