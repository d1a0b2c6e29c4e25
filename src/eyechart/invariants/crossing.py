"""Cross-exchange invariants, for load: what only shows when many streams share a batch.

Their memory is explicit: a :class:`CrossState` that the caller owns (one per process) and passes to
``judge``; it keeps at most ``max_entries`` recent ids and request keys, the oldest forgotten first.
Legal variants are never failures: a caching proxy may answer the same request with the same completion
(same id, same text); the same request may be answered differently (sampling), but never with another
prompt token count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eyechart.invariants.observed import Judged
from eyechart.invariants.registry import SKIP, Fault, Outcome, invariant


@dataclass
class CrossState:
    """What the sampled exchanges of one process showed so far (ids, prompt token counts)."""

    max_entries: int = 100_000
    # completion id -> (request key, hash of the answer's text, request id)
    ids: dict[str, tuple[str, int, str | None]] = field(default_factory=dict)
    # request key -> (prompt_tokens, request id)
    prompt_tokens: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def remember(self, j: Judged) -> None:
        """Record ``j`` (called by ``examine`` after the rules ran, so a rule never sees its own exchange)."""
        if j.kind not in ("response", "stream"):
            return
        rid = j.observed.request_id
        if j.completion_id is not None and j.completion_id not in self.ids:
            _bounded(self.ids, self.max_entries)
            self.ids[j.completion_id] = (j.request_key, hash(j.content), rid)
        pt = _prompt_tokens(j)
        if pt is not None and j.request_key not in self.prompt_tokens:
            _bounded(self.prompt_tokens, self.max_entries)
            self.prompt_tokens[j.request_key] = (pt, rid)


def _bounded(d: dict[str, Any], limit: int) -> None:
    while len(d) >= limit:
        del d[next(iter(d))]


def _prompt_tokens(j: Judged) -> int | None:
    if j.usage is None:
        return None
    value = j.usage[1].get("prompt_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seen(rid: str | None) -> str:
    return f"request {rid}" if rid else "an earlier request"


@invariant(
    "crossing.id_unique", kinds=["response", "stream"], severity="SHOULD", clause="response.id", cross=True
)
def id_unique(j: Judged) -> Outcome:
    """A completion id names one answer: the same id on another request's or another text's answer is
    an id crossing between streams (a cache replaying the same answer is legal)."""
    state = j.state
    if state is None or j.completion_id is None:
        return SKIP
    seen = state.ids.get(j.completion_id)
    if seen is None:
        return None
    key, content, rid = seen
    if key == j.request_key and content == hash(j.content):
        return None
    what = "another request" if key != j.request_key else "a different answer to the same request"
    return Fault(
        f"the id {j.completion_id!r} already named {what} ({_seen(rid)})",
        pointer="/id",
        expected="an id of its own",
        got=j.completion_id,
    )


@invariant(
    "crossing.prompt_tokens_stable",
    kinds=["response", "stream"],
    severity="MUST",
    clause="tokens.stable",
    cross=True,
)
def prompt_tokens_stable(j: Judged) -> Outcome:
    """The same prompt counts the same prompt_tokens every time, streamed or not (a different count is
    usually another request's usage)."""
    state = j.state
    pt = _prompt_tokens(j)
    if state is None or pt is None:
        return SKIP
    seen = state.prompt_tokens.get(j.request_key)
    if seen is None or seen[0] == pt:
        return None
    return Fault(
        f"prompt_tokens {pt} for a prompt that counted {seen[0]} before ({_seen(seen[1])})",
        pointer=f"{j.usage[0] if j.usage else ''}/prompt_tokens",
        expected=seen[0],
        got=pt,
    )
