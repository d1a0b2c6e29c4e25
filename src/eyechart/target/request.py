"""Reading a chat request the way a careful server does: auth, body, schema, then every field by hand.

Every client mistake becomes an :class:`ApiError` (a 4xx with the OpenAI error envelope), never a 500:
the schema check catches most mistakes, and :func:`parse_chat` must still hold on its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from eyechart.wire.schemas import problems as schema_problems

MAX_BODY_BYTES = 64 * 1024 * 1024  # a 20 MiB image as base64 is ~28 MB; leave room for several
ROLES = ("system", "user", "assistant")


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


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.envelope(), status_code=err.status, headers=headers)


def bad(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    """A 400 for a field the client got wrong."""
    return ApiError(400, message, param=param, code=code)


def internal_error() -> ApiError:
    return ApiError(500, "internal server error", type="server_error", code="internal_error")


# --------------------------------------------------------------------------- the HTTP envelope


def check_auth(request: Request, api_key: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <key>'",
            type="authentication_error",
            code="missing_api_key",
        )
    if key.strip() != api_key:
        raise ApiError(401, "Invalid API key", type="authentication_error", code="invalid_api_key")


async def read_json(request: Request, executor: Executor) -> tuple[Any, int]:
    """The body as JSON and its size; over :data:`MAX_BODY_BYTES` is a 413, read as it streams in."""
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
        body = await off_loop_if_large(executor, size, json.loads, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    return body, size


async def off_loop_if_large(executor: Executor, size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; in the worker threads for bodies over 1 MiB, so a big image never stalls the loop."""
    if size > 1 << 20:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    return fn(*args)


async def check_schema(body: Any, size: int, executor: Executor) -> None:
    """The harness's own request schema; the first problem becomes the 400's message and ``param``."""
    found = await off_loop_if_large(executor, size, schema_problems, "request", body)
    if found:
        first = found[0]
        pointer = str(getattr(first, "pointer", ""))
        message = str(getattr(first, "message", first))
        if len(message) > 300:
            message = message[:300] + "…"
        param = pointer_to_param(pointer)
        where = f" at {param}" if param else ""
        raise ApiError(400, f"invalid request{where}: {message}", param=param, code="invalid_request")


def pointer_to_param(pointer: str) -> str | None:
    """``/messages/0/content/1`` → ``messages[0].content[1]`` (the style OpenAI uses for ``param``)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/") if p]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


# --------------------------------------------------------------------------- the chat request


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


def parse_chat(body: Any) -> ChatRequest:
    """Check the request the way a careful server does; every mistake is an ApiError 4xx."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None, "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("'model' is required and must be a non-empty string", "model", "missing_required")
    texts, images, prompt = _messages(body.get("messages"))
    # Checked in this order, so a request with several mistakes always names the same one.
    stream = _flag(body, "stream")
    include_usage = _include_usage(body)
    max_tokens, min_tokens = _token_limits(body)
    ignore_eos = _flag(body, "ignore_eos")
    n = _int_option(body, "n", 1)
    if n is not None and n != 1:
        raise bad("only n=1 is supported", "n", "unsupported_value")
    seed = _seed(body)
    _number_option(body, "temperature", 0, 2)
    _number_option(body, "top_p", 0, 1)
    return ChatRequest(
        model=model,
        texts=texts,
        prompt=prompt,
        images=images,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        stop=_stop(body),
        seed=seed,
        min_tokens=min_tokens,
        ignore_eos=ignore_eos,
    )


def _messages(messages: Any) -> tuple[list[str], list[ImageRef], str]:
    """Every text (for token accounting), every image, and the last user message's text."""
    if not isinstance(messages, list):
        raise bad("'messages' is required and must be a list", "messages", "missing_required")
    if not messages:
        raise bad("'messages' must contain at least one message", "messages", "empty_array")
    texts: list[str] = []
    images: list[ImageRef] = []
    prompt = ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad(f"{where} must be an object", where, "invalid_type")
        role = msg.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
        msg_texts = _content(where, role, msg.get("content"), images)
        texts.extend(msg_texts)
        if role == "user":
            prompt = "\n".join(msg_texts)
    return texts, images, prompt


def _content(where: str, role: str, content: Any, images: list[ImageRef]) -> list[str]:
    """The texts of one message's content; its images are appended to ``images``."""
    if content is None:
        if role != "assistant":
            raise bad(f"{where}.content is required for role {role}", f"{where}.content", "missing_required")
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise bad(f"{where}.content must be a string or a list of parts", f"{where}.content", "invalid_type")
    if not content:
        raise bad(f"{where}.content must not be an empty list", f"{where}.content", "empty_array")
    texts: list[str] = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise bad(f"{pwhere} must be an object with a 'type'", pwhere, "invalid_type")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"{pwhere}.text must be a string", f"{pwhere}.text", "invalid_type")
            texts.append(text)
        elif kind == "image_url":
            if role == "system":
                raise bad("system messages carry text only", pwhere)
            images.append(_image_part(pwhere, part.get("image_url")))
        else:
            raise bad(f"{pwhere}.type must be 'text' or 'image_url'", f"{pwhere}.type")
    return texts


def _image_part(pwhere: str, image_url: Any) -> ImageRef:
    if not isinstance(image_url, dict):
        raise bad(
            f'{pwhere}.image_url must be an object {{"url": ...}}, not a {type(image_url).__name__}',
            f"{pwhere}.image_url",
            "invalid_type",
        )
    url = image_url.get("url")
    if not isinstance(url, str) or not url:
        raise bad(f"{pwhere}.image_url.url must be a non-empty string", f"{pwhere}.image_url.url")
    detail = image_url.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        raise bad("detail must be auto, low or high", f"{pwhere}.image_url.detail")
    return ImageRef(url, f"{pwhere}.image_url.url")


def _flag(body: dict[str, Any], name: str) -> bool:
    """An optional boolean; null means false."""
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be a boolean", name, "invalid_type")
    return value


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object", "stream_options", "invalid_type")
    flag = options.get("include_usage", False)
    if flag is not None and not isinstance(flag, bool):
        raise bad("'include_usage' must be a boolean", "stream_options.include_usage", "invalid_type")
    return bool(flag)


def _token_limits(body: dict[str, Any]) -> tuple[int | None, int]:
    """``max_tokens`` (the smaller of it and ``max_completion_tokens``) and ``min_tokens``."""
    max_tokens = _int_option(body, "max_tokens", 1)
    max_completion = _int_option(body, "max_completion_tokens", 1)
    if max_completion is not None:
        max_tokens = max_completion if max_tokens is None else min(max_tokens, max_completion)
    min_tokens = _int_option(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise bad(f"'min_tokens' ({min_tokens}) must be <= max_tokens ({max_tokens})", "min_tokens")
    return max_tokens, min_tokens


def _seed(body: dict[str, Any]) -> int | None:
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad("'seed' must be an integer", "seed", "invalid_type")
    return seed


def _stop(body: dict[str, Any]) -> list[str]:
    stop_raw = body.get("stop")
    if stop_raw is None:
        return []
    if isinstance(stop_raw, str):
        stop = [stop_raw]
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw) and len(stop_raw) <= 4:
        stop = list(stop_raw)
    else:
        raise bad("'stop' must be a string or a list of up to 4 strings", "stop")
    return [s for s in stop if s]


def _int_option(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer", name, "invalid_type")
    if value < minimum:
        raise bad(f"'{name}' must be >= {minimum}", name)
    return value


def _number_option(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{name}' must be a number", name, "invalid_type")
    if not low <= value <= high:
        raise bad(f"'{name}' must be between {low:g} and {high:g}", name)
