"""The reference target's HTTP side: routes, auth, validation, the error envelope, whole and streamed answers.

Routes exist in both styles (``/v1/openai/...`` as in the default profile, ``/v1/...`` as in OpenAI),
plus ``/health`` and ``/metrics``. Every client mistake is a 4xx with the OpenAI error envelope
``{"error": {"message", "type", "param", "code"}}``; anything unexpected is a 500 envelope with a
generic message (the traceback goes to the server log, never to the client). With ``stream: true`` a
request error is still a plain JSON response: the SSE stream only starts once the request is accepted.

A request goes: auth → JSON → schema (the harness's own request schema) → semantic checks → images
(decoded and measured; data URIs in a thread) → token accounting → engine queue → answer. The answer's
text comes from ``vision.answer`` in a thread, overlapping the simulated queue wait and prefill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from eyechart.target import tokens
from eyechart.target.decode import DecodedImage, ImageRejected
from eyechart.target.engine import Engine, Lease, QueueFull, Token
from eyechart.target.engine import Sequence as EngineSequence
from eyechart.target.faults import FaultConfig, FaultInjector, RequestFaults
from eyechart.target.fetch import Fetcher
from eyechart.target.models import ModelProfile
from eyechart.target.prom import CONTENT_TYPE as PROM_CONTENT_TYPE
from eyechart.target.prom import Metrics
from eyechart.target.trace import TraceWriter
from eyechart.target.vision import answer as vision_answer
from eyechart.wire.schemas import problems as schema_problems

log = logging.getLogger("eyechart.target")

MAX_BODY_BYTES = 64 * 1024 * 1024  # a 20 MiB image as base64 is ~28 MB; leave room for several
ROLES = ("system", "user", "assistant")
KV_ANSWER_RESERVE = 256  # KV tokens reserved for an answer without max_tokens


@dataclass(frozen=True)
class ServeConfig:
    profile: ModelProfile
    api_key: str
    allow_private_urls: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    trace_path: Path | None = None
    max_waiting: int | None = None


class ApiError(Exception):
    """A request the target refuses; rendered as the OpenAI error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InjectedDisconnect(Exception):
    """Raised after the response started to make the server drop the connection (``--faults``)."""


