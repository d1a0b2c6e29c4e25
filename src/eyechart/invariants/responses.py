"""Invariants of one non-streamed response (CONTRACT.md section 3)."""

from __future__ import annotations

from eyechart.invariants import schemacache, usage
from eyechart.invariants.observed import Judged
from eyechart.invariants.registry import SKIP, Fault, Outcome, invariant
from eyechart.wire.schemas import SchemaProblem

CREATED_SKEW_S = 600  # "near now": ten minutes either way covers sane clocks and queued requests


def created_recent(j: Judged, created: object, pointer: str) -> Outcome:
    """Shared by responses and streams: ``created`` within the skew of when the exchange happened."""
    at = j.observed.received_at
    if at is None or not isinstance(created, int) or isinstance(created, bool):
        return SKIP
    earliest = at - j.observed.elapsed_s - CREATED_SKEW_S
    if not earliest <= created <= at + CREATED_SKEW_S:
        return Fault(
            f"created is {created - int(at):+d} s from the time of the answer",
            pointer=pointer,
            expected=f"within {CREATED_SKEW_S} s of {int(at)}",
            got=created,
        )
    return None


def media_type_is(j: Judged, expected: str, what: str) -> Outcome:
    """Shared by responses and streams: the answer's Content-Type is ``expected``."""
    if j.media_type != expected:
        return Fault(f"{what} is not {expected}", expected=expected, got=j.media_type or "(no Content-Type)")
    return None


def schema_fault(name: str, j: Judged, instance: object) -> Fault | None:
    return problems_fault(name, schemacache.problems(name, instance, j.profile))


def problems_fault(name: str, found: list[SchemaProblem]) -> Fault | None:
    if not found:
        return None
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return Fault(
        f"{name} schema: {first}{more}",
        pointer=first.pointer,
        expected=f"a body valid against the {name} schema",
        got=first.message,
    )


@invariant("response.content_type", kinds=["response"], severity="MUST", clause="response.content_type")
def content_type(j: Judged) -> Outcome:
    """The answer is Content-Type: application/json."""
    return media_type_is(j, "application/json", "the response")


@invariant("response.schema", kinds=["response"], severity="MUST", clause="response.shape")
def schema(j: Judged) -> Outcome:
    """The body is JSON valid against response.json (id, object chat.completion, created, model, choices,
    usage per profile)."""
    if j.json_error is not None:
        return Fault("the body is not JSON", expected="a JSON object", got=j.json_error)
    return schema_fault("response", j, j.json)


@invariant(
    "response.strict_spec",
    kinds=["response"],
    severity=lambda p: p.strict_spec_severity,
    clause="response.strict_spec",
)
def strict_spec(j: Judged) -> Outcome:
    """OpenAI's stricter spec: message.refusal and choices[].logprobs present (strict-spec finding)."""
    if j.json_error is not None:
        return SKIP
    return schema_fault("response-strict", j, j.json)


@invariant("response.usage_total", kinds=["response"], severity="MUST", clause="response.usage")
def usage_total(j: Judged) -> Outcome:
    """usage counts are integers ≥ 0 with total_tokens = prompt_tokens + completion_tokens."""
    return usage.total(j)


@invariant(
    "response.estimated_cost",
    kinds=["response"],
    severity=lambda p: "MUST" if p.estimated_cost else "INFO",
    clause="response.usage",
)
def estimated_cost(j: Judged) -> Outcome:
    """usage.estimated_cost is a non-negative number (where the profile expects it)."""
    if j.usage is None:
        return SKIP
    where, counts = j.usage
    cost = counts.get("estimated_cost")
    if cost is None and not j.profile.estimated_cost:
        return SKIP
    if not (isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0):
        return Fault(
            "usage.estimated_cost is missing or not a non-negative number",
            pointer=f"{where}/estimated_cost",
            expected="a number ≥ 0",
            got=cost,
        )
    return None


@invariant("response.created_recent", kinds=["response"], severity="SHOULD", clause="response.created")
def response_created(j: Judged) -> Outcome:
    """created is integer unix seconds near the time of the answer."""
    body = j.json
    return created_recent(j, body.get("created") if isinstance(body, dict) else None, "/created")


@invariant("response.cap_respected", kinds=["response"], severity="MUST", clause="response.cap")
def cap_respected(j: Judged) -> Outcome:
    """usage.completion_tokens ≤ the max_tokens / max_completion_tokens the request asked for."""
    return usage.cap_respected(j)


@invariant("response.usage_counts_content", kinds=["response"], severity="MUST", clause="response.usage")
def usage_counts_content(j: Judged) -> Outcome:
    """An answer with content counts at least one completion token."""
    return usage.counts_content(j)
