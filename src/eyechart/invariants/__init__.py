"""Invariants: the rules that judge one response, one stream or one error, as a registry of pure functions.

Each invariant has a stable check id (the conformance check id where the judgment already was one), a
severity (possibly from the profile) and a contract clause id. Both jobs call the same entry point on an
:class:`Observed` exchange, built from plain values::

    from eyechart import invariants

    observed = invariants.Observed(request=body, status=200, headers={"content-type": ctype},
                                   body=raw_bytes, received_at=time.time(), request_id=rid)
    findings = invariants.judge(observed, profile)                # single-exchange rules only
    state = invariants.CrossState()                                # one per process, under load
    judgment = invariants.examine(observed, profile, state)       # + crossing.* rules
    tally = invariants.Tally(); tally.add(judgment)               # summary.json "invariants"
    invariants.describe(profile)                                   # id, severity, clause, doc

A stream in the plainest framing is judged without the strict reader's per-byte work; any other framing
goes through :class:`eyechart.wire.sse.SSEReader`, so nothing lenient ever decides a verdict.
"""

from eyechart.invariants import crossing, errors, responses, streams  # noqa: F401  (registers the rules)
from eyechart.invariants.crossing import CrossState
from eyechart.invariants.observed import Judged, Kind, Observed
from eyechart.invariants.registry import (
    SKIP,
    Fault,
    Finding,
    Invariant,
    Judgment,
    describe,
    examine,
    invariant,
    judge,
    registered,
)
from eyechart.invariants.tally import Tally

__all__ = [
    "SKIP",
    "CrossState",
    "Fault",
    "Finding",
    "Invariant",
    "Judged",
    "Judgment",
    "Kind",
    "Observed",
    "Tally",
    "describe",
    "examine",
    "invariant",
    "judge",
    "registered",
]
