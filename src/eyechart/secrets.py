"""Keeping the API key out of everything eyechart writes: one placeholder, one scrubbing rule.

Exchanges, reproducers, reports and logs all show the run's real key as ``$EYECHART_API_KEY`` (so a
copied curl command still works with the variable set); run descriptions drop fields whose name says
they hold a secret. Every module that writes something a user reads asks here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

KEY_PLACEHOLDER = "$EYECHART_API_KEY"
SECRET_WORDS = ("key", "secret", "password", "authorization", "bearer")  # anywhere: apikey, X-Api-Key
# Only as a whole part of the name: X-Auth-Token and session_cookie are secrets, max_tokens and author not.
SECRET_PARTS = frozenset({"token", "auth", "cookie", "credential", "credentials"})


def scrub_text(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (if any) replaced by the placeholder."""
    return text.replace(secret, KEY_PLACEHOLDER) if secret else text


def scrub_bytes(data: bytes, secret: str | None) -> bytes:
    """``data`` with ``secret`` (if any) replaced by the placeholder."""
    return data.replace(secret.encode(), KEY_PLACEHOLDER.encode()) if secret else data


def scrub(value: Any, secrets: Iterable[str | None]) -> Any:
    """``value`` with every secret replaced by the placeholder (recursively, dict keys included)."""
    found = [s for s in secrets if s]
    if not found:
        return value
    if isinstance(value, str):
        for s in found:
            value = value.replace(s, KEY_PLACEHOLDER)
        return value
    if isinstance(value, dict):
        return {scrub(k, found): scrub(v, found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, found) for v in value]
    return value


def is_secret_name(name: str) -> bool:
    """True for a field or header name that announces a secret (``api_key``, ``Authorization``,
    ``X-Auth-Token``...): its value is masked or dropped wherever eyechart writes it."""
    low = name.lower()
    return any(w in low for w in SECRET_WORDS) or not SECRET_PARTS.isdisjoint(re.split(r"[^a-z0-9]+", low))
