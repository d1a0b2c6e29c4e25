"""What a check's verdict shows: the key exchange in full, a curl reproducer, and every request made.

Evidence is plain JSON-able data, built from the :class:`~eyechart.wire.exchange.Exchange` objects the
session recorded for the check (already free of the API key).
"""

from __future__ import annotations

from typing import Any

from eyechart.conform.checks import CheckFailed
from eyechart.conform.printable import decoded
from eyechart.wire.exchange import Exchange


def exchange_summary(ex: Exchange) -> dict[str, Any]:
    """The part of an exchange a report shows: request summary, status, headers, first bytes."""
    body = ex.body_head
    return {
        "request": {
            "method": ex.method,
            "url": ex.url,
            "headers": dict(ex.request_headers),
            "body_summary": _short(ex.request_body, 4000),
        },
        "status": ex.status,
        "error": f"{ex.error_class}: {ex.error}" if ex.error_class else None,
        "headers": dict(ex.response_headers),
        "body_head": decoded(body) if body else None,
        "body_bytes": ex.body_bytes,
        "elapsed_s": round(ex.elapsed_s, 4),
        **({"retried": ex.retried} if ex.retried else {}),
    }


def _short(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def key_exchange(failed: CheckFailed | None, exchanges: list[Exchange]) -> Exchange | None:
    """The exchange a verdict is about: the failure's own, else the check's last request."""
    return (failed.exchange if failed is not None else None) or (exchanges[-1] if exchanges else None)


def _listed(x: Exchange, **extra: Any) -> dict[str, Any]:
    return {
        "method": x.method,
        "url": x.url,
        "status": x.status,
        "error": x.error_class,
        "elapsed_s": round(x.elapsed_s, 4),
        **({"retried": x.retried} if x.retried else {}),
        **extra,
    }


def evidence_for(
    failed: CheckFailed | None, exchanges: list[Exchange], *, full: bool = True
) -> dict[str, Any]:
    """Evidence of a check: the failure's fields, the key exchange in full, a reproducer, all requests.

    A check may judge an exchange sent earlier and shared through a module fixture (one request judged
    by several checks): it is listed among the exchanges too, marked ``shared``."""
    ev: dict[str, Any] = {}
    if failed is not None:
        for key in ("expected", "got", "pointer"):
            value = getattr(failed, key)
            if value is not None:
                ev[key] = value if isinstance(value, str | int | float | bool | list | dict) else repr(value)
    key_ex = key_exchange(failed, exchanges)
    if key_ex is not None and full:
        ev["exchange"] = exchange_summary(key_ex)
        ev["reproducer"] = key_ex.curl
    listed = [_listed(x) for x in exchanges]
    if key_ex is not None and not any(x is key_ex for x in exchanges):
        listed.insert(0, _listed(key_ex, shared="sent earlier in the run and judged by this check too"))
    ev["exchanges"] = listed
    return ev
