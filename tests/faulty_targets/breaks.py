"""The catalogue of breaks: each one way a real server breaks a clause of conformance/CONTRACT.md.

``BREAKS`` are violations: each names its clause id and, in ``catches``, the check ids that must report
it (the proof that those checks can fail). ``LEGAL_VARIANTS`` are legal oddities (CRLF framing,
keep-alive comments, extra keys, ``usage: null``) that the suite must NOT fail; an INFO check that
records one names it in ``catches`` too. ``SETUPS`` says how a run is set up to see a break (profile
overrides, the target's model, a fixture server announced on a public address...).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import ipaddress
import json
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from eyechart.images import MUST_MODES, SHOULD_MODES
from faulty_targets.images import (
    BOMB_SIDE,
    data_uri_parts,
    declared_size,
    decode_data_uri,
    image_bytes,
    image_parts,
    remove_parts,
    set_url,
    small_png_data_uri,
    sniff,
    url_of,
)
from faulty_targets.proxy import Break, EventTransform, Exchange, Reply, StreamHead

ACCEPTED_FORMATS = ("jpeg", "png", "webp")
LIMIT_BYTES = 20_971_520
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/opt/server/api/handlers.py", line 212, in chat\n'
    '    image = load_image(part)\n  File "/opt/server/api/images.py", line 48, in load_image\n'
    "ValueError: could not decode"
)


# ---------------------------------------------------------------- helpers


def error_reply(status: int, message: str, etype: str = "invalid_request_error") -> Reply:
    return Reply.of_json(status, {"error": {"message": message, "type": etype, "param": None, "code": None}})


def server_error() -> Reply:
    return error_reply(500, "Internal Server Error", "server_error")


def invented_answer(ex: Exchange) -> Reply:
    """A confident 200 for a request the server should have refused (the worst kind of failure)."""
    model = ex.body.get("model", "model") if isinstance(ex.body, dict) else "model"
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "The image shows a cat."},
        "finish_reason": "stop",
    }
    usage = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18, "estimated_cost": 0.0}
    if ex.stream:
        base = {
            "id": "chatcmpl-invented",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
        }
        events = [
            json.dumps(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": "The image shows a cat."},
                            "finish_reason": None,
                        }
                    ],
                }
            ),
            json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            "[DONE]",
        ]
        return Reply.of_events(200, events)
    import time

    return Reply.of_json(
        200,
        {
            "id": "chatcmpl-invented",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        },
    )


def is_client_error(reply: Reply) -> bool:
    return 400 <= reply.status < 500 and reply.status != 401


def is_chunk(e: str) -> bool:
    return e != "[DONE]"


def chunk_map(fn: Callable[[Exchange, int, dict[str, Any]], dict[str, Any] | None]) -> EventTransform:
    """An event transform from a per-chunk function (None drops the chunk); [DONE] and junk pass."""

    async def transform(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
        i = 0
        async for e in events:
            if e == "[DONE]":
                yield e
                continue
            try:
                chunk = json.loads(e)
            except ValueError:
                yield e
                continue
            out = fn(ex, i, chunk) if isinstance(chunk, dict) else chunk
            i += 1
            if out is not None:
                yield json.dumps(out)

    return transform


def is_usage_chunk(c: dict[str, Any]) -> bool:
    return c.get("choices") == [] and isinstance(c.get("usage"), dict)


def json_response(
    fn: Callable[[Exchange, dict[str, Any]], None], *, chat: bool = True, ok_only: bool = True
) -> Callable[[Exchange, Reply], Any]:
    """A response hook editing the JSON body of successful chat (or models) replies in place."""

    async def hook(ex: Exchange, reply: Reply) -> Reply:
        if (ex.is_chat if chat else ex.is_models) and (reply.status == 200 or not ok_only):
            body = reply.json()
            if isinstance(body, dict):
                fn(ex, body)
                reply.set_json(body, reply.headers.get("content-type", "application/json"))
        return reply

    return hook


def error_response(fn: Callable[[Exchange, Reply], Reply]) -> Callable[[Exchange, Reply], Any]:
    """A response hook applied to error replies (status >= 400)."""

    async def hook(ex: Exchange, reply: Reply) -> Reply:
        return fn(ex, reply) if reply.status >= 400 else reply

    return hook


def error_message(reply: Reply) -> tuple[str, str]:
    body = reply.json()
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", "")), str(err.get("type", "invalid_request_error"))
    return reply.body.decode(errors="replace")[:200], "invalid_request_error"


def choices(body: dict[str, Any]) -> list[dict[str, Any]]:
    ch = body.get("choices")
    return [c for c in ch if isinstance(c, dict)] if isinstance(ch, list) else []


def cap_of(ex: Exchange) -> int | None:
    if not isinstance(ex.body, dict):
        return None
    for key in ("max_completion_tokens", "max_tokens"):
        if isinstance(ex.body.get(key), int):
            return int(ex.body[key])
    return None


def both(fn: Callable[[Exchange, dict[str, Any]], None]) -> dict[str, Any]:
    """Hooks applying ``fn`` to the unstreamed body and to every streamed chunk."""

    def per_chunk(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
        fn(ex, c)
        return c

    return {"response": json_response(fn), "events": chunk_map(per_chunk)}


def usage_edit(
    fn: Callable[[Exchange, dict[str, Any]], None], *, stream: bool = True, whole: bool = True
) -> dict[str, Any]:
    """Hooks applying ``fn`` to ``usage`` of the unstreamed body and/or of the usage chunk."""

    def on_body(ex: Exchange, body: dict[str, Any]) -> None:
        if isinstance(body.get("usage"), dict):
            fn(ex, body["usage"])

    def per_chunk(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
        if isinstance(c.get("usage"), dict):
            fn(ex, c["usage"])
        return c

    hooks: dict[str, Any] = {}
    if whole:
        hooks["response"] = json_response(on_body)
    if stream:
        hooks["events"] = chunk_map(per_chunk)
    return hooks


def _add_tokens(field: str, n: int) -> Callable[[Exchange, dict[str, Any]], None]:
    def fn(ex: Exchange, usage: dict[str, Any]) -> None:
        if isinstance(usage.get(field), int):
            usage[field] += n
            if isinstance(usage.get("total_tokens"), int):
                usage["total_tokens"] += n

    return fn


# ---------------------------------------------------------------- stream breaks


async def _drop_done(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    async for e in events:
        if e != "[DONE]":
            yield e


async def _data_after_done(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    last = None
    async for e in events:
        yield e
        if e == "[DONE]" and last is not None:
            yield last
        last = e


async def _invalid_json(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    n = 0
    async for e in events:
        yield e
        n += 1
        if n == 1:
            yield '{"id": "chatcmpl-x", "choices": [{"index": 0, "delta": {"content": "tru'


async def _two_finishes(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    async for e in events:
        yield e
        if is_chunk(e):
            c = json.loads(e)
            for ch in choices(c):
                if ch.get("finish_reason") is not None:
                    dup = copy.deepcopy(c)
                    dup["choices"] = [
                        {"index": ch.get("index", 0), "delta": {}, "finish_reason": ch["finish_reason"]}
                    ]
                    yield json.dumps(dup)
                    break


def _role(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    for ch in choices(c):
        if isinstance(ch.get("delta"), dict):
            ch["delta"].pop("role", None)
    return c


def _empty_role_later(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    seen = ex.state.setdefault("seen_choices", set())
    for ch in choices(c):
        idx = ch.get("index", 0)
        if idx in seen and isinstance(ch.get("delta"), dict):
            ch["delta"]["role"] = ""
        seen.add(idx)
    return c


def _set_finish(mapping: Callable[[Any], Any]) -> Callable[[Exchange, dict[str, Any]], None]:
    def fn(ex: Exchange, body: dict[str, Any]) -> None:
        for ch in choices(body):
            if ch.get("finish_reason") is not None:
                ch["finish_reason"] = mapping(ch["finish_reason"])

    return fn


def _swap_finish(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    _set_finish(lambda f: "length" if f == "stop" else "stop")(ex, c)
    return c


def _no_finish(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    for ch in choices(c):
        ch["finish_reason"] = None
    return c


def _content_differs(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    if not ex.state.get("changed"):
        for ch in choices(c):
            d = ch.get("delta")
            if isinstance(d, dict) and isinstance(d.get("content"), str) and d["content"]:
                d["content"] = d["content"] + " (edited)"
                ex.state["changed"] = True
                break
    return c


def _id_changes(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    c["id"] = f"{c.get('id', 'chatcmpl')}-{i}"
    return c


def _model_changes(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    if i % 2 == 1:
        c["model"] = f"{c.get('model', 'model')}-shard{i}"
    return c


def _set_key(key: str, value: Any) -> Callable[[Exchange, dict[str, Any]], None]:
    def fn(ex: Exchange, body: dict[str, Any]) -> None:
        body[key] = value(body.get(key)) if callable(value) else value

    return fn


def _chunk_set(key: str, value: Any) -> EventTransform:
    def fn(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
        _set_key(key, value)(ex, c)
        return c

    return chunk_map(fn)


def _drop_usage_chunk(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any] | None:
    return None if is_usage_chunk(c) else c


async def _ask_usage(ex: Exchange) -> None:
    if ex.is_chat and ex.stream and not ex.include_usage:
        ex.body["stream_options"] = {"include_usage": True}


def _usage_everywhere(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    if not is_usage_chunk(c):
        c["usage"] = {"prompt_tokens": 0, "completion_tokens": i, "total_tokens": i}
    return c


async def _usage_with_choices(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    held: dict[str, Any] | None = None
    async for e in events:
        c = json.loads(e) if is_chunk(e) else None
        if c is not None and any(ch.get("finish_reason") for ch in choices(c)):
            held = c
            continue
        if c is not None and is_usage_chunk(c) and held is not None:
            held["usage"] = c["usage"]
            yield json.dumps(held)
            held = None
            continue
        if held is not None:
            yield json.dumps(held)
            held = None
        yield e
    if held is not None:
        yield json.dumps(held)


async def _slow_upstream(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Pace events 20 ms apart, as a GPU decoding token by token would."""
    async for e in events:
        await asyncio.sleep(0.02)
        yield e


