"""Before a load run: does the target accept the API key?

A refused key would turn the whole run into a flood of 401s that ends as a wall of failures (or, with
many users, blames the harness). The bounded probe of ``GET /models`` (``wire.discovery``) already ran;
its status tells a refused key apart before a single load request is sent (exit code 2).
"""

from __future__ import annotations

from eyechart.target import DEFAULT_API_KEY
from eyechart.wire import discovery


def refused_key(base_url: str, api_key: str | None, *, embedded: bool) -> str | None:
    """The message for a key the target refuses (401/403 on ``GET /models``), else None."""
    ex = discovery.probe(base_url, api_key or None)
    if ex.status not in (401, 403):
        return None
    given = "no API key was given" if not api_key else "the target refused the API key"
    hint = (
        f"the embedded target's local key is {DEFAULT_API_KEY!r} (or the one given to `eyechart serve "
        "--api-key`)"
        if embedded
        else "check the key the server expects"
    )
    return (
        f"{given}: GET {base_url}/models answered HTTP {ex.status}. Pass the right key with --api-key "
        f"or $EYECHART_API_KEY; {hint}."
    )
