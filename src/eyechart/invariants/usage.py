"""Rules on token accounting, shared by responses and streams: the arithmetic, the cap, the content."""

from __future__ import annotations

from typing import Any

from eyechart.invariants.observed import Judged
from eyechart.invariants.registry import SKIP, Fault, Outcome

COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def total(j: Judged) -> Outcome:
    if j.usage is None:
        return SKIP
    where, usage = j.usage
    for key in COUNTS:
        if not _count(usage.get(key)):
            return Fault(
                f"usage.{key} is not a non-negative integer",
                pointer=f"{where}/{key}",
                expected="an integer ≥ 0",
                got=usage.get(key),
            )
    want = usage["prompt_tokens"] + usage["completion_tokens"]
    if usage["total_tokens"] != want:
        return Fault(
            "usage.total_tokens is not prompt_tokens + completion_tokens",
            pointer=f"{where}/total_tokens",
            expected=want,
            got=usage["total_tokens"],
        )
    return None


def completion(j: Judged) -> int | None:
    if j.usage is None:
        return None
    value = j.usage[1].get("completion_tokens")
    return value if _count(value) else None


def cap_respected(j: Judged) -> Outcome:
    cap, got = j.cap, completion(j)
    if cap is None or got is None:
        return SKIP
    if got > cap:
        return Fault(
            f"completion_tokens exceeds the cap of {cap} the request asked for",
            pointer=f"{j.usage[0] if j.usage else ''}/completion_tokens",
            expected=f"≤ {cap}",
            got=got,
        )
    return None


def counts_content(j: Judged) -> Outcome:
    got = completion(j)
    if got is None:
        return SKIP
    if got == 0 and j.content:
        return Fault(
            "the answer has content but usage.completion_tokens is 0",
            pointer=f"{j.usage[0] if j.usage else ''}/completion_tokens",
            expected="≥ 1",
            got=got,
        )
    return None
