"""What a check is, independent of any run: its id template, severity rule and clause.

Kept apart from :mod:`eyechart.conform.checks` so the pytest plugin can recognise checks without
importing the HTTP and schema machinery (the plugin is loaded in every pytest run of an environment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eyechart.profiles import Profile
from eyechart.severity import SEVERITIES, Severity

SeveritySpec = Severity | Callable[[Profile], Severity]
MARK = "eyechart_check"


@dataclass(frozen=True)
class CheckSpec:
    """A check's id template (``area.name``, may hold ``{param}``), severity rule and clause."""

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