def _stream_ctype(ctype: str) -> Callable[[Exchange, StreamHead], None]:
    def fn(ex: Exchange, head: StreamHead) -> None:
        head.headers["content-type"] = ctype

    return fn


async def _json_as_text(ex: Exchange, reply: Reply) -> Reply:
    if ex.is_chat and reply.status == 200 and not ex.stream:
        reply.headers["content-type"] = "text/plain; charset=utf-8"
    return reply


async def _error_as_sse(ex: Exchange, reply: Reply) -> Reply:
    if ex.is_chat and ex.stream and is_client_error(reply):
        return Reply.of_events(200, [reply.body.decode(errors="replace")])
    return reply


async def _401_as_sse(ex: Exchange, reply: Reply) -> Reply:
    if ex.stream and reply.status == 401:
        return Reply.of_events(401, [reply.body.decode(errors="replace")])
    return reply


# ---------------------------------------------------------------- auth and models


def _upstream_key(ex: Exchange) -> str:
    if not ex.api_key:
        raise RuntimeError("this break needs breaking_proxy(..., api_key=<the upstream's key>)")
    return f"Bearer {ex.api_key}"


async def _any_key(ex: Exchange) -> None:
    ex.headers["authorization"] = _upstream_key(ex)


async def _missing_key_ok(ex: Exchange) -> None:
    if "authorization" not in ex.headers:
        ex.headers["authorization"] = _upstream_key(ex)


async def _models_404(ex: Exchange) -> Reply | None:
    if ex.is_models and ex.method == "GET":
        return Reply.of_json(404, {"detail": "Not Found"})
    return None


def _models_malformed(ex: Exchange, body: dict[str, Any]) -> None:
    body.pop("object", None)
    body["data"] = [{"id": m.get("id")} for m in body.get("data", []) if isinstance(m, dict)]


def _models_missing(ex: Exchange, body: dict[str, Any]) -> None:
    body["data"] = [
        {"id": "some-other-model", "object": "model", "created": 1_700_000_000, "owned_by": "someone"}
    ]


# ---------------------------------------------------------------- usage and finish


def _over_cap(ex: Exchange, usage: dict[str, Any]) -> None:
    cap = cap_of(ex)
    if cap is not None and isinstance(usage.get("completion_tokens"), int):
        extra = cap + 5 - usage["completion_tokens"]
        usage["completion_tokens"] += extra
        if isinstance(usage.get("total_tokens"), int):
            usage["total_tokens"] += extra


def _pop(key: str) -> Callable[[Exchange, dict[str, Any]], None]:
    def fn(ex: Exchange, d: dict[str, Any]) -> None:
        d.pop(key, None)

    return fn


def _message_edit(key: str, value: Any) -> Callable[[Exchange, dict[str, Any]], None]:
    def fn(ex: Exchange, body: dict[str, Any]) -> None:
        for ch in choices(body):
            if isinstance(ch.get("message"), dict):
                ch["message"][key] = value

    return fn


# ---------------------------------------------------------------- errors


def _detail_envelope(ex: Exchange, reply: Reply) -> Reply:
    msg, _ = error_message(reply)
    return Reply.of_json(reply.status, {"detail": msg})


def _object_error(ex: Exchange, reply: Reply) -> Reply:
    msg, etype = error_message(reply)
    return Reply.of_json(
        reply.status, {"object": "error", "message": msg, "type": etype, "param": None, "code": reply.status}
    )


def _edit_error(fn: Callable[[Reply, dict[str, Any]], None]) -> Callable[[Exchange, Reply], Reply]:
    def hook(ex: Exchange, reply: Reply) -> Reply:
        body = reply.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            fn(reply, body["error"])
            reply.set_json(body)
        return reply

    return hook


def _int_code(reply: Reply, err: dict[str, Any]) -> None:
    err["code"] = reply.status


def _only_message(reply: Reply, err: dict[str, Any]) -> None:
    for k in ("type", "param", "code"):
        err.pop(k, None)


def _stack_trace(reply: Reply, err: dict[str, Any]) -> None:
    err["message"] = f"{err.get('message', '')}\n{TRACEBACK}"


async def _all_5xx(ex: Exchange, reply: Reply) -> Reply:
    if is_client_error(reply):
        reply.status = 500
    return reply


async def _bad_image_500(ex: Exchange, reply: Reply) -> Reply:
    if ex.is_chat and image_parts(ex.body) and is_client_error(reply):
        return server_error()
    return reply


async def _invent(ex: Exchange, reply: Reply) -> Reply:
    if ex.is_chat and is_client_error(reply):
        return invented_answer(ex)
    return reply


# ---------------------------------------------------------------- images


async def _images_as_tokens(ex: Exchange, per_image: int) -> None:
    """Measure the text-only prompt (same request, images removed) so usage can pretend images are free."""
    parts = image_parts(ex.body)
    if not ex.is_chat or not parts:
        return
    text_only = copy.deepcopy(ex.body)
    remove_parts(text_only, image_parts(text_only))
    text_only.pop("stream", None)
    text_only.pop("stream_options", None)
    text_only["max_tokens"] = 1
    text_only.pop("max_completion_tokens", None)
    reply = await ex.send(text_only)
    usage = (reply.json() or {}).get("usage") if reply.status == 200 else None
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        ex.state["prompt_tokens"] = usage["prompt_tokens"] + per_image * len(parts)


