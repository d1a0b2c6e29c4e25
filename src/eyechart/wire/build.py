"""The request builder: chat requests assembled from parts and checked against request.json before sending.

A request the harness builds wrong must never be blamed on the server, so ``chat_request`` validates its
result (``check_request``, which ``eyechart.conform``'s session also runs before sending) and raises
``HarnessBug`` on any schema problem. Probes that send an invalid request on purpose
(an empty ``messages``, ``image_url`` as a bare string, ``max_tokens: 0``) say so with ``validate=False``
or build the body with ``raw_request``::

    req = chat_request(model, [system("Be brief."), user(image_part(data_uri(png)), "What colour?")],
                       stream=True, include_usage=True, max_tokens=32, profile=profile, temperature=0)
    bad = raw_request(model=model, messages=[user_raw({"type": "image_url", "image_url": "https://x"})])
"""

from __future__ import annotations

import base64
from typing import Any

from eyechart.profiles import Profile

Part = dict[str, Any]
Message = dict[str, Any]


class HarnessBug(Exception):
    """The harness built a request that breaks its own input schema: a bug here, not in the server.

    Not an ``AssertionError``, so a conformance check that hits one ends as a harness error, never as a
    finding against the target."""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,<payload>`` for raw image bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def text_part(text: str) -> Part:
    return {"type": "text", "text": text}


def image_part(url: str, detail: str | None = None) -> Part:
    """An image by http(s) URL or data URI; ``detail`` (auto, low, high) only when given (most servers
    do not support it)."""
    image: dict[str, Any] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _parts(items: tuple[str | Part, ...]) -> list[Part]:
    return [text_part(item) if isinstance(item, str) else item for item in items]


def user(*parts_or_text: str | Part) -> Message:
    """A user turn: one string stays a string; anything else becomes a list of parts (strings → text)."""
    if len(parts_or_text) == 1 and isinstance(parts_or_text[0], str):
        return {"role": "user", "content": parts_or_text[0]}
    return {"role": "user", "content": _parts(parts_or_text)}


def user_raw(*content: Any) -> Message:
    """A user turn with content parts taken as given (for deliberately malformed probes)."""
    return {"role": "user", "content": list(content)}


def system(text: str) -> Message:
    return {"role": "system", "content": text}


def assistant(text: str | None) -> Message:
    """An earlier assistant turn (``None`` content is legal)."""
    return {"role": "assistant", "content": text}


def raw_request(**fields: Any) -> dict[str, Any]:
    """A request body exactly as given, never validated: for probes that must be invalid."""
    return dict(fields)


def chat_request(
    model: str,
    messages: list[Message],
    *,
    stream: bool = False,
    include_usage: bool | None = None,
    max_tokens: int | None = None,
    profile: Profile | None = None,
    validate: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """A chat completions body. ``max_tokens`` goes under the profile's ``max_tokens_param``;
    ``include_usage`` (streams only) becomes ``stream_options``; other options (temperature, seed, stop,
    top_p, n, vendor keys) are copied. Raises ``HarnessBug`` if the result breaks request.json for the
    profile, unless ``validate=False``."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
        if include_usage is not None:
            body["stream_options"] = {"include_usage": include_usage}
    elif include_usage is not None and validate:
        raise HarnessBug("include_usage only applies to streamed requests")
    if max_tokens is not None:
        param = profile.max_tokens_param if profile is not None else "max_tokens"
        body[param] = max_tokens
    body.update(options)
    if validate:
        check_request(body, profile)
    return body


def check_request(body: Any, profile: Profile | None = None) -> None:
    """Raise ``HarnessBug`` naming the first problems if ``body`` breaks request.json for ``profile``."""
    from eyechart.wire.schemas import problems  # jsonschema only when a request is really checked

    found = problems("request", body, profile)
    if found:
        listed = "; ".join(str(p) for p in found[:5])
        raise HarnessBug(f"the harness built an invalid request ({len(found)} problem(s)): {listed}")
