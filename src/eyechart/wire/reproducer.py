"""A curl command that repeats a request: safe to publish, and still working when pasted.

Both jobs build their reproducers here (``conform`` for each finding, ``load`` for the first failed
request of each error class). No secret is ever written into one: each is a reference to an environment
variable, in double quotes so the shell fills it in, while everything else stays literal (single quotes)::

    curl -sS -X POST 'https://gw.example/v1/chat/completions' \\
      -H "Authorization: Bearer $EYECHART_API_KEY" \\
      -H "X-Gateway-Token: $X_GATEWAY_TOKEN" \\
      -H 'X-Route: blue' ...

The rule for what is secret (:func:`masks`): the run's real API key reads ``$EYECHART_API_KEY`` wherever
it occurs; a header whose name announces a secret (:func:`eyechart.secrets.is_secret_name`) reads the
variable named after the header (:func:`env_name`: ``X-Gateway-Token`` -> ``$X_GATEWAY_TOKEN``), and its
value is masked with that reference wherever else it occurs too (an echo in a response). ``Authorization``
is the key's own header: when the real key is known, a different value there is a deliberately wrong key
(a probe's) and is shown as sent, so the reproducer really repeats the 401.

Large bodies: the body is passed on stdin (``--data-binary @- <<'EYECHART_BODY'``), so even a base64
image request is one paste. Up to ``inline_limit`` bytes (256 KiB) it is inlined verbatim. Larger bodies
are written to a file when ``body_file`` is given (the reproducer then reads ``--data-binary @<file>``,
exact), otherwise inlined abbreviated — data URIs shown as ``data:image/png;base64,<55,000 base64 chars,
sha256:ab12…>`` — with a comment saying it no longer reproduces byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from eyechart.secrets import KEY_PLACEHOLDER, is_secret_name

INLINE_LIMIT = 256 << 10
_DATA_URI_SHOWN = 80  # data URIs shorter than this are shown whole
_UNSET: Any = object()  # ``secret`` not given: the real key is not known, every key header is masked
_DOUBLE_QUOTE_SPECIAL = frozenset('"$`\\!')  # what a shell would not keep literal inside "..."


# --- what is secret ---------------------------------------------------------------------------------


def env_name(header: str) -> str:
    """The environment variable a reproducer reads a secret header's value from (``X-Gateway-Token`` ->
    ``X_GATEWAY_TOKEN``, ``api-key`` -> ``API_KEY``)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", header).strip("_").upper() or "HEADER"
    return "_" + name if name[0].isdigit() else name


def _is_authorization(name: str) -> bool:
    return name.lower() == "authorization"


def masks(headers: Mapping[str, str] | None, secret: str | None = _UNSET) -> dict[str, str]:
    """Each secret value among what is sent -> the variable reference shown in its place.

    ``secret`` is the run's real key (masked wherever it occurs). Without it (not given) the key is
    taken to be the bearer token ``Authorization`` carries, and any other ``Authorization`` is masked."""
    headers = headers or {}
    key = _bearer_token(headers) if secret is _UNSET else secret
    found = {key: KEY_PLACEHOLDER} if key else {}
    for name, value in headers.items():
        if not value or not is_secret_name(name) or (key and key in value):
            continue
        if not _is_authorization(name) or secret is _UNSET:
            found.setdefault(value, "$" + env_name(name))
    return found


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        scheme, _, token = value.partition(" ")
        if _is_authorization(name) and scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def mask_text(text: str, found: Mapping[str, str]) -> str:
    """``text`` with every secret of ``found`` replaced by its reference (longest first)."""
    for value in sorted(found, key=len, reverse=True):
        text = text.replace(value, found[value])
    return text


def mask_bytes(data: bytes, found: Mapping[str, str]) -> bytes:
    """``data`` with every secret of ``found`` replaced by its reference (longest first)."""
    for value in sorted(found, key=len, reverse=True):
        data = data.replace(value.encode(), found[value].encode())
    return data


def shown_headers(headers: Mapping[str, str] | None, secret: str | None = _UNSET) -> dict[str, str]:
    """Headers as reports and reproducers show them: every secret replaced by its reference (see
    :func:`masks`). Idempotent: headers already shown are shown the same again."""
    found = masks(headers, secret)
    return {name: mask_text(value, found) for name, value in (headers or {}).items()}


def _references(headers: Mapping[str, str]) -> set[str]:
    """The variable references a shown header may hold (the key's, and each secret header's own)."""
    return {KEY_PLACEHOLDER, *("$" + env_name(n) for n in headers if is_secret_name(n))}