def _fake_prompt(ex: Exchange, usage: dict[str, Any]) -> None:
    new = ex.state.get("prompt_tokens")
    if new is not None and isinstance(usage.get("prompt_tokens"), int):
        delta = new - usage["prompt_tokens"]
        usage["prompt_tokens"] = new
        if isinstance(usage.get("total_tokens"), int):
            usage["total_tokens"] += delta


def _url_extra(ex: Exchange, usage: dict[str, Any]) -> None:
    n = sum(1 for p in image_parts(ex.body) if url_of(p).startswith(("http://", "https://")))
    _add_tokens("prompt_tokens", 17 * n)(ex, usage)


async def _drop_webp(ex: Exchange) -> None:
    parts = image_parts(ex.body)
    webp = [p for p in parts if sniff((await image_bytes(ex, url_of(p))) or b"") == "webp"]
    if webp:
        remove_parts(ex.body, webp)


def _odd_data_uri(url: str) -> bool:
    parts = data_uri_parts(url)
    if parts is None:
        return False
    header, payload = parts
    odd_header = ";charset=" in header.lower() or header.lower().startswith("data:image/jpg;")
    return odd_header or any(c.isspace() for c in payload) or len(payload) % 4 != 0


async def _data_uri_500(ex: Exchange) -> Reply | None:
    if any(_odd_data_uri(url_of(p)) for p in image_parts(ex.body)):
        return server_error()
    return None


async def _no_urls(ex: Exchange) -> Reply | None:
    if any(url_of(p).startswith(("http://", "https://")) for p in image_parts(ex.body)):
        return error_reply(400, "Image URLs are not supported; send the image as a base64 data URI.")
    return None


async def _accept_non_images(ex: Exchange) -> None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p))
        if data is not None and sniff(data) not in ACCEPTED_FORMATS:
            set_url(p, small_png_data_uri())


async def _no_size_limit(ex: Exchange) -> None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p))
        if data is not None and len(data) > LIMIT_BYTES:
            set_url(p, small_png_data_uri())


async def _early_limit(ex: Exchange) -> Reply | None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p), limit=2_000_000)
        if data is not None and len(data) > 1_000_000:
            return error_reply(413, "Image too large: the limit is 1 MB.")
    return None


async def _keep_first_image(ex: Exchange, reply: Reply) -> Reply:
    parts = image_parts(ex.body)
    if ex.is_chat and len(parts) > 1 and is_client_error(reply):
        body = copy.deepcopy(ex.body)
        remove_parts(body, image_parts(body)[1:])
        return await ex.send(body)
    return reply


async def _size_500(ex: Exchange, test: Callable[[int, int], bool]) -> Reply | None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p))
        size = declared_size(data) if data else None
        if size is not None and test(*size):
            return server_error()
    return None


async def _detail_500(ex: Exchange) -> Reply | None:
    for p in image_parts(ex.body):
        if isinstance(p.get("image_url"), dict) and "detail" in p["image_url"]:
            return server_error()
    return None


# ---------------------------------------------------------------- requests a strict or narrow server refuses


def _messages(body: Any) -> list[dict[str, Any]]:
    msgs = body.get("messages") if isinstance(body, dict) else None
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def _parts(msg: dict[str, Any]) -> list[dict[str, Any]]:
    content = msg.get("content")
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _refuse_if(test: Callable[[Any], bool], message: str) -> Callable[[Exchange], Awaitable[Reply | None]]:
    """A request hook answering 400 ``message`` to the chat requests ``test`` picks."""

    async def hook(ex: Exchange) -> Reply | None:
        if ex.is_chat and test(ex.body):
            return error_reply(400, message)
        return None

    return hook


def _user_string(body: Any) -> bool:
    return any(m.get("role") == "user" and isinstance(m.get("content"), str) for m in _messages(body))


def _user_text_only_parts(body: Any) -> bool:
    return any(
        m.get("role") == "user" and _parts(m) and not any(p.get("type") == "image_url" for p in _parts(m))
        for m in _messages(body)
    )


def _user_image_without_text(body: Any) -> bool:
    return any(
        m.get("role") == "user" and _parts(m) and not any(p.get("type") == "text" for p in _parts(m))
        for m in _messages(body)
    )


def _has_role(role: str) -> Callable[[Any], bool]:
    return lambda body: any(m.get("role") == role for m in _messages(body))


def _assistant_not_plain(body: Any) -> bool:
    return any(
        m.get("role") == "assistant" and m.get("content") in ("", None) for m in _messages(body)
    ) or any(m.get("role") == "assistant" and isinstance(m.get("content"), list) for m in _messages(body))


def _sampling_options(body: Any) -> bool:
    return isinstance(body, dict) and (
        any(k in body for k in ("temperature", "top_p", "seed", "stop")) or body.get("stream") is False
    )


def _cap_params(body: Any) -> bool:
    return isinstance(body, dict) and any(k in body for k in ("max_tokens", "max_completion_tokens"))


_KNOWN_KEYS = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens"}
_KNOWN_KEYS |= {"temperature", "top_p", "seed", "stop", "n"}


def _unknown_keys(body: Any) -> bool:
    return isinstance(body, dict) and (
        bool(set(body) - _KNOWN_KEYS) or any(set(m) - {"role", "content", "name"} for m in _messages(body))
    )


def _any_image(body: Any) -> bool:
    return bool(image_parts(body))


def _several_images(body: Any) -> bool:
    return len(image_parts(body)) > 1


async def _one_route_style(ex: Exchange) -> Reply | None:
    if ex.path.startswith("/v1/") and not ex.path.startswith("/v1/openai/"):
        return error_reply(404, f"no route {ex.path}", "not_found")
    return None


async def _models_open(ex: Exchange) -> None:
    if ex.is_models and "authorization" not in ex.headers and ex.api_key:
        ex.headers["authorization"] = f"Bearer {ex.api_key}"


def _no_strict_fields(ex: Exchange, body: dict[str, Any]) -> None:
    for ch in choices(body):
        ch.pop("logprobs", None)
        if isinstance(ch.get("message"), dict):
            ch["message"].pop("refusal", None)


async def _ignore_stop(ex: Exchange) -> None:
    if ex.is_chat and isinstance(ex.body, dict):
        ex.body.pop("stop", None)


async def _422_for_4xx(ex: Exchange, reply: Reply) -> Reply:
    if is_client_error(reply):
        reply.status = 422
    return reply


async def _ignore_n(ex: Exchange) -> None:
    if ex.is_chat and isinstance(ex.body, dict):
        ex.body.pop("n", None)


# ---------------------------------------------------------------- images a narrow server mishandles


async def _mislabel_500(ex: Exchange) -> Reply | None:
    """500 when a data URI's media type disagrees with its bytes (a server trusting the label)."""
    for p in image_parts(ex.body):
        parts = data_uri_parts(url_of(p))
        data = decode_data_uri(url_of(p))
        if parts is None or not data:
            continue
        labelled = parts[0].removeprefix("data:").split(";")[0].removeprefix("image/").replace("jpg", "jpeg")
        if labelled and sniff(data) in ("jpeg", "png", "gif", "webp") and sniff(data) != labelled:
            return server_error()
    return None


