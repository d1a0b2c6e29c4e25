"""The outcome of a conformance run as data: each check's verdict, the run, and the rules that judge it.

Everything a report shows is decided here (the status order, the exit-code rule); ``eyechart.report``
only renders a :class:`ConformanceRun`. Statuses: ``pass``; ``fail`` (a MUST, or a SHOULD under
``--strict``); ``warn`` (a SHOULD or INFO finding); ``skip`` (with its reason); ``error`` (the harness
could not reach a verdict); ``flaky`` (failed with a 5xx, a cut stream or a timeout on a kind of request
that worked elsewhere, then passed on a re-run: the target is unstable, and a MUST that is flaky still
fails the run); ``not_judged`` (the target was busy or the run was cut short while the check waited:
no verdict either way, never blamed on the target).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from eyechart.conform.printable import printable
from eyechart.exitcodes import ExitCode
from eyechart.severity import SEVERITIES, Severity

Status = Literal["pass", "fail", "flaky", "warn", "skip", "error", "not_judged"]
# report order: action first
STATUSES: tuple[Status, ...] = ("fail", "flaky", "error", "not_judged", "warn", "skip", "pass")
FINDINGS: tuple[Status, ...] = ("fail", "flaky", "error", "not_judged", "warn")
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
    # core contract, or which profile knob (and value) decided what the check expected
    attribution: dict[str, Any] = field(default_factory=lambda: {"source": "core"})

    @property
    def from_profile(self) -> bool:
        return self.attribution.get("source") == "profile"

    def __post_init__(self) -> None:
        # every string that came from the server is stored escaped (lone surrogates, control bytes)
        self.message = printable(self.message)
        self.evidence = printable(self.evidence)

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
            "attribution": self.attribution,
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
    cut_short: str | None = None  # why the run stopped before every selected check ran (--max-time)
    stopped_answering: str | None = None  # the target stopped answering even a cheap probe
    secrets: list[str] = field(default_factory=list)  # scrubbed from every output, never written

    def __post_init__(self) -> None:
        self.model = printable(self.model)  # the model id came from the server's /models

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
        return [r for r in self.ordered() if r.status in FINDINGS]

    def headline(self) -> list[str]:
        """What the run as a whole says about the target, before any single finding: instability
        (flaky checks are not feature gaps), a target that stopped answering, a run cut short."""
        lines = []
        flaky = [r for r in self.results if r.status == "flaky"]
        if flaky:
            lines.append(
                f"the target is unstable: {len(flaky)} check{'s' if len(flaky) != 1 else ''} hit random "
                "5xx/disconnects/timeouts and passed on a re-run (see the flaky checks)"
            )
        if self.stopped_answering:
            lines.append(self.stopped_answering)
        not_judged = sum(r.status == "not_judged" for r in self.results)
        if not_judged:
            lines.append(
                f"{not_judged} checks were not judged (the target was busy or the run was cut short)"
            )
        if self.cut_short:
            lines.append(f"the run was cut short ({self.cut_short}): {len(self.not_run)} checks did not run")
        return lines


def exit_code(run: ConformanceRun) -> ExitCode:
    """0 all MUST pass (SHOULD only under --strict) · 1 a check failed · 4 the run proved nothing.

    1 when any check failed, a flaky MUST included (it did fail once). Else 4 when the run was cut
    short, a MUST stayed ``not_judged``, a harness error left a check without a verdict, no check ran,
    or the run stopped before every selected check reported.
    """
    counts = run.counts()
    if counts["fail"] or any(r.status == "flaky" and r.severity == "MUST" for r in run.results):
        return ExitCode.FAILED
    must_unjudged = any(r.status == "not_judged" and r.severity == "MUST" for r in run.results)
    if run.cut_short or must_unjudged or counts["error"] or run.not_run or not run.results:
        return ExitCode.INVALID_RUN
    if counts["pass"] + counts["warn"] + counts["flaky"] == 0:
        return ExitCode.INVALID_RUN
    return ExitCode.OK