def shell_word(text: str, references: Collection[str]) -> str:
    """``text`` as one shell word in which each of ``references`` (``$NAME``) is expanded by the shell
    and everything else is kept literal: ``"X-Token: $X_TOKEN"`` when that is safe, else quoted pieces."""
    used = sorted((r for r in references if r in text), key=len, reverse=True)
    if not used:
        return shlex.quote(text)
    pieces = [p for p in re.split("(" + "|".join(map(re.escape, used)) + ")", text) if p]
    plain = all(
        not _DOUBLE_QUOTE_SPECIAL.intersection(p)
        if p not in used
        else not (i + 1 < len(pieces) and re.match(r"\w", pieces[i + 1]))  # "$X" then "abc": not "$Xabc"
        for i, p in enumerate(pieces)
    )
    if plain:
        return f'"{text}"'
    return "".join(f'"{p}"' if p in used else shlex.quote(p) for p in pieces)


# --- bodies -----------------------------------------------------------------------------------------


def summarize_data_uri(uri: str) -> str:
    """``data:image/png;base64,<55,000 base64 chars, sha256:ab12cd34ef56…>`` for a long data URI."""
    if len(uri) <= _DATA_URI_SHOWN:
        return uri
    head, comma, payload = uri.partition(",")
    if not comma:
        return uri[:_DATA_URI_SHOWN] + f"…<{len(uri):,} chars>"
    digest = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    unit = "base64 chars" if head.endswith(";base64") else "chars"
    return f"{head},<{len(payload):,} {unit}, sha256:{digest}…>"


def summarize_body(body: Any) -> Any:
    """A copy of a JSON body with every long data URI abbreviated (for reports and reproducers)."""
    if isinstance(body, str):
        return summarize_data_uri(body) if body.startswith("data:") else body
    if isinstance(body, dict):
        return {k: summarize_body(v) for k, v in body.items()}
    if isinstance(body, list):
        return [summarize_body(v) for v in body]
    return body


def encode_body(body: Any) -> bytes:
    """The exact bytes send() puts on the wire for a JSON body (the reproducer uses the same)."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a model id a server listed): send it as a JSON escape
        return json.dumps(body, separators=(",", ":")).encode("ascii")


def _streams(body: Any, raw: bytes | None) -> bool:
    """Does the request ask for a stream (then curl must not buffer: ``-N``)?"""
    if isinstance(body, dict):
        return body.get("stream") is True
    if raw is None or b'"stream"' not in raw:
        return False
    try:
        parsed = json.loads(raw)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


# --- the command --------------------------------------------------------------------------------------


def curl_reproducer(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    body_file: Path | None = None,
    inline_limit: int = INLINE_LIMIT,
    secret: str | None = _UNSET,
) -> str:
    """A shell command repeating the request; every secret is read from the environment (module doc).

    ``body`` is a JSON value (sent as ``encode_body``) or raw bytes/str. With ``body_file`` the exact body
    is written there and referenced; otherwise bodies over ``inline_limit`` are inlined abbreviated.
    ``secret``: the run's real key; see :func:`masks`.
    """
    raw: bytes | None
    if body is None:
        raw = None
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    else:
        raw = encode_body(body)
    found = masks(headers, secret)
    parts = ["curl -sS"]
    if _streams(body, raw):
        parts.append("-N")
    parts.append(f"-X {shlex.quote(method.upper())} {shlex.quote(url)}")
    shown = {name: mask_text(value, found) for name, value in (headers or {}).items()}
    references = _references(shown)
    parts += [f"-H {shell_word(f'{name}: {value}', references)}" for name, value in shown.items()]
    note = ""
    if raw is None:
        return " \\\n  ".join(parts)
    if body_file is not None:
        body_file.parent.mkdir(parents=True, exist_ok=True)
        body_file.write_bytes(raw)
        parts.append(f"--data-binary @{shlex.quote(str(body_file))}")
        return " \\\n  ".join(parts)
    text = mask_text(raw.decode("utf-8", "replace"), found)
    if len(raw) > inline_limit:
        try:
            text = json.dumps(summarize_body(json.loads(raw)), ensure_ascii=False, separators=(",", ":"))
            text = mask_text(text, found)
        except ValueError:
            text = text[:inline_limit] + "…"
        note = (
            f"# body abbreviated: the request was {len(raw):,} bytes; long data URIs are summarised,\n"
            "# so this shows the request's shape but does not reproduce it byte for byte\n"
            "# (a conformance run with a report folder writes the exact body of a finding to\n"
            "# <run>/bodies/ and this command then reads it with --data-binary @file).\n"
        )
    delimiter = "EYECHART_BODY"
    while delimiter in text.splitlines():
        delimiter += "_"
    parts.append(f"--data-binary @- <<'{delimiter}'")
    return note + " \\\n  ".join(parts) + f"\n{text}\n{delimiter}"
