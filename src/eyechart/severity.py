"""How much a broken clause matters: the one definition every check, invariant and profile knob uses."""

from typing import Literal, get_args

Severity = Literal["MUST", "SHOULD", "INFO"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