def _baseline_rgb(data: bytes) -> bool:
    """Is this what a naive decoder handles: 8-bit RGB baseline JPEG or PNG, upright?"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                return (
                    im.format in ("JPEG", "PNG")
                    and im.mode == "RGB"
                    and not im.info.get("progressive")
                    and not im.info.get("progression")
                    and im.getexif().get(0x0112) in (None, 1)
                )
        except Exception:
            return True  # not an image at all: another check's business


async def _modes_500(ex: Exchange) -> Reply | None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p))
        if data and not _baseline_rgb(data):
            return server_error()
    return None


async def _drop_earlier_images(ex: Exchange) -> None:
    users = [m for m in _messages(ex.body) if m.get("role") == "user"]
    doomed = [p for m in users[:-1] for p in _parts(m) if p.get("type") == "image_url"]
    if doomed:
        remove_parts(ex.body, doomed)


async def _truncate_prompt(ex: Exchange) -> None:
    """A server that silently cuts an over-long prompt instead of refusing it."""
    for m in _messages(ex.body):
        if isinstance(m.get("content"), str) and len(m["content"]) > 20_000:
            m["content"] = m["content"][:2_000]
        for part in _parts(m):
            if isinstance(part.get("text"), str) and len(part["text"]) > 20_000:
                part["text"] = part["text"][:2_000]


def _url_answer_differs(ex: Exchange, body: dict[str, Any]) -> None:
    if any(url_of(p).startswith(("http://", "https://")) for p in image_parts(ex.body)):
        for ch in choices(body):
            if isinstance(ch.get("message"), dict) and isinstance(ch["message"].get("content"), str):
                ch["message"]["content"] += " (fetched)"


async def _note_big_image(ex: Exchange) -> None:
    for p in image_parts(ex.body):
        data = await image_bytes(ex, url_of(p))
        size = declared_size(data) if data else None
        if size is not None and max(size) >= 1000:
            ex.state["big_image"] = True


def _big_image_cheap(ex: Exchange, usage: dict[str, Any]) -> None:
    if ex.state.get("big_image") and isinstance(usage.get("prompt_tokens"), int):
        cut = usage["prompt_tokens"] - max(1, usage["prompt_tokens"] // 10)
        usage["prompt_tokens"] -= cut
        if isinstance(usage.get("total_tokens"), int):
            usage["total_tokens"] -= cut


def _blind(ex: Exchange, body: dict[str, Any]) -> None:
    if image_parts(ex.body):
        _message_edit("content", "I cannot tell what is in the image.")(ex, body)


# ---------------------------------------------------------------- errors in the middle of a stream


def _error_event() -> str:
    return json.dumps(
        {"error": {"message": "the engine stopped", "type": "server_error", "param": None, "code": None}}
    )


async def _error_then_end(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    async for e in events:
        yield e
        yield _error_event()
        return


async def _error_then_more(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    first = True
    async for e in events:
        yield e
        if first:
            yield _error_event()
            first = False


# ---------------------------------------------------------------- n > 1 and extra roles (capabilities the
# reference target lacks, added by the proxy so a faithful run can pass the checks that need them)


async def _fan_out_n(ex: Exchange) -> Reply | None:
    n = ex.body.get("n") if ex.is_chat and isinstance(ex.body, dict) else None
    if not isinstance(n, int) or n < 2 or ex.stream:
        return None
    one = {k: v for k, v in ex.body.items() if k != "n"}
    replies = [await ex.send(one) for _ in range(n)]
    if any(r.status != 200 for r in replies):
        return next(r for r in replies if r.status != 200)
    merged = replies[0].json()
    merged["choices"] = [{**r.json()["choices"][0], "index": i} for i, r in enumerate(replies)]
    return Reply.of_json(200, merged)


async def _developer_as_system(ex: Exchange) -> None:
    for m in _messages(ex.body):
        if m.get("role") == "developer":
            m["role"] = "system"


# ---------------------------------------------------------------- image fetching (security)

# The fixture server's address as a test run announces it (--fixture-url): a global address, so the
# address probes run. Nothing connects to it: ``fixture.public_front`` maps it to 127.0.0.1.
PUBLIC_FIXTURE_HOST = "93.184.215.14"


def _loopback_equivalent(host: str) -> str | None:
    """The loopback address a URL host stands for (decimal, octal and mapped forms too), else None."""
    host = host.strip("[]")
    if host == PUBLIC_FIXTURE_HOST:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return None
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_loopback:
        return f"[{address}]" if address.version == 6 else str(address)
    return None


async def _public_front(ex: Exchange) -> None:
    """Route the announced public fixture address to the fixture server on 127.0.0.1."""
    for p in image_parts(ex.body):
        url = url_of(p)
        if urlsplit(url).hostname == PUBLIC_FIXTURE_HOST:
            set_url(p, url.replace(PUBLIC_FIXTURE_HOST, "127.0.0.1", 1))


async def _fetch_anything(ex: Exchange, url: str) -> bytes:
    """Fetch like a server without an address policy, but only ever connect to loopback: a URL on a
    private or link-local address (which nothing of ours serves) 'answers' with a small image."""
    for _ in range(4):
        parts = urlsplit(url)
        loop = _loopback_equivalent(parts.hostname or "")
        if parts.scheme not in ("http", "https") or loop is None:
            break
        local = parts._replace(netloc=f"{loop}:{parts.port or 80}").geturl()
        try:
            r = await ex.client.get(local, timeout=httpx.Timeout(5.0))
        except httpx.HTTPError:
            break
        if r.status_code in (301, 302, 303, 307, 308) and "location" in r.headers:
            url = str(httpx.URL(url).join(r.headers["location"]))
            continue
        if r.status_code == 200 and sniff(r.content) in ACCEPTED_FORMATS:
            return r.content
        break
    return decode_data_uri(small_png_data_uri()) or b""


async def _fetches_private(ex: Exchange) -> None:
    for p in image_parts(ex.body):
        url = url_of(p)
        if url.startswith(("http://", "https://")):
            data = await _fetch_anything(ex, url)
            set_url(p, f"data:image/{sniff(data)};base64," + base64.b64encode(data).decode())


async def _scheme_500(ex: Exchange) -> Reply | None:
    for p in image_parts(ex.body):
        if not url_of(p).startswith(("http://", "https://", "data:")):
            return server_error()
    return None


async def _slow_fetch_accepted(ex: Exchange) -> None:
    """A server that waits out slow, lying or endless image URLs and answers with what it got."""
    for p in image_parts(ex.body):
        path = urlsplit(url_of(p)).path
        if path.startswith(("/drip/", "/lying-length/", "/huge")):
            set_url(p, small_png_data_uri())


# ---------------------------------------------------------------- deviations real servers have (issue 10)


def _empty_stream(ex: Exchange) -> Reply:
    return Reply(200, {"content-type": "text/event-stream"}, b"")


def _unterminated_stream(ex: Exchange) -> Reply:
    model = ex.body.get("model", "model") if isinstance(ex.body, dict) else "model"
    delta = {"index": 0, "delta": {"role": "assistant", "content": "The"}, "finish_reason": None}
    chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": model}
    return Reply(
        200,
        {"content-type": "text/event-stream"},
        f"data: {json.dumps({**chunk, 'choices': [delta]})}\n\n".encode(),
    )


def _bad_image_stream(make: Callable[[Exchange], Reply]) -> Callable[[Exchange, Reply], Awaitable[Reply]]:
    """A refused streamed image request answered with a 200 event stream (llama.cpp's empty one)."""

    async def hook(ex: Exchange, reply: Reply) -> Reply:
        if ex.is_chat and ex.stream and image_parts(ex.body) and is_client_error(reply):
            return make(ex)
        return reply

    return hook


async def _drop_odd_parts(ex: Exchange) -> None:
    for m in _messages(ex.body):
        if isinstance(m.get("content"), list):
            m["content"] = [
                p
                for p in m["content"]
                if isinstance(p, dict)
                and (
                    p.get("type") == "text"
                    or (p.get("type") == "image_url" and isinstance(p.get("image_url"), dict))
                )
            ]


FILE_READ_LIMIT = 8 << 20


async def _read_local_files(ex: Exchange) -> None:
    """A server that takes any image url it can make sense of: a local path, file://, raw base64."""
    for p in image_parts(ex.body):
        url = url_of(p)
        if url.startswith(("http://", "https://", "data:")):
            continue
        path = urlsplit(url).path if url.startswith("file:") else url
        if path.startswith("/"):
            try:
                with open(path, "rb") as f:  # a real local read, on the harness's own host
                    data = f.read(FILE_READ_LIMIT)
            except OSError:
                continue
            set_url(p, f"data:image/{sniff(data)};base64," + base64.b64encode(data).decode())
        else:
            set_url(p, "data:image/png;base64," + url)


async def _ignore_completion_cap(ex: Exchange) -> None:
    body = ex.body if ex.is_chat and isinstance(ex.body, dict) else {}
    if "max_tokens" not in body and isinstance(body.pop("max_completion_tokens", None), int):
        body["max_tokens"] = 24  # the server's own default cap applies


# ---------------------------------------------------------------- how a run is set up to see a break


@dataclass(frozen=True)
class Setup:
    """What a run needs, beyond the default profile against the reference target, to see a break.

    ``overrides``: profile knobs (``--set``); ``model_profile``: the reference target's simulated model;
    ``strict_fetch``: the faithful target refuses private URLs (no ``--allow-private-urls``) and the
    fixture server is announced on a public address, so the address probes run; ``always``: legal
    variants every run of the setup goes through; ``clean_with``: legal variants only the faithful run
    goes through (a capability the reference target lacks, or the legal form of the fault).
    """

    name: str
    overrides: tuple[str, ...] = ()
    model_profile: str | None = None
    strict_fetch: bool = False
    always: tuple[str, ...] = ()
    clean_with: tuple[str, ...] = ()


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("default"),
        Setup("strict_fetch", strict_fetch=True, always=("fixture.public_front",)),
        Setup(
            "four_images", overrides=("max_images=4", 'token_rule="llava-1.5"'), model_profile="llava-1.5-7b"
        ),
        Setup(
            "roles_and_n",
            overrides=('roles=["system", "developer", "user", "assistant"]', "n_supported=true"),
            clean_with=("request.n_fan_out", "request.developer_as_system"),
        ),
        Setup("midstream_error", clean_with=("stream.error_event_ends",)),
    )
}

