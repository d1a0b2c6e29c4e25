"""Invariants of one error response (CONTRACT.md section 6). Which status a mistake deserves is a
scenario (it needs to know the request was wrong) and stays a pytest check; the envelope is judged on
every error, including the 429s and 5xx that only appear under load."""

from __future__ import annotations

import re

from eyechart.invariants.observed import Judged
from eyechart.invariants.registry import SKIP, Fault, Outcome, invariant
from eyechart.invariants.responses import schema_fault

TRACE_PATTERNS = [
    re.compile(p)
    for p in (
        r"Traceback \(most recent call last\)",
        r'File "[^"]+", line \d+',
        r"\bat [\w$.]+\([\w$]+\.(java|kt|scala):\d+\)",
        r"(?:^|[\s'\"(])(?:/home|/usr|/opt|/srv|/var|/app|/root|/tmp)/\S+\.(?:py|js|ts|go|rs|java|rb|cpp|h)\b",
        r"[A-Za-z]:\\\\?\S+\.(?:py|js|cs|java)\b",
        r"\bgoroutine \d+ \[",
        r"\bpanicked at\b",
    )
]
"""Stack traces and internal paths, in Python, JVM, Node, Go and Rust shapes."""

_SCANNED = 65536


@invariant("errors.envelope", kinds=["error"], severity="MUST", clause="errors.envelope")
def envelope(j: Judged) -> Outcome:
    """An error body is JSON with an error object carrying a string message."""
    if j.json_error is not None:
        return Fault("the error body is not JSON", expected='{"error": {"message": ...}}', got=j.json_error)
    return schema_fault("error", j, j.json)


@invariant("errors.envelope_fields", kinds=["error"], severity="SHOULD", clause="errors.envelope")
def envelope_fields(j: Judged) -> Outcome:
    """The error object has all four keys: message, type, param, code."""
    if j.json_error is not None or schema_fault("error", j, j.json) is not None:
        return SKIP  # errors.envelope's finding
    return schema_fault("error-strict", j, j.json)


@invariant("errors.code_string", kinds=["error"], severity="SHOULD", clause="errors.envelope")
def code_string(j: Judged) -> Outcome:
    """error.code is a string or null; a numeric code is a finding."""
    body = j.json
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or "code" not in err:
        return SKIP
    code = err["code"]
    if code is not None and not isinstance(code, str):
        return Fault(
            "error.code is not a string", pointer="/error/code", expected="a string or null", got=code
        )
    return None


@invariant("errors.no_internals", kinds=["error"], severity="SHOULD", clause="errors.no_internals")
def no_internals(j: Judged) -> Outcome:
    """No stack traces or internal paths in an error body."""
    text = j.observed.body[:_SCANNED].decode("utf-8", "replace")
    for pattern in TRACE_PATTERNS:
        found = pattern.search(text)
        if found:
            return Fault(
                "an error response shows a stack trace or an internal path",
                expected="a message for the client",
                got=found.group(0)[:200],
            )
    return None


@invariant("stream.error_plain_json", kinds=["error"], severity="MUST", clause="stream.errors")
def error_plain_json(j: Judged) -> Outcome:
    """An error answering a streamed request is a plain JSON response, not an event stream."""
    if j.observed.options.get("stream") is not True:
        return SKIP
    if j.media_type == "text/event-stream":
        return Fault(
            f"the {j.observed.status} error came as an event stream",
            expected="application/json",
            got=j.media_type,
        )
    return None
