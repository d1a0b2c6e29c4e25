"""The catalogue of breaks: each one way a real server breaks a clause of CONTRACT.md (sections 1-7, 9).

``BREAKS`` are violations (the suite must fail them); ``LEGAL_VARIANTS`` are legal oddities (CRLF framing,
keep-alive comments, extra keys, ``usage: null``) that the suite must NOT fail. Each entry names the
clause it touches, so a test can map it to the check(s) that guard that clause.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from faulty_targets.images import (
    BOMB_SIDE,
    data_uri_parts,
    declared_size,
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
    return ";charset=" in header.lower() or any(c.isspace() for c in payload) or len(payload) % 4 != 0


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


# ---------------------------------------------------------------- the catalogue


def _b(name: str, clause: str, description: str, **hooks: Any) -> Break:
    return Break(name=name, clause=clause, description=description, **hooks)


_CATALOGUE: list[Break] = [
    # 4. streaming: framing and sentinel
    _b("stream.no_done", "4 [DONE] last", "the stream ends without data: [DONE]", events=_drop_done),
    _b(
        "stream.data_after_done",
        "4 nothing after [DONE]",
        "a chunk is sent after [DONE]",
        events=_data_after_done,
    ),
    _b(
        "stream.invalid_json",
        "4 each event data: <json>",
        "an event whose data is truncated JSON",
        events=_invalid_json,
    ),
    _b(
        "stream.id_changes",
        "4 same id in all chunks",
        "every chunk has a different id",
        events=chunk_map(_id_changes),
    ),
    _b("stream.empty_id", "3/4 id non-empty", 'chunks carry id ""', events=_chunk_set("id", "")),
    _b(
        "stream.model_changes",
        "4 same model in all chunks",
        "odd chunks name another model",
        events=chunk_map(_model_changes),
    ),
    _b(
        "stream.object_wrong",
        "4 object chat.completion.chunk",
        "chunks say object chat.completion",
        events=_chunk_set("object", "chat.completion"),
    ),
    _b(
        "stream.created_string",
        "4 integer created",
        "chunks carry created as a string",
        events=_chunk_set("created", lambda v: str(v)),
    ),
    _b(
        "stream.no_role",
        "4 first delta has role assistant",
        "the first delta has no role",
        events=chunk_map(_role),
    ),
    _b(
        "stream.empty_role_later",
        "4 later role never empty",
        'deltas after the first carry role ""',
        events=chunk_map(_empty_role_later),
    ),
    _b(
        "stream.two_finish_reasons",
        "4 exactly one finish_reason",
        "the final chunk is sent twice",
        events=_two_finishes,
    ),
    _b(
        "stream.no_finish_reason",
        "4 exactly one finish_reason",
        "finish_reason stays null to the end",
        events=chunk_map(_no_finish),
    ),
    _b(
        "stream.finish_differs",
        "4 finish_reason equals unstreamed",
        "streamed finish_reason stop<->length",
        events=chunk_map(_swap_finish),
    ),
    _b(
        "stream.content_differs",
        "4 content equals unstreamed (SHOULD)",
        "one streamed delta is edited",
        events=chunk_map(_content_differs),
    ),
    _b(
        "stream.buffered",
        "4 incremental delivery",
        "the upstream generates slowly (20 ms per event) and the proxy holds the whole stream until the end",
        events=_slow_upstream,
        buffered=True,
    ),
    _b(
        "stream.json_content_type",
        "4 Content-Type text/event-stream",
        "streams are labelled application/json",
        head=_stream_ctype("application/json"),
    ),
    _b(
        "stream.error_as_sse",
        "4 request error with stream is plain JSON",
        "a request error with stream: true is sent as a 200 SSE stream holding an error event",
        response=_error_as_sse,
    ),
    # 4. usage chunk
    _b(
        "usage.include_usage_ignored",
        "4 include_usage -> one usage chunk",
        "the usage chunk is dropped",
        events=chunk_map(_drop_usage_chunk),
    ),
    _b(
        "usage.unasked_chunk",
        "4 no usage chunk without include_usage",
        "a usage chunk is sent although include_usage was not asked",
        request=_ask_usage,
    ),
    _b(
        "usage.every_chunk",
        "4 usage absent/null in other chunks",
        "every chunk carries a running usage",
        events=chunk_map(_usage_everywhere),
    ),
    _b(
        "usage.chunk_with_choices",
        "4 usage chunk has choices []",
        "usage rides on the final choice chunk",
        events=_usage_with_choices,
    ),
    _b(
        "usage.stream_completion_mismatch",
        "4 usage completion_tokens = streamed",
        "the usage chunk claims 3 more completion tokens",
        **usage_edit(_add_tokens("completion_tokens", 3), whole=False),
    ),
    _b(
        "usage.stream_prompt_mismatch",
        "4 stream prompt_tokens = unstreamed",
        "the usage chunk claims 11 more prompt tokens",
        **usage_edit(_add_tokens("prompt_tokens", 11), whole=False),
    ),
    # 3. response
    _b(
        "response.json_text_plain",
        "3 Content-Type application/json",
        "JSON answers labelled text/plain",
        response=_json_as_text,
    ),
    _b(
        "response.empty_id",
        "3 id non-empty",
        'the completion id is ""',
        response=json_response(_set_key("id", "")),
    ),
    _b(
        "response.object_wrong",
        "3 object chat.completion",
        "object is text_completion",
        response=json_response(_set_key("object", "text_completion")),
    ),
    _b(
        "response.created_string",
        "3 created integer seconds",
        "created is a string",
        response=json_response(_set_key("created", lambda v: str(v))),
    ),
    _b(
        "response.created_ms",
        "3 created integer seconds",
        "created is in milliseconds",
        response=json_response(_set_key("created", lambda v: v * 1000 if isinstance(v, int) else v)),
    ),
    _b(
        "response.model_empty",
        "3 model non-empty",
        'model is ""',
        response=json_response(_set_key("model", "")),
    ),
    _b(
        "response.role_wrong",
        "3 message.role assistant",
        'message.role is "model"',
        response=json_response(_message_edit("role", "model")),
    ),
    _b(
        "response.content_null",
        "3 content string",
        "message.content is null without tool calls",
        response=json_response(_message_edit("content", None)),
    ),
    _b(
        "finish.eos_token",
        "3/4 finish_reason enum",
        'finish_reason "eos_token" (both modes)',
        **both(_set_finish(lambda f: "eos_token")),
    ),
    _b(
        "finish.stop_when_capped",
        "3 cap reached -> length",
        'a capped answer says "stop" (both modes)',
        **both(_set_finish(lambda f: "stop" if f == "length" else f)),
    ),
    _b(
        "usage.missing",
        "3 usage required (default profile)",
        "no usage in the answer",
        response=json_response(_pop("usage")),
    ),
    _b(
        "usage.total_mismatch",
        "3 total = prompt + completion",
        "total_tokens is one more",
        **usage_edit(_add_tokens("total_tokens", 1), stream=False),
    ),
    _b(
        "usage.cost_negative",
        "3 estimated_cost non-negative",
        "estimated_cost is -0.001",
        **usage_edit(lambda ex, u: u.__setitem__("estimated_cost", -0.001)),
    ),
    _b(
        "usage.cost_missing",
        "3 estimated_cost present (default profile)",
        "no estimated_cost",
        **usage_edit(_pop("estimated_cost")),
    ),
    _b(
        "usage.over_max_tokens",
        "3 completion_tokens <= cap",
        "completion_tokens claims cap + 5",
        **usage_edit(_over_cap),
    ),
    # 1. auth and models
    _b("auth.none", "1 wrong key -> 401", "any key (or none) is accepted", request=_any_key),
    _b(
        "auth.missing_key_ok",
        "1 missing key -> 401",
        "a request without a key gets a 200",
        request=_missing_key_ok,
    ),
    _b(
        "auth.401_as_sse",
        "1 401 with stream is plain JSON",
        "the 401 of a streamed request is SSE",
        response=_401_as_sse,
    ),
    _b("models.404", "1 GET /models", "/models answers 404", request=_models_404),
    _b(
        "models.malformed",
        "1 models list shape",
        "/models drops object and per-model fields",
        response=json_response(_models_malformed, chat=False),
    ),
    _b(
        "models.model_missing",
        "1 models lists the model (SHOULD)",
        "/models lists another model only",
        response=json_response(_models_missing, chat=False),
    ),
    # 6. errors
    _b(
        "errors.detail_envelope",
        "6 error envelope",
        'errors are {"detail": ...} (FastAPI default)',
        response=error_response(_detail_envelope),
    ),
    _b(
        "errors.object_error_envelope",
        "6 error envelope",
        'errors are {"object":"error",...} (old vLLM)',
        response=error_response(_object_error),
    ),
    _b(
        "errors.integer_code",
        "6 code str|null (SHOULD)",
        "error.code is the integer status",
        response=error_response(_edit_error(_int_code)),
    ),
    _b(
        "errors.missing_keys",
        "6 all four keys (SHOULD)",
        "error has only message",
        response=error_response(_edit_error(_only_message)),
    ),
    _b(
        "errors.stack_trace",
        "6 no stack traces (SHOULD)",
        "error messages end in a Python traceback",
        response=error_response(_edit_error(_stack_trace)),
    ),
    _b(
        "errors.5xx_for_4xx",
        "6 client mistakes are 4xx",
        "every client error (but 401) is a 500",
        response=_all_5xx,
    ),
    _b(
        "errors.invented_answer",
        "5/6 refuse, never invent",
        "every client error (but 401) becomes a 200 with an invented answer",
        response=_invent,
    ),
    _b(
        "errors.bad_image_500",
        "5/6 bad image -> 4xx",
        "a refused image request is answered 500",
        response=_bad_image_500,
    ),
    # 5. images
    _b(
        "images.zero_tokens",
        "5 image adds prompt_tokens",
        "images are counted as 0 prompt tokens",
        request=lambda ex: _images_as_tokens(ex, 0),
        **usage_edit(_fake_prompt),
    ),
    _b(
        "images.one_token",
        "5/9 image counted as 1 token",
        "each image is counted as 1 prompt token",
        request=lambda ex: _images_as_tokens(ex, 1),
        **usage_edit(_fake_prompt),
    ),
    _b(
        "images.url_tokens_differ",
        "5 URL and base64 same prompt_tokens",
        "URL images cost 17 more tokens",
        **usage_edit(_url_extra),
    ),
    _b(
        "images.webp_dropped", "5 WebP accepted", "WebP images are silently removed (200)", request=_drop_webp
    ),
    _b(
        "images.data_uri_variant_500",
        "5 data-URI variants never 5xx",
        "a charset parameter, unpadded base64 or line breaks give a 500",
        request=_data_uri_500,
    ),
    _b(
        "images.url_unsupported",
        "5 URL transport",
        "http(s) image URLs are refused with 400",
        request=_no_urls,
    ),
    _b(
        "images.non_image_accepted",
        "5 non-images -> 4xx",
        "GIF/BMP/HTML/text bytes are swapped for a PNG and answered 200",
        request=_accept_non_images,
    ),
    _b(
        "images.size_not_enforced",
        "5 over the limit -> 400/413",
        "images over 20 MiB are answered 200",
        request=_no_size_limit,
    ),
    _b(
        "images.size_refused_early",
        "5 up to 20 MB accepted",
        "images over 1 MB are refused with 413",
        request=_early_limit,
    ),
    _b(
        "images.too_many_accepted",
        "5 too many images -> 4xx",
        "a refused multi-image request is retried with its first image only and answered 200",
        response=_keep_first_image,
    ),
    _b(
        "images.tiny_500",
        "5 very small images work",
        "an image with a side under 28 px gives a 500",
        request=lambda ex: _size_500(ex, lambda w, h: min(w, h) < 28),
    ),
    _b(
        "images.detail_500",
        "5 detail ignored or 4xx",
        "any image_url.detail gives a 500",
        request=_detail_500,
    ),
    _b(
        "images.bomb_500",
        "7 decompression bomb -> 4xx",
        "an image declaring over 89,478,485 pixels gives a 500",
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
    _b("sse.crlf", "4 framing (legal)", "lines end in CRLF", events=_noop, frame=_framer("\r\n")),
    _b("sse.cr", "4 framing (legal)", "lines end in CR", events=_noop, frame=_framer("\r")),
    _b(
        "sse.no_space",
        "4 framing (legal)",
        "no space after data:",
        events=_noop,
        frame=_framer("\n", "data:"),
    ),
    _b(
        "sse.comments",
        "4 framing (legal)",
        "a keep-alive comment before every event",
        events=_noop,
        frame=_framer("\n", comment=True),
    ),
    _b(
        "sse.multiline",
        "4 framing (legal)",
        "each JSON is split over several data: lines",
        events=_noop,
        frame=_multiline,
    ),
    _b(
        "sse.paced",
        "4 incremental (legal)",
        "events are paced 20 ms apart and sent as they come",
        events=_slow_upstream,
    ),
    _b("json.extra_keys", "2 extra keys legal", "unknown keys in answers and chunks", **both(_extra_keys)),
    _b(
        "stream.usage_null", "4 usage null legal", "usage: null in every chunk", events=chunk_map(_usage_null)
    ),
    _b(
        "response.canonical_model",
        "3 longer canonical model id",
        "model is reported as vendor/<model>-canonical",
        **both(_canonical_model),
    ),
]

LEGAL_VARIANTS: dict[str, Break] = {b.name: b for b in _LEGAL}
