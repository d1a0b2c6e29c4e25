"""An accepted request's answer: its text shaped to the request, then sent whole (JSON) or streamed (SSE).

The text comes from ``vision.answer`` in a worker thread, overlapping the simulated queue wait and
prefill; its pieces go out when the engine makes each token. Faults (``--faults``) are applied here:
stalls, a malformed chunk, a connection cut mid-body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from eyechart.target import tokens
from eyechart.target.decode import DecodedImage
from eyechart.target.engine import Lease, Token
from eyechart.target.engine import Sequence as EngineSequence
from eyechart.target.faults import RequestFaults
from eyechart.target.request import ChatRequest, error_response, internal_error
from eyechart.target.state import TargetState
from eyechart.target.vision import answer as vision_answer

log = logging.getLogger("eyechart.target")


class InjectedDisconnect(Exception):
    """Raised after the response started to make the server drop the connection (``--faults``)."""


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


def start_answer(
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
            return error_response(internal_error(), self.headers)
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
        zero = self.state.deployment.zero_latency and not (self.faults.stall_at or self.faults.disconnect_at)
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
            err = internal_error()
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


def is_injected(exc: BaseException | None) -> bool:
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
        return not is_injected(record.exc_info[1] if record.exc_info else None)


def install_log_filter() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QuietInjected())
