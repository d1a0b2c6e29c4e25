"""Exit codes shared by every eyechart command: the one table ``--help``, the README and reports show.

``eyechart conform`` and ``eyechart load`` use all five; ``serve`` and ``fixtures`` only 0 and 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    REGRESSION = 3
    INVALID_RUN = 4

    @property
    def meaning(self) -> str:
        return MEANINGS[self]

    @property
    def verdict(self) -> str:
        """The one-word verdict a report headline shows for a run that ended with this code."""
        return VERDICTS[self]


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "all gates pass",
    ExitCode.FAILED: "a conformance MUST failed or an SLO was breached",
    ExitCode.USAGE: "usage or configuration error, target unreachable",
    ExitCode.REGRESSION: "regression against a baseline",
    ExitCode.INVALID_RUN: "the run itself is invalid (harness saturated, schedule lag over budget, "
    "too few samples, no check reached a verdict)",
}
VERDICTS: dict[ExitCode, str] = {
    ExitCode.OK: "PASS",
    ExitCode.FAILED: "FAIL",
    ExitCode.USAGE: "USAGE ERROR",
    ExitCode.REGRESSION: "REGRESSION",
    ExitCode.INVALID_RUN: "INVALID RUN",
}
JOB_CODES = tuple(ExitCode)  # conform and load: every code can happen
SERVICE_CODES = (ExitCode.OK, ExitCode.USAGE)  # serve and fixtures: it worked, or a usage problem


def exit_codes_help(codes: Iterable[ExitCode] = JOB_CODES) -> str:
    """The ``exit codes:`` block of ``--help`` for a command that can end with ``codes``."""
    return "exit codes:\n" + "\n".join(f"  {int(c)}  {c.meaning}" for c in codes)


def exit_codes_markdown() -> str:
    """The same table as Markdown (the README holds exactly this; a test keeps them equal)."""
    rows = "\n".join(f"| {int(c)} | {c.meaning} |" for c in ExitCode)
    return "| code | meaning |\n|---|---|\n" + rows


EXIT_CODES_HELP = exit_codes_help()