def _pointer_to_param(pointer: str) -> str | None:
    """``/messages/0/content/1`` → ``messages[0].content[1]`` (the style OpenAI uses for ``param``)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/") if p]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


# --------------------------------------------------------------------------- request model


@dataclass
class ImageRef:
    url: str
    param: str


@dataclass
class ChatRequest:
    model: str
    texts: list[str]  # every text of every message, for prompt token accounting
    prompt: str  # the text of the last user message: what the answer responds to
    images: list[ImageRef]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    stop: list[str]
    seed: int | None
    min_tokens: int = 0  # vLLM's extension: no end of answer before this many tokens
    ignore_eos: bool = False  # vLLM's extension: run to max_tokens (only a stop string ends earlier)


def _bad(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _int_option(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer", name, "invalid_type")
    if value < minimum:
        raise _bad(f"'{name}' must be >= {minimum}", name)
    return value


def _number_option(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}", name)


def parse_chat(body: Any) -> ChatRequest:
    """Check the request the way a careful server does; every mistake is an ApiError 4xx.

    The schema check before this one already catches most; this one must hold on its own, since it is
    what keeps a malformed request from ever reaching a 500.
    """
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None, "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a non-empty string", "model", "missing_required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("'messages' is required and must be a list", "messages", "missing_required")
    if not messages:
        raise _bad("'messages' must contain at least one message", "messages", "empty_array")
    texts: list[str] = []
    images: list[ImageRef] = []
    prompt = ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object", where, "invalid_type")
        role = msg.get("role")
        if role not in ROLES:
            raise _bad(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
        content = msg.get("content")
        msg_texts: list[str] = []
        if content is None:
            if role != "assistant":
                raise _bad(
                    f"{where}.content is required for role {role}", f"{where}.content", "missing_required"
                )
        elif isinstance(content, str):
            msg_texts.append(content)
        elif isinstance(content, list):
            if not content:
                raise _bad(f"{where}.content must not be an empty list", f"{where}.content", "empty_array")
            for j, part in enumerate(content):
                pwhere = f"{where}.content[{j}]"
                if not isinstance(part, dict):
                    raise _bad(f"{pwhere} must be an object with a 'type'", pwhere, "invalid_type")
                kind = part.get("type")
                if kind == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise _bad(f"{pwhere}.text must be a string", f"{pwhere}.text", "invalid_type")
                    msg_texts.append(text)
                elif kind == "image_url":
                    if role == "system":
                        raise _bad("system messages carry text only", pwhere)
                    image_url = part.get("image_url")
                    if not isinstance(image_url, dict):
                        raise _bad(
                            f'{pwhere}.image_url must be an object {{"url": ...}}, not a '
                            f"{type(image_url).__name__}",
                            f"{pwhere}.image_url",
                            "invalid_type",
                        )
                    url = image_url.get("url")
                    if not isinstance(url, str) or not url:
                        raise _bad(
                            f"{pwhere}.image_url.url must be a non-empty string", f"{pwhere}.image_url.url"
                        )
                    detail = image_url.get("detail")
                    if detail is not None and detail not in ("auto", "low", "high"):
                        raise _bad("detail must be auto, low or high", f"{pwhere}.image_url.detail")
                    images.append(ImageRef(url, f"{pwhere}.image_url.url"))
                else:
                    raise _bad(f"{pwhere}.type must be 'text' or 'image_url'", f"{pwhere}.type")
        else:
            raise _bad(
                f"{where}.content must be a string or a list of parts", f"{where}.content", "invalid_type"
            )
        texts.extend(msg_texts)
        if role == "user":
            prompt = "\n".join(msg_texts)

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream", "invalid_type")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object", "stream_options", "invalid_type")
        flag = options.get("include_usage", False)
        if flag is not None and not isinstance(flag, bool):
            raise _bad("'include_usage' must be a boolean", "stream_options.include_usage", "invalid_type")
        include_usage = bool(flag)
    max_tokens = _int_option(body, "max_tokens", 1)
    max_completion = _int_option(body, "max_completion_tokens", 1)
    if max_completion is not None:
        max_tokens = max_completion if max_tokens is None else min(max_tokens, max_completion)
    min_tokens = _int_option(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise _bad(f"'min_tokens' ({min_tokens}) must be <= max_tokens ({max_tokens})", "min_tokens")
    ignore_eos = body.get("ignore_eos", False)
    if ignore_eos is None:
        ignore_eos = False
    if not isinstance(ignore_eos, bool):
        raise _bad("'ignore_eos' must be a boolean", "ignore_eos", "invalid_type")
    n = _int_option(body, "n", 1)
    if n is not None and n != 1:
        raise _bad("only n=1 is supported", "n", "unsupported_value")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("'seed' must be an integer", "seed", "invalid_type")
    _number_option(body, "temperature", 0, 2)
    _number_option(body, "top_p", 0, 1)
    stop_raw = body.get("stop")
    if stop_raw is None:
        stop: list[str] = []
    elif isinstance(stop_raw, str):
        stop = [stop_raw]
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw) and len(stop_raw) <= 4:
        stop = list(stop_raw)
    else:
        raise _bad("'stop' must be a string or a list of up to 4 strings", "stop")
    return ChatRequest(
        model=model,
        texts=texts,
        prompt=prompt,
        images=images,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        stop=[s for s in stop if s],
        seed=seed,
        min_tokens=min_tokens,
        ignore_eos=ignore_eos,
    )


# Words that lengthen an answer past its natural end (min_tokens, ignore_eos): one token each, so a
# load test asking for N tokens gets exactly N one-word chunks.
FILLER = (" and", " the", " image", " shows", " more", " of", " the", " same")


def shape_answer(
    text: str, stop: Sequence[str], max_tokens: int | None, min_tokens: int = 0, ignore_eos: bool = False
) -> tuple[list[str], str]:
    """The pieces to stream and the finish reason: the earliest ``stop`` hit ends the text (the stop
    string itself is not returned); a cap reached first gives ``length``.

    Like vLLM, ``ignore_eos`` runs the answer on to ``max_tokens`` and ``min_tokens`` keeps it going at
    least that long (a stop string still ends it): the text continues with :data:`FILLER` words,
    deterministically, so a load test can ask for answers of an exact length.
    """
    finish = "stop"
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    pieces = tokens.split_tokens(text)
    want = max_tokens if ignore_eos and max_tokens is not None else min_tokens
    extended = cut < 0 and len(pieces) < want
    if extended:
        pieces += [FILLER[i % len(FILLER)] for i in range(want - len(pieces))]
    if max_tokens is not None and len(pieces) >= max_tokens and (extended or len(pieces) > max_tokens):
        pieces = pieces[:max_tokens]
        finish = "length"
    return pieces, finish


# --------------------------------------------------------------------------- the application


class TargetState:
    """Everything a request needs, created at startup and closed at shutdown."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.profile = config.profile
        self.engine = Engine(config.profile, config.max_waiting)
        self.metrics = Metrics()
        self.faults = FaultInjector(config.faults)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eyechart-vision")
        self.fetcher: Fetcher | None = None
        self.trace: TraceWriter | None = None

    async def start(self) -> None:
        self.fetcher = Fetcher(allow_private=self.config.allow_private_urls)
        if self.config.trace_path is not None:
            self.trace = TraceWriter(self.config.trace_path, model=self.profile.model_id)

    async def stop(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.aclose()
        if self.trace is not None:
            self.trace.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def record(self, rec: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace.record(rec)


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
            check_auth(state, request)
        except ApiError as err:
            state.metrics.count_request("models", err.status)
            return error_response(err)
        state.metrics.count_request("models", 200)
        return JSONResponse({"object": "list", "data": [model_card(state.profile)]})

    async def model_one(request: Request) -> Response:
        try:
            check_auth(state, request)
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
        body = state.metrics.render(state.engine.scheduler, state.profile.model_id)
        return Response(body, media_type=PROM_CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return error_response(
            ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=kind)
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        if not _is_injected(exc):
            log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(
            ApiError(500, "internal server error", type="server_error", code="internal_error")
        )

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


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.envelope(), status_code=err.status, headers=headers)


def check_auth(state: TargetState, request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <key>'",
            type="authentication_error",
            code="missing_api_key",
        )
    if key.strip() != state.config.api_key:
        raise ApiError(401, "Invalid API key", type="authentication_error", code="invalid_api_key")


async def read_json(state: TargetState, request: Request) -> tuple[Any, int]:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY_BYTES:
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = await _off_loop_if_large(state, size, json.loads, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    return body, size


async def _off_loop_if_large(state: TargetState, size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; in the worker threads for bodies over 1 MiB, so a big image never stalls the loop."""
    if size > 1 << 20:
        return await asyncio.get_running_loop().run_in_executor(state.executor, fn, *args)
    return fn(*args)


async def check_schema(state: TargetState, body: Any, size: int) -> None:
    found = await _off_loop_if_large(state, size, schema_problems, "request", body)
    if found:
        first = found[0]
        pointer = str(getattr(first, "pointer", ""))
        message = str(getattr(first, "message", first))
        if len(message) > 300:
            message = message[:300] + "…"
        param = _pointer_to_param(pointer)
        where = f" at {param}" if param else ""
        raise ApiError(400, f"invalid request{where}: {message}", param=param, code="invalid_request")


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
        check_auth(state, request)
        body, size = await read_json(state, request)
        await check_schema(state, body, size)
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
            raise _bad(
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

    pieces = _start_answer(state, chat, images, cap)
    answer = Answer(state, chat, seq, lease, pieces, faults, rec, headers, prompt_tokens)
    if chat.stream:
        return SSEResponse(answer)
    return await answer.whole()


def _start_answer(
    state: TargetState, chat: ChatRequest, images: list[DecodedImage], cap: int
) -> asyncio.Future[tuple[list[str], str]]:
    """Compute the answer in a thread (OCR can be slow), overlapping the simulated queue and prefill."""

    def work() -> tuple[list[str], str]:
        text = vision_answer(chat.prompt, images, chat.seed)
        return shape_answer(text, chat.stop, cap, chat.min_tokens, chat.ignore_eos)

    loop = asyncio.get_running_loop()
    if not images:
        fut: asyncio.Future[tuple[list[str], str]] = loop.create_future()
        try:
            fut.set_result(work())
        except Exception as exc:
            fut.set_exception(exc)
    else:
        fut = asyncio.ensure_future(loop.run_in_executor(state.executor, work))
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception never retrieved"
    return fut


class Answer:
    """One accepted request on its way out: whole (JSON) or streamed (SSE)."""

    def __init__(
        self,
        state: TargetState,
        chat: ChatRequest,
        seq: EngineSequence,
        lease: Lease,
        pieces: asyncio.Future[tuple[list[str], str]],
        faults: RequestFaults,
        rec: dict[str, Any],
        headers: dict[str, str],
        prompt_tokens: int,
    ) -> None:
        self.state = state
        self.chat = chat
        self.seq = seq
        self.lease = lease
        self.pieces = pieces
        self.faults = faults
        self.rec = rec
        self.headers = headers
        self.prompt_tokens = prompt_tokens
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = state.profile.model_id
        self.finish = "stop"
        self.n_pieces = 0

    async def _texts(self) -> list[str]:
        texts, self.finish = await self.pieces
        self.n_pieces = len(texts)
        return texts

    def tokens(self) -> AsyncGenerator[Token, None]:
        return self.state.engine.run(self.lease, asyncio.ensure_future(self._texts()))

    def usage(self, completion: int) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "estimated_cost": self.state.profile.cost(self.prompt_tokens, completion),
        }

    def finish_record(self, status: int, completion: int, error: str | None = None) -> None:
        m = self.state.metrics
        m.count_request("chat", status)
        if error is None:
            m.count_tokens(
                self.prompt_tokens, self.rec["image_tokens"] or 0, completion, len(self.chat.images)
            )
        elif error == "client_disconnected":
            m.errors["disconnect"] += 1
        token_ns = self.rec["token_ns"]
        self.rec.update(
            status=status,
            admitted_ns=self.seq.admitted_ns,
            first_token_ns=token_ns[0] if token_ns else None,
            end_ns=time.monotonic_ns(),
            completion_tokens=completion,
            finish_reason=None if error else self.finish,
            error=error,
        )
        self.state.record(self.rec)

    async def whole(self) -> Response:
        token_ns = self.rec["token_ns"]
        parts: list[str] = []
        try:
            async with aclosing(self.tokens()) as stream:
                async for tok in stream:
                    token_ns.append(time.monotonic_ns())
                    parts.append(tok.text)
        except Exception as exc:
            self.lease.close()
            log.error("answer failed for %s", self.seq.request_id, exc_info=exc)
            self.finish_record(500, len(parts), "internal_error")
            return error_response(
                ApiError(500, "internal server error", type="server_error", code="internal_error"),
                self.headers,
            )
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    # refusal and logprobs: OpenAI's spec lists them as required; null is their value here.
                    "message": {"role": "assistant", "content": "".join(parts), "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish,
                }
            ],
            "usage": self.usage(len(parts)),
        }
        if self.faults.disconnect_at is not None:
            self.finish_record(200, len(parts), "injected_disconnect")
            self.state.metrics.errors["injected"] += 1
            return CutResponse(json.dumps(body).encode(), self.faults.disconnect_at, self.headers)
        self.finish_record(200, len(parts))
        return JSONResponse(body, headers=self.headers)

    # ------------------------------------------------------------------ streaming

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        """One ``chat.completion.chunk`` SSE event."""
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish}])

    async def events(self) -> AsyncIterator[bytes]:
        """The SSE body. Content chunks are written one per token, when the engine makes it (except at
        zero latency, where the whole stream goes out in one write)."""
        token_ns = self.rec["token_ns"]
        prefix = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{json.dumps(self.model)},"choices":[{{"index":0,"delta":{{'
        ).encode()
        suffix = b'},"finish_reason":null}]}\n\n'
        zero = self.state.profile.zero_latency and not (self.faults.stall_at or self.faults.disconnect_at)
        f = self.faults
        held: list[bytes] = []
        count = 0
        status_error: str | None = None
        try:
            async with aclosing(self.tokens()) as stream:
                async for tok in stream:
                    i = tok.index
                    if i == f.index(f.stall_at, self.n_pieces):
                        await asyncio.sleep(self.state.config.faults.stall)
                    if i == f.index(f.disconnect_at, self.n_pieces):
                        self.state.metrics.errors["injected"] += 1
                        status_error = "injected_disconnect"
                        if held:
                            yield b"".join(held)
                        raise InjectedDisconnect()
                    if i == f.index(f.malformed_at, self.n_pieces):
                        self.state.metrics.errors["injected"] += 1
                        bad = prefix[:-20] + b'"content": "unterminated\n\n'
                        if zero:
                            held.append(bad)
                        else:
                            yield bad
                    role = b'"role":"assistant",' if i == 0 else b""
                    chunk = prefix + role + b'"content":' + json.dumps(tok.text).encode() + suffix
                    count += 1
                    token_ns.append(time.monotonic_ns())
                    if zero:
                        held.append(chunk)
                    else:
                        yield chunk
            tail = []
            if count == 0:
                tail.append(self._chunk({"role": "assistant", "content": ""}))
            tail.append(self._chunk({}, self.finish))
            if self.chat.include_usage:
                tail.append(self._event([], usage=self.usage(count)))
            tail.append(b"data: [DONE]\n\n")
            yield b"".join(held) + b"".join(tail)
        except InjectedDisconnect:
            raise
        except asyncio.CancelledError:
            status_error = "client_disconnected"
            raise
        except Exception as exc:
            log.error("stream failed for %s", self.seq.request_id, exc_info=exc)
            status_error = "internal_error"
            err = ApiError(500, "internal server error", type="server_error", code="internal_error")
            yield b"".join(held) + b"data: " + json.dumps(err.envelope()).encode() + b"\n\n"
        finally:
            self.lease.close()
            self.finish_record(200, count, status_error)


class SSEResponse(StreamingResponse):
    """A streamed answer that always gives its engine slot back, even if the body never starts."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(
            answer.events(),
            media_type="text/event-stream",
            headers={**answer.headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.answer.lease.close()


class CutResponse(Response):
    """A whole answer whose connection drops part-way through the body (``--faults disconnect``)."""

    def __init__(self, body: bytes, fraction: float, headers: dict[str, str]) -> None:
        super().__init__(body, media_type="application/json", headers=headers)
        self.cut = max(1, min(len(body) - 1, int(len(body) * fraction)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: self.cut], "more_body": True})
        raise InjectedDisconnect()


def _is_injected(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, InjectedDisconnect):
            return True
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        else:
            exc = exc.__cause__ or exc.__context__
    return False


class _QuietInjected(logging.Filter):
    """Keep injected disconnects out of the server log: they are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_injected(record.exc_info[1] if record.exc_info else None)


def install_log_filter() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QuietInjected())