# ---------------------------------------------------------------- the catalogue

REFUSED_FORMATS = ("avif", "bmp", "gif", "html", "svg", "text", "tiff")
CLIENT_MISTAKES = (
    "unknown_model",
    "empty_messages",
    "missing_messages",
    "empty_content",
    "image_url_string",
    "body_not_object",
)
ADDRESS_FORMS = ("loopback", "metadata", "private_range", "ipv6_loopback", "ipv4_mapped", "decimal", "octal")
LOOPBACK_FORMS = ("loopback", "ipv6_loopback", "ipv4_mapped", "decimal", "octal")


def _b(name: str, clause: str, description: str, catches: tuple[str, ...] = (), **hooks: Any) -> Break:
    return Break(name=name, clause=clause, description=description, catches=catches, **hooks)


_CATALOGUE: list[Break] = [
    # streaming: framing and sentinel
    _b(
        "stream.no_done",
        "stream.done",
        "the stream ends without data: [DONE]",
        ("stream.done_sentinel",),
        events=_drop_done,
    ),
    _b(
        "stream.data_after_done",
        "stream.done",
        "a chunk is sent after [DONE]",
        ("stream.nothing_after_done",),
        events=_data_after_done,
    ),
    _b(
        "stream.invalid_json",
        "stream.events",
        "an event whose data is truncated JSON",
        ("stream.valid_json",),
        events=_invalid_json,
    ),
    _b(
        "stream.id_changes",
        "stream.same_id",
        "every chunk has a different id",
        ("stream.same_id",),
        events=chunk_map(_id_changes),
    ),
    _b(
        "stream.empty_id",
        "stream.chunk",
        'chunks carry id ""',
        ("stream.chunk_schema",),
        events=_chunk_set("id", ""),
    ),
    _b(
        "stream.model_changes",
        "stream.same_id",
        "odd chunks name another model",
        ("stream.same_model",),
        events=chunk_map(_model_changes),
    ),
    _b(
        "stream.object_wrong",
        "stream.chunk",
        "chunks say object chat.completion",
        ("stream.chunk_schema",),
        events=_chunk_set("object", "chat.completion"),
    ),
    _b(
        "stream.created_string",
        "stream.chunk",
        "chunks carry created as a string",
        ("stream.chunk_schema",),
        events=_chunk_set("created", lambda v: str(v)),
    ),
    _b(
        "stream.no_role",
        "stream.roles",
        "the first delta has no role",
        ("stream.first_delta_role",),
        events=chunk_map(_role),
    ),
    _b(
        "stream.empty_role_later",
        "stream.roles",
        'deltas after the first carry role ""',
        ("stream.later_role_not_empty",),
        events=chunk_map(_empty_role_later),
    ),
    _b(
        "stream.two_finish_reasons",
        "stream.finish_reason",
        "the final chunk is sent twice",
        ("stream.one_finish_reason",),
        events=_two_finishes,
    ),
    _b(
        "stream.no_finish_reason",
        "stream.finish_reason",
        "finish_reason stays null to the end",
        ("stream.one_finish_reason",),
        events=chunk_map(_no_finish),
    ),
    _b(
        "stream.finish_differs",
        "stream.finish_reason",
        "streamed finish_reason stop<->length",
        ("stream.finish_reason_matches",),
        events=chunk_map(_swap_finish),
    ),
    _b(
        "stream.content_differs",
        "stream.content",
        "one streamed delta is edited",
        ("stream.content_matches",),
        events=chunk_map(_content_differs),
    ),
    _b(
        "stream.buffered",
        "stream.incremental",
        "the upstream generates slowly (20 ms per event) and the proxy holds the whole stream until the end",
        ("stream.incremental",),
        events=_slow_upstream,
        buffered=True,
    ),
    _b(
        "stream.json_content_type",
        "stream.content_type",
        "streams are labelled application/json",
        ("stream.content_type",),
        head=_stream_ctype("application/json"),
    ),
    _b(
        "stream.error_as_sse",
        "stream.errors",
        "a request error with stream: true is sent as a 200 SSE stream holding an error event",
        ("stream.error_plain_json", "stream.bad_image_plain_json"),
        response=_error_as_sse,
    ),
    Break(
        name="stream.data_after_error",
        clause="stream.error_event",
        description="an error event in the middle of a stream, and the stream goes on",
        catches=("stream.error_event_last",),
        setup="midstream_error",
        events=_error_then_more,
    ),
    # streaming: the usage chunk
    _b(
        "usage.include_usage_ignored",
        "stream.usage",
        "the usage chunk is dropped",
        ("stream.usage_chunk",),
        events=chunk_map(_drop_usage_chunk),
    ),
    _b(
        "usage.unasked_chunk",
        "stream.usage",
        "a usage chunk is sent although include_usage was not asked",
        ("stream.no_unasked_usage",),
        request=_ask_usage,
    ),
    _b(
        "usage.every_chunk",
        "stream.usage",
        "every chunk carries a running usage",
        ("stream.usage_chunk",),
        events=chunk_map(_usage_everywhere),
    ),
    _b(
        "usage.chunk_with_choices",
        "stream.usage",
        "usage rides on the final choice chunk",
        ("stream.usage_chunk",),
        events=_usage_with_choices,
    ),
    _b(
        "usage.stream_completion_mismatch",
        "stream.usage",
        "the usage chunk claims 3 more completion tokens",
        ("stream.usage_matches",),
        **usage_edit(_add_tokens("completion_tokens", 3), whole=False),
    ),
    _b(
        "usage.stream_prompt_mismatch",
        "stream.usage",
        "the usage chunk claims 11 more prompt tokens",
        ("stream.usage_matches", "tokens.stream_equals_nonstream"),
        **usage_edit(_add_tokens("prompt_tokens", 11), whole=False),
    ),
    # responses
    _b(
        "response.json_text_plain",
        "response.content_type",
        "JSON answers labelled text/plain",
        ("response.content_type",),
        response=_json_as_text,
    ),
    _b(
        "response.empty_id",
        "response.shape",
        'the completion id is ""',
        ("response.schema",),
        response=json_response(_set_key("id", "")),
    ),
    _b(
        "response.object_wrong",
        "response.shape",
        "object is text_completion",
        ("response.schema",),
        response=json_response(_set_key("object", "text_completion")),
    ),
    _b(
        "response.created_string",
        "response.shape",
        "created is a string",
        ("response.schema",),
        response=json_response(_set_key("created", lambda v: str(v))),
    ),
    _b(
        "response.created_ms",
        "response.created",
        "created is in milliseconds",
        ("response.created_recent",),
        response=json_response(_set_key("created", lambda v: v * 1000 if isinstance(v, int) else v)),
    ),
    _b(
        "response.model_empty",
        "response.shape",
        'model is ""',
        ("response.schema",),
        response=json_response(_set_key("model", "")),
    ),
    _b(
        "response.role_wrong",
        "response.shape",
        'message.role is "model"',
        ("response.schema",),
        response=json_response(_message_edit("role", "model")),
    ),
    _b(
        "response.content_null",
        "response.shape",
        "message.content is null without tool calls",
        ("response.schema",),
        response=json_response(_message_edit("content", None)),
    ),
    _b(
        "response.no_strict_fields",
        "response.strict_spec",
        "message.refusal and choices[].logprobs are left out",
        ("response.strict_spec",),
        response=json_response(_no_strict_fields),
    ),
    _b(
        "finish.eos_token",
        "response.shape",
        'finish_reason "eos_token" (both modes)',
        ("response.schema", "stream.chunk_schema"),
        **both(_set_finish(lambda f: "eos_token")),
    ),
    _b(
        "finish.stop_when_capped",
        "response.finish_reason",
        'a capped answer says "stop" (both modes)',
        ("response.finish_length",),
        **both(_set_finish(lambda f: "stop" if f == "length" else f)),
    ),
    _b(
        "finish.length_when_natural",
        "response.finish_reason",
        'an answer that ended by itself says "length"',
        ("response.finish_stop_natural",),
        response=json_response(_set_finish(lambda f: "length" if f == "stop" else f)),
    ),
    _b(
        "finish.stop_string_ignored",
        "response.finish_reason",
        "the stop option is ignored: the answer runs past the stop string",
        ("response.finish_stop_string",),
        request=_ignore_stop,
    ),
    _b(
        "usage.missing",
        "response.shape",
        "no usage in the answer",
        ("response.schema", "response.usage_total"),
        response=json_response(_pop("usage")),
    ),
    _b(
        "usage.total_mismatch",
        "response.usage",
        "total_tokens is one more",
        ("response.usage_total",),
        **usage_edit(_add_tokens("total_tokens", 1), stream=False),
    ),
    _b(
        "usage.cost_negative",
        "response.usage",
        "estimated_cost is -0.001",
        ("response.estimated_cost",),
        **usage_edit(lambda ex, u: u.__setitem__("estimated_cost", -0.001)),
    ),
    _b(
        "usage.cost_missing",
        "response.usage",
        "no estimated_cost",
        ("response.estimated_cost",),
        **usage_edit(_pop("estimated_cost")),
    ),
    _b(
        "usage.over_max_tokens",
        "response.cap",
        "completion_tokens claims cap + 5",
        ("response.cap_respected",),
        **usage_edit(_over_cap),
    ),
    # endpoints, auth and models
    _b(
        "endpoints.one_route_style",
        "endpoints.base",
        "only /v1/openai is served; /v1/... answers 404",
        ("endpoints.other_route_style",),
        request=_one_route_style,
    ),
    _b("auth.none", "auth.key", "any key (or none) is accepted", ("auth.wrong_key",), request=_any_key),
    _b(
        "auth.missing_key_ok",
        "auth.key",
        "a request without a key gets a 200",
        ("auth.missing_key",),
        request=_missing_key_ok,
    ),
    _b(
        "auth.models_open",
        "auth.key",
        "GET /models answers without a key",
        ("auth.models_key",),
        request=_models_open,
    ),
    _b(
        "auth.401_as_sse",
        "auth.stream",
        "the 401 of a streamed request is SSE",
        ("auth.stream_plain_json",),
        response=_401_as_sse,
    ),
    _b("models.404", "models.list", "/models answers 404", ("models.list",), request=_models_404),
    _b(
        "models.malformed",
        "models.list",
        "/models drops object and per-model fields",
        ("models.list",),
        response=json_response(_models_malformed, chat=False),
    ),
    _b(
        "models.model_missing",
        "models.list",
        "/models lists another model only",
        ("models.lists_model",),
        response=json_response(_models_missing, chat=False),
    ),
    # requests a narrow server refuses
    _b(
        "request.string_content_refused",
        "request.content",
        "a user message with string content is refused (400)",
        ("request.content_string", "request.multi_turn"),
        request=_refuse_if(_user_string, "content must be a list of parts"),
    ),
    _b(
        "request.text_parts_refused",
        "request.content",
        "a user message of text parts without an image is refused (400)",
        ("request.content_text_parts",),
        request=_refuse_if(_user_text_only_parts, "a message needs an image"),
    ),
    _b(
        "request.image_only_refused",
        "request.content",
        "a user message with an image and no text is refused (400)",
        ("request.image_only",),
        request=_refuse_if(_user_image_without_text, "a message needs a text part"),
    ),
    _b(
        "request.system_refused",
        "request.messages",
        "system messages are refused (400)",
        ("request.role_system", "request.role_system_parts"),
        request=_refuse_if(_has_role("system"), "role system is not supported"),
    ),
    _b(
        "request.assistant_turn_strict",
        "request.content",
        "an assistant turn with empty or parts content is refused (400)",
        ("request.assistant_empty", "request.assistant_parts"),
        request=_refuse_if(_assistant_not_plain, "assistant content must be a non-empty string"),
    ),
    _b(
        "request.options_refused",
        "request.options",
        "temperature, top_p, seed, stop and stream: false are refused (400)",
        tuple(
            f"request.option[{o}]"
            for o in (
                "temperature_0",
                "temperature_1_3",
                "top_p",
                "seed",
                "stop_string",
                "stop_list",
                "stream_false",
            )
        ),
        request=_refuse_if(_sampling_options, "unsupported sampling parameter"),
    ),
    _b(
        "request.cap_params_refused",
        "request.token_cap",
        "max_tokens and max_completion_tokens are refused (400)",
        ("request.option_max_tokens", "request.option_other_cap"),
        request=_refuse_if(_cap_params, "unsupported parameter: token cap"),
    ),
    _b(
        "request.extra_keys_refused",
        "request.extra_keys",
        "unknown keys in the request or a message are refused (400, extra=forbid)",
        ("request.extra_keys",),
        request=_refuse_if(_unknown_keys, "extra inputs are not permitted"),
    ),
    Break(
        name="request.developer_refused",
        clause="request.messages",
        description="the developer role is refused (400) although the profile lists it",
        catches=("request.profile_roles",),
        setup="roles_and_n",
        request=_refuse_if(_has_role("developer"), "role developer is not supported"),
    ),
    Break(
        name="request.n_ignored",
        clause="request.n",
        description="n is ignored: n=2 gets one choice",
        catches=("request.option_n",),
        setup="roles_and_n",
        request=_ignore_n,
    ),
    # errors
    _b(
        "errors.detail_envelope",
        "errors.envelope",
        'errors are {"detail": ...} (FastAPI default)',
        ("errors.client_mistake.unknown_model", "errors.client_mistake.empty_messages"),
        response=error_response(_detail_envelope),
    ),
    _b(
        "errors.object_error_envelope",
        "errors.envelope",
        'errors are {"object":"error",...} (old vLLM)',
        ("errors.client_mistake.empty_messages",),
        response=error_response(_object_error),
    ),
    _b(
        "errors.integer_code",
        "errors.envelope",
        "error.code is the integer status",
        ("errors.code_string",),
        response=error_response(_edit_error(_int_code)),
    ),
    _b(
        "errors.missing_keys",
        "errors.envelope",
        "error has only message",
        ("errors.envelope_fields",),
        response=error_response(_edit_error(_only_message)),
    ),
    _b(
        "errors.stack_trace",
        "errors.no_internals",
        "error messages end in a Python traceback",
        ("errors.no_internals",),
        response=error_response(_edit_error(_stack_trace)),
    ),
    _b(
        "errors.5xx_for_4xx",
        "errors.client_mistakes",
        "every client error (but 401) is a 500",
        (
            *(f"errors.client_mistake.{c}" for c in CLIENT_MISTAKES),
            *(f"images.format_refused.{f}" for f in REFUSED_FORMATS),
            "images.invalid_base64",
            "images.empty_datauri",
            "images.url_unreachable",
            "images.url_404",
            "limits.size_refuse",
            "limits.context_length",
        ),
        response=_all_5xx,
    ),
    _b(
        "errors.422_for_4xx",
        "errors.client_mistakes",
        "every client error (but 401) is a 422",
        tuple(f"errors.status.{c}" for c in CLIENT_MISTAKES),
        response=_422_for_4xx,
    ),
    _b(
        "errors.invented_answer",
        "errors.client_mistakes",
        "every client error (but 401) becomes a 200 with an invented answer",
        (
            "errors.client_mistake.empty_messages",
            "errors.client_mistake.image_url_string",
            "images.empty_datauri",
            "images.truncated_jpeg",
        ),
        response=_invent,
    ),
    _b(
        "errors.bad_image_500",
        "images.bad_input",
        "a refused image request is answered 500",
        ("images.format_refused.gif", "images.truncated_jpeg", "images.url_404", "images.url_html"),
        response=_bad_image_500,
    ),
    # images
    _b(
        "images.text_only_model",
        "images.transport",
        "the model takes no images: every image request is refused (400)",
        (
            "endpoints.chat_completions",
            "request.content_image_parts",
            "images.transport.base64",
            "images.format_accepted.jpeg",
            "images.format_accepted.png",
            "images.mode.jpeg-rgb",
            "images.multi_image",
            "images.more_images_more_tokens",
            "tokens.bigger_image_no_fewer",
            "limits.size_accept",
            "capability.colours",
            "capability.ocr",
        ),
        request=_refuse_if(_any_image, "this model does not accept images"),
    ),
    _b(
        "images.zero_tokens",
        "images.counting",
        "images are counted as 0 prompt tokens",
        ("images.image_counts",),
        request=lambda ex: _images_as_tokens(ex, 0),
        **usage_edit(_fake_prompt),
    ),
    _b(
        "images.one_token",
        "images.counting",
        "each image is counted as 1 prompt token",
        ("images.image_counts",),
        request=lambda ex: _images_as_tokens(ex, 1),
        **usage_edit(_fake_prompt),
    ),
    _b(
        "images.several_refused",
        "images.counting",
        "a request with more than one image is refused (400)",
        (
            "images.multi_image",
            "images.multi_turn",
            "images.more_images_more_tokens",
            "images.same_image_twice",
        ),
        request=_refuse_if(_several_images, "only one image per request"),
    ),
    _b(
        "images.earlier_turns_dropped",
        "images.counting",
        "images of earlier user turns are silently removed",
        ("images.multi_turn",),
        request=_drop_earlier_images,
    ),
    _b(
        "images.url_tokens_differ",
        "tokens.invariants",
        "URL images cost 17 more tokens",
        ("tokens.url_equals_base64",),
        **usage_edit(_url_extra),
    ),
    _b(
        "images.url_answer_differs",
        "tokens.invariants",
        "answers about URL images get ' (fetched)' appended",
        ("tokens.url_equals_base64_answer",),
        response=json_response(_url_answer_differs),
    ),
    _b(
        "tokens.big_images_cheaper",
        "tokens.invariants",
        "an image of 1000 px or more is billed a tenth of the prompt",
        ("tokens.bigger_image_no_fewer",),
        request=_note_big_image,
        **usage_edit(_big_image_cheap, stream=False),
    ),
    _b(
        "images.webp_dropped",
        "images.formats",
        "WebP images are silently removed (200)",
        ("images.format_accepted.webp", "images.mode.webp-lossy"),
        request=_drop_webp,
    ),
    _b(
        "images.mislabelled_500",
        "images.formats",
        "a data URI whose media type disagrees with its bytes gives a 500",
        ("images.mislabelled_png_as_jpeg", "images.mislabelled_gif_as_png"),
        request=_mislabel_500,
    ),
    _b(
        "images.modes_500",
        "images.modes",
        "anything but an upright 8-bit RGB baseline JPEG or PNG gives a 500",
        (
            *(f"images.mode.{m}" for m in MUST_MODES if m not in ("jpeg-rgb", "size-1x1", "size-27x300")),
            *(f"images.mode.{m}" for m in SHOULD_MODES),
        ),
        request=_modes_500,
    ),
    _b(
        "images.data_uri_variant_500",
        "images.data_uri",
        "image/jpg, a charset parameter, unpadded base64 or line breaks give a 500",
        (
            "images.datauri_variant.image_jpg",
            "images.datauri_variant.charset",
            "images.datauri_variant.unpadded",
            "images.datauri_variant.line_breaks",
        ),
        request=_data_uri_500,
    ),
    _b(
        "images.url_unsupported",
        "images.transport",
        "http(s) image URLs are refused with 400",
        ("images.transport.url",),
        request=_no_urls,
    ),
    _b(
        "images.non_image_accepted",
        "images.formats",
        "GIF/BMP/HTML/text bytes are swapped for a PNG and answered 200",
        (
            *(f"images.format_refused.{f}" for f in REFUSED_FORMATS),
            "images.mislabelled_gif_as_png",
            "images.url_html",
        ),
        request=_accept_non_images,
    ),
    _b(
        "images.size_not_enforced",
        "limits.size",
        "images over 20 MiB are answered 200",
        ("limits.size_refuse",),
        request=_no_size_limit,
    ),
    _b(
        "images.size_refused_early",
        "limits.size",
        "images over 1 MB are refused with 413",
        ("limits.size_accept",),
        request=_early_limit,
    ),
    Break(
        name="images.too_many_accepted",
        clause="limits.image_count",
        description="a refused multi-image request is retried with its first image only and answered 200",
        catches=("limits.too_many_images",),
        setup="four_images",
        response=_keep_first_image,
    ),
    Break(
        name="tokens.fixed_image_cost",
        clause="tokens.rules",
        description="every image is billed 100 prompt tokens, whatever the model's rule",
        catches=("tokens.formula",),
        setup="four_images",
        request=lambda ex: _images_as_tokens(ex, 100),
        **usage_edit(_fake_prompt),
    ),
    _b(
        "images.tiny_500",
        "images.modes",
        "an image with a side under 28 px gives a 500",
        ("images.mode.size-1x1", "images.mode.size-27x300"),
        request=lambda ex: _size_500(ex, lambda w, h: min(w, h) < 28),
    ),
    _b(
        "images.big_side_500",
        "images.modes",
        "an image with a side of 4000 px or more gives a 500",
        ("images.large_side", "images.extreme_aspect"),
        request=lambda ex: _size_500(ex, lambda w, h: max(w, h) >= 4000),
    ),
    _b(
        "images.detail_500",
        "images.detail",
        "any image_url.detail gives a 500",
        ("images.detail",),
        request=_detail_500,
    ),
    _b(
        "limits.prompt_truncated",
        "limits.context",
        "an over-long prompt is silently cut to 2,000 characters and answered 200",
        ("limits.context_length",),
        request=_truncate_prompt,
    ),
    _b(
        "capability.blind_model",
        "images.capability",
        "the model answers every image question without looking",
        ("capability.colours", "capability.ocr"),
        response=json_response(_blind),
    ),
    # deviations real servers have
    _b(
        "stream.bad_image_empty_200",
        "stream.errors",
        "a refused image request with stream: true gets an empty 200 event stream (llama.cpp)",
        ("stream.bad_image_plain_json",),
        response=_bad_image_stream(_empty_stream),
    ),
    _b(
        "stream.bad_image_unterminated_200",
        "stream.errors",
        "a refused image request with stream: true gets a 200 event stream cut off after one chunk",
        ("stream.bad_image_plain_json",),
        response=_bad_image_stream(_unterminated_stream),
    ),
    _b(
        "errors.odd_parts_dropped",
        "errors.content_parts",
        "content parts of an unknown type, and image_url parts without image_url, are silently dropped",
        ("errors.content_part.no_image_url", "errors.content_part.unknown_type"),
        request=_drop_odd_parts,
    ),
    _b(
        "errors.local_file_read",
        "errors.image_url",
        "an image url that is a local path or file:// is read from disk; raw base64 is decoded",
        ("errors.image_url.bare_path", "errors.image_url.raw_base64", "errors.image_url.file_url"),
        request=_read_local_files,
    ),
    _b(
        "request.max_completion_tokens_ignored",
        "request.token_cap",
        "max_completion_tokens is accepted but ignored (the server's default cap of 24 applies)",
        ("request.max_completion_tokens_honoured",),
        request=_ignore_completion_cap,
    ),
    # security of image fetching
    Break(
        name="security.proxy_fetches_private",
        clause="security.fetch",
        description="image URLs are fetched without an address policy (loopback for real; private and "
        "link-local addresses, which nothing of ours serves, answered with a small image)",
        catches=(
            *(f"security.private_address.{f}" for f in ADDRESS_FORMS),
            "security.redirect_to_private.loopback",
            "security.redirect_to_private.metadata",
        ),
        setup="strict_fetch",
        request=_fetches_private,
    ),
    Break(
        name="security.target_fetches_private",
        clause="security.fetch",
        description="the reference target itself with --allow-private-urls (only loopback forms are sent)",
        catches=(
            *(f"security.private_address.{f}" for f in LOOPBACK_FORMS),
            "security.redirect_to_private.loopback",
        ),
        setup="strict_fetch",
        upstream="private_fetching",
    ),
    _b(
        "security.scheme_500",
        "security.schemes",
        "file://, ftp:// and gopher:// image URLs give a 500",
        ("security.scheme.file", "security.scheme.ftp", "security.scheme.gopher"),
        request=_scheme_500,
    ),
    _b(
        "security.slow_fetch_accepted",
        "security.slow_fetch",
        "images from dripping, lying or endless URLs are accepted with what came (200)",
        (
            "security.slow_drip",
            "security.lying_length.longer",
            "security.lying_length.shorter",
            "security.size_cap_streaming",
        ),
        request=_slow_fetch_accepted,
    ),
    _b(
        "images.bomb_500",
        "security.bomb",
        "an image declaring over 89,478,485 pixels gives a 500",
        ("security.decompression_bomb",),
        request=lambda ex: _size_500(ex, lambda w, h: w * h > 89_478_485 or w >= BOMB_SIDE),
    ),
]

