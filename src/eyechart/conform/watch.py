"""The invariant registry (:mod:`eyechart.invariants`) run on every exchange a conformance run records.

A check judges the exchange it sent for its own clause; the registry judges every chat exchange of the
run against every single-exchange rule (schemas, usage arithmetic, ``created``, ids, the cross-chunk
stream rules, the error envelope), whichever check sent it. Its verdicts join the run under the
invariant's id (:func:`merge`): a check of the same id turns into a finding when the registry saw its
rule broken anywhere in the run, and an invariant no check carries is reported on its own. So each id
reports once. A stream is judged from the analysis's raw bytes (``Exchange.body`` keeps only the first
2 KiB of a stream); a stream cut short or longer than the reader kept is not judged.
"""

from __future__ import annotations

import fnmatch
import time
from collections import Counter
from typing import Any

from eyechart import invariants
from eyechart.conform.evidence import evidence_for
from eyechart.conform.results import CheckResult, status_for_finding
from eyechart.profiles import Profile, attribution
from eyechart.wire.exchange import Exchange


class Watch:
    """Judges each recorded exchange; keeps, per invariant id, how many it applied to and what broke."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.sampled: Counter[str] = Counter()
        self.broken: dict[str, list[tuple[str, invariants.Finding, Exchange]]] = {}
        self.harness_errors: list[str] = []

    def observe(self, ex: Exchange, request: Any, body: bytes | None, check_id: str | None) -> None:
        """Judge one exchange (a chat request with a whole answer; anything else is left alone)."""
        if body is None or ex.status is None or ex.error_class is not None or not isinstance(request, dict):
            return
        if not ex.url.rstrip("/").endswith("/chat/completions"):
            return
        observed = invariants.Observed(
            request=request,
            status=ex.status,
            headers=ex.response_headers,
            body=body,
            received_at=time.time(),
            elapsed_s=ex.elapsed_s,
        )
        judgment = invariants.examine(observed, self.profile)
        self.sampled.update(judgment.applied)
        for finding in judgment.findings:
            self.broken.setdefault(finding.check, []).append((check_id or "", finding, ex))
        self.harness_errors.extend(f"{check}: {text}" for check, text in judgment.errors)


def merge(
    results: list[CheckResult], watch: Watch, profile: Profile, only: list[str], skip: list[str], strict: bool
) -> list[CheckResult]:
    """The run's results with the registry's verdicts joined in (see the module docstring)."""
    out: list[CheckResult] = []
    by_id = {r.id: r for r in results}
    for r in results:
        found = watch.broken.get(r.id)
        if found and r.status in ("pass", "skip"):
            r = _finding(r.id, r.severity, r.clause, found, watch.sampled[r.id], strict, profile, r.nodeid)
        out.append(r)
    for inv in invariants.registered():
        if inv.id in by_id or (not watch.sampled[inv.id] and inv.id not in watch.broken):
            continue
        if only and not any(fnmatch.fnmatchcase(inv.id, p) for p in only):
            continue
        if any(fnmatch.fnmatchcase(inv.id, p) for p in skip):
            continue
        severity = inv.resolve_severity(profile)
        found = watch.broken.get(inv.id)
        if found:
            out.append(_finding(inv.id, severity, inv.clause, found, watch.sampled[inv.id], strict, profile))
        else:
            out.append(
                CheckResult(
                    id=inv.id,
                    severity=severity,
                    status="pass",
                    clause=inv.clause,
                    nodeid="invariant",
                    evidence={"sampled": watch.sampled[inv.id]},
                    attribution=attribution(inv.id, profile),
                )
            )
    return out


def _finding(
    check_id: str,
    severity: Any,
    clause: str,
    found: list[tuple[str, invariants.Finding, Exchange]],
    sampled: int,
    strict: bool,
    profile: Profile,
    nodeid: str = "invariant",
) -> CheckResult:
    sent_by, first, ex = found[0]
    where = f" (event {first.event})" if first.event is not None else ""
    evidence = evidence_for(None, [ex])
    evidence.update(
        {k: v for k, v in first.evidence().items() if k in ("expected", "got", "pointer") and v is not None}
    )
    evidence["invariant"] = {
        "failed": len(found),
        "sampled": max(sampled, len(found)),
        "sent_by": sorted({s for s, _, _ in found if s}),
        "examples": [f.evidence() for _, f, _ in found[:3]],
    }
    return CheckResult(
        id=check_id,
        severity=severity,
        status=status_for_finding(severity, strict),
        clause=clause,
        message=f"{first.message}{where} — on {len(found)} of {max(sampled, len(found))} exchanges of the "
        f"run (first sent by {sent_by or 'an earlier check'})",
        evidence=evidence,
        nodeid=nodeid,
        attribution=attribution(check_id, profile),
    )
