"""Exit codes shared by every eyechart command (DESIGN.md "Exit codes")."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # all gates pass
    FAILED = 1  # a conformance MUST failed or an SLO was breached
    USAGE = 2  # usage or configuration error, target unreachable
    REGRESSION = 3  # regression against a baseline
    INVALID_RUN = 4  # the run is invalid: harness saturated, schedule lag over budget, too few samples


EXIT_CODES_HELP = """exit codes:
  0  all gates pass
  1  a conformance MUST failed or an SLO was breached
  2  usage or configuration error, target unreachable
  3  regression against a baseline
  4  the run itself is invalid (harness saturated, schedule lag over budget, too few samples)"""