BREAKS: dict[str, Break] = {b.name: b for b in _CATALOGUE}


# ---------------------------------------------------------------- legal variants (must NOT fail)


def _framer(sep: str, prefix: str = "data: ", comment: bool = False) -> Callable[[str], bytes]:
    def frame(data: str) -> bytes:
        lead = f": keep-alive{sep}{sep}" if comment else ""
        return f"{lead}{prefix}{data}{sep}{sep}".encode()

    return frame


def _multiline(data: str) -> bytes:
    text = data if data == "[DONE]" else json.dumps(json.loads(data), indent=1)
    return ("".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode()


def _extra_keys(ex: Exchange, body: dict[str, Any]) -> None:
    body["x_vendor"] = {"region": "eu", "cache": True}
    for ch in choices(body):
        ch["x_shard"] = 3


def _usage_null(ex: Exchange, i: int, c: dict[str, Any]) -> dict[str, Any]:
    c.setdefault("usage", None)
    return c


def _canonical_model(ex: Exchange, body: dict[str, Any]) -> None:
    if isinstance(body.get("model"), str):
        body["model"] = f"vendor/{body['model']}-canonical"


async def _noop(ex: Exchange, events: AsyncIterator[str]) -> AsyncIterator[str]:
    async for e in events:
        yield e


_LEGAL: list[Break] = [
    _b("sse.crlf", "stream.framing", "lines end in CRLF", events=_noop, frame=_framer("\r\n")),
    _b("sse.cr", "stream.framing", "lines end in CR", events=_noop, frame=_framer("\r")),
    _b(
        "sse.no_space",
        "stream.framing",
        "no space after data:",
        events=_noop,
        frame=_framer("\n", "data:"),
    ),
    _b(
        "sse.comments",
        "stream.framing",
        "a keep-alive comment before every event (recorded as INFO by stream.framing)",
        ("stream.framing",),
        events=_noop,
        frame=_framer("\n", comment=True),
    ),
    _b(
        "sse.multiline",
        "stream.framing",
        "each JSON is split over several data: lines",
        events=_noop,
        frame=_multiline,
    ),
    _b(
        "sse.paced",
        "stream.incremental",
        "events are paced 20 ms apart and sent as they come",
        events=_slow_upstream,
    ),
    _b("json.extra_keys", "request.extra_keys", "unknown keys in answers and chunks", **both(_extra_keys)),
    _b("stream.usage_null", "stream.usage", "usage: null in every chunk", events=chunk_map(_usage_null)),
    _b(
        "response.canonical_model",
        "response.shape",
        "model is reported as vendor/<model>-canonical",
        **both(_canonical_model),
    ),
    _b(
        "stream.error_event_ends",
        "stream.error_event",
        "an error event after the first chunk, and then the end",
        events=_error_then_end,
    ),
    _b(
        "request.n_fan_out",
        "request.n",
        "n > 1 served by asking the upstream n times (the reference target serves n = 1 only)",
        request=_fan_out_n,
    ),
    _b(
        "request.developer_as_system",
        "request.messages",
        "the developer role served as system (the reference target knows three roles)",
        request=_developer_as_system,
    ),
    _b(
        "fixture.public_front",
        "security.fetch",
        f"image URLs on the announced fixture address {PUBLIC_FIXTURE_HOST} go to 127.0.0.1"
        " (no traffic leaves the host)",
        request=_public_front,
    ),
]

LEGAL_VARIANTS: dict[str, Break] = {b.name: b for b in _LEGAL}
