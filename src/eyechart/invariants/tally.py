"""Per-check counts over sampled exchanges, mergeable across load processes.

``Tally.to_dict()`` is what ``summary.json`` keeps under ``invariants``::

    {"stream.same_id": {"sampled": 1200, "failed": 3, "examples": [{"message": ..., "request_id": ...}]}}

``sampled`` counts the exchanges the invariant applied to, ``failed`` those it failed on; at most
``max_examples`` examples are kept per check (the first ones: merging keeps the left side's first).
``errors`` appears only when a rule itself failed (a harness bug), so it can never pass unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eyechart.invariants.registry import Judgment

MAX_EXAMPLES = 3


@dataclass
class Tally:
    max_examples: int = MAX_EXAMPLES
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _entry(self, check: str) -> dict[str, Any]:
        entry = self.checks.get(check)
        if entry is None:
            entry = self.checks[check] = {"sampled": 0, "failed": 0, "examples": []}
        return entry

    def add(self, judgment: Judgment) -> None:
        for check in judgment.applied:
            self._entry(check)["sampled"] += 1
        for finding in judgment.findings:
            entry = self._entry(finding.check)
            entry["failed"] += 1
            if len(entry["examples"]) < self.max_examples:
                entry["examples"].append(finding.evidence())
        for check, text in judgment.errors:
            entry = self._entry(check)
            entry["errors"] = entry.get("errors", 0) + 1
            if len(entry["examples"]) < self.max_examples:
                entry["examples"].append({"harness_error": text})

    def merge(self, other: Tally | Mapping[str, Mapping[str, Any]]) -> Tally:
        """Add another process's counts (a Tally or its ``to_dict()``) into this one; returns self."""
        data = other.checks if isinstance(other, Tally) else other
        for check, theirs in data.items():
            entry = self._entry(check)
            entry["sampled"] += int(theirs.get("sampled", 0))
            entry["failed"] += int(theirs.get("failed", 0))
            if theirs.get("errors"):
                entry["errors"] = entry.get("errors", 0) + int(theirs["errors"])
            room = self.max_examples - len(entry["examples"])
            if room > 0:
                entry["examples"].extend(list(theirs.get("examples", []))[:room])
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready, checks sorted by id."""
        return {
            check: {**entry, "examples": list(entry["examples"])}
            for check, entry in sorted(self.checks.items())
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]], max_examples: int = MAX_EXAMPLES) -> Tally:
        return cls(max_examples).merge(data)

    @property
    def failed(self) -> dict[str, int]:
        """Check id -> failures, for the checks that failed at least once."""
        return {c: e["failed"] for c, e in sorted(self.checks.items()) if e["failed"]}
