"""The reference target's HTTP side: routes, and the path of a chat request from arrival to answer.

Routes exist in both styles (``/v1/openai/...`` as in the default profile, ``/v1/...`` as in OpenAI),
plus ``/health`` and ``/metrics``. Every client mistake is a 4xx with the OpenAI error envelope
``{"error": {"message", "type", "param", "code"}}``; anything unexpected is a 500 envelope with a
generic message (the traceback goes to the server log, never to the client). With ``stream: true`` a
request error is still a plain JSON response: the SSE stream only starts once the request is accepted.

A request goes: auth → JSON → schema (the harness's own request schema) → semantic checks
(``request``) → images (decoded and measured; data URIs in a thread) → token accounting → engine
queue → answer (``answer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eyechart.target import tokens
from eyechart.target.answer import Answer, SSEResponse, is_injected, start_answer
from eyechart.target.decode import DecodedImage, ImageRejected
from eyechart.target.engine import QueueFull
from eyechart.target.engine import Sequence as EngineSequence
from eyechart.target.models import ModelProfile
from eyechart.target.prom import CONTENT_TYPE as PROM_CONTENT_TYPE
from eyechart.target.request import (
    ApiError,
    ImageRef,
    bad,
    check_auth,
    check_schema,
    error_response,
    internal_error,
    parse_chat,
    read_json,
)
from eyechart.target.state import ServeConfig, TargetState

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("eyechart.target")

KV_ANSWER_RESERVE = 256  # KV tokens reserved for an answer without max_tokens


def create_app(config: ServeConfig) -> Starlette:
    state = TargetState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        flusher = asyncio.create_task(_flush_periodically(state))
        try:
            yield
        finally:
            flusher.cancel()
            await state.stop()

    async def chat(request: Request) -> Response:
        return await handle_chat(state, request)

    async def models(request: Request) -> Response:
        try:
            check_auth(request, state.config.api_key)
        except ApiError as err:
            state.metrics.count_request("models", err.status)
            return error_response(err)
        state.metrics.count_request("models", 200)
        return JSONResponse({"object": "list", "data": [model_card(state.profile)]})

    async def model_one(request: Request) -> Response:
        try:
            check_auth(request, state.config.api_key)
            name = request.path_params["model"]
            if name != state.profile.model_id:
                raise ApiError(
                    404, f"The model '{name}' does not exist", param="model", code="model_not_found"
                )
        except ApiError as err:
            return error_response(err)
        return JSONResponse(model_card(state.profile))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": state.profile.model_id})

    async def metrics(request: Request) -> Response:
        body = state.metrics.render(state.engine, state.profile.model_id)
        return Response(body, media_type=PROM_CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return error_response(
            ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=kind)
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        if not is_injected(exc):
            log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(internal_error())

    routes = []
    for base in ("/v1/openai", "/v1"):
        routes += [
            Route(f"{base}/chat/completions", chat, methods=["POST"]),
            Route(f"{base}/models", models, methods=["GET"]),
            Route(f"{base}/models/{{model:path}}", model_one, methods=["GET"]),
        ]
    routes += [Route("/health", health, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.target = state
    return app


async def _flush_periodically(state: TargetState) -> None:
    while True:
        await asyncio.sleep(0.2)
        if state.trace is not None and state.trace.dirty:
            state.trace.flush()


def model_card(profile: ModelProfile) -> dict[str, Any]:
    return {
        "id": profile.model_id,
        "object": "model",
        "created": 1_727_136_000,
        "owned_by": "eyechart",
        "context_length": profile.context_length,
        "token_rule": profile.token_rule,
        "pricing": {
            "input_per_million": profile.price_in_per_m,
            "output_per_million": profile.price_out_per_m,
        },
    }


async def load_images(state: TargetState, refs: list[ImageRef]) -> list[DecodedImage]:
    assert state.fetcher is not None
    fetcher = state.fetcher

    async def one(ref: ImageRef) -> DecodedImage:
        try:
            return await fetcher.load(ref.url)  # data URIs are decoded in a thread too
        except ImageRejected as exc:
            raise ApiError(
                exc.status if 400 <= exc.status < 500 else 400,
                exc.message,
                param=exc.param or ref.param,
                code=exc.code,
            ) from None

    return list(await asyncio.gather(*(one(r) for r in refs)))


async def handle_chat(state: TargetState, request: Request) -> Response:
    received_ns = time.monotonic_ns()
    request_id = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex}"
    headers = {"x-request-id": request_id}
    faults = state.faults.draw()
    rec: dict[str, Any] = {
        "request_id": request_id,
        "model": state.profile.model_id,
        "stream": None,
        "status": None,
        "received_ns": received_ns,
        "admitted_ns": None,
        "first_token_ns": None,
        "token_ns": [],
        "end_ns": None,
        "prompt_tokens": None,
        "image_tokens": None,
        "completion_tokens": None,
        "finish_reason": None,
        "error": None,
    }

    def refuse(err: ApiError) -> Response:
        state.metrics.count_request("chat", err.status)
        rec.update(status=err.status, error=err.code or err.type, end_ns=time.monotonic_ns())
        state.record(rec)
        return error_response(err, headers)

    try:
        if faults.slow_headers_s:
            await asyncio.sleep(faults.slow_headers_s)
        check_auth(request, state.config.api_key)
        body, size = await read_json(request, state.executor)
        await check_schema(body, size, state.executor)
        chat = parse_chat(body)
        rec["stream"] = chat.stream
        profile = state.profile
        if chat.model != profile.model_id:
            raise ApiError(
                404,
                f"The model '{chat.model}' does not exist; this server serves '{profile.model_id}'",
                param="model",
                code="model_not_found",
            )
        if profile.max_images is not None and len(chat.images) > profile.max_images:
            raise bad(
                f"{len(chat.images)} images in one request; this model takes at most {profile.max_images}",
                "messages",
                "too_many_images",
            )
        if faults.error:
            state.metrics.errors["injected"] += 1
            raise ApiError(
                state.config.faults.error_status,
                "injected fault (--faults error_rate)",
                type="server_error" if state.config.faults.error_status >= 500 else "invalid_request_error",
                code="injected_fault",
            )
        images = await load_images(state, chat.images)
        text_tokens = sum(tokens.text_tokens(t) for t in chat.texts)
        image_tokens = sum(tokens.image_tokens(profile.token_rule, im.width, im.height) for im in images)
        prompt_tokens = text_tokens + image_tokens
        rec.update(prompt_tokens=prompt_tokens, image_tokens=image_tokens)
        room = profile.context_length - prompt_tokens
        if room < 1:
            raise ApiError(
                400,
                f"This model's maximum context length is {profile.context_length} tokens; the messages "
                f"take {prompt_tokens} ({image_tokens} of them for {len(images)} image(s))",
                param="messages",
                code="context_length_exceeded",
            )
        cap = room if chat.max_tokens is None else min(chat.max_tokens, room)
        seq = EngineSequence(
            request_id=request_id,
            text_tokens=text_tokens,
            image_tokens=image_tokens,
            kv_reserve=prompt_tokens + min(cap, chat.max_tokens or KV_ANSWER_RESERVE),
            received_ns=received_ns,
        )
        try:
            lease = state.engine.enqueue(seq)
        except QueueFull as exc:
            raise ApiError(
                429, f"the server is overloaded: {exc}", type="rate_limit_error", code="queue_full"
            ) from None
    except ApiError as err:
        return refuse(err)
    except ClientDisconnect:
        rec.update(status=499, error="client_disconnected", end_ns=time.monotonic_ns())
        state.metrics.errors["disconnect"] += 1
        state.record(rec)
        return Response(status_code=499)

    pieces = start_answer(state, chat, images, cap)
    answer = Answer(state, chat, seq, lease, pieces, faults, rec, headers, prompt_tokens)
    if chat.stream:
        return SSEResponse(answer)
    return await answer.whole()
