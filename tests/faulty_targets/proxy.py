"""A contract-breaking proxy: a real HTTP server that forwards to a good target and breaks one clause.

The conformance suite is only worth something if each check fails on a server that breaks its clause.
Rather than writing one bad server per check, this proxy sits in front of a faithful upstream (the
reference target) and applies named *breaks* (see ``breaks.py``) to the request, the reply, the SSE
events or the headers. With no breaks it is transparent: the same status, JSON and event stream bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# Headers that describe the upstream's transfer, not the content: the proxy re-frames every body.
_HOP_HEADERS = {
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "connection",
    "keep-alive",
    "date",
    "server",
}


@dataclass
class Reply:
    """A whole (non-streamed) response: what the upstream sent or what a break made up."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def set_json(self, obj: Any, content_type: str = "application/json") -> None:
        self.body = json.dumps(obj).encode()
        self.headers["content-type"] = content_type

    @classmethod
    def of_json(cls, status: int, obj: Any) -> Reply:
        return cls(status, {"content-type": "application/json"}, json.dumps(obj).encode())

    @classmethod
    def of_events(cls, status: int, events: Iterable[str]) -> Reply:
        body = "".join(f"data: {e}\n\n" for e in events).encode()
        return cls(status, {"content-type": "text/event-stream"}, body)


@dataclass
class StreamHead:
    """Status and headers of a streamed response, before any event is sent."""

    status: int
    headers: dict[str, str]


@dataclass
class Exchange:
    """One request passing through the proxy, with what breaks need to rewrite it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    body: Any  # parsed JSON request body, or None
    client: httpx.AsyncClient
    upstream_root: str  # scheme://host:port of the upstream
    api_key: str | None  # the upstream's key, for breaks that disable auth
    state: dict[str, Any] = field(default_factory=dict)  # per-exchange scratch space for breaks

    @property
    def is_chat(self) -> bool:
        return self.path.endswith("/chat/completions")

    @property
    def is_models(self) -> bool:
        return self.path.rstrip("/").endswith("/models")

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        if not isinstance(self.body, dict):
            return False
        opts = self.body.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True

    def encoded_body(self) -> bytes:
        return self.raw_body if self.body is None else json.dumps(self.body).encode()

    async def send(self, body: Any | None = None, headers: dict[str, str] | None = None) -> Reply:
        """A side request to the upstream (same path), read whole; for breaks that compare answers."""
        h = dict(headers if headers is not None else self.headers)
        content = json.dumps(body).encode() if body is not None else self.encoded_body()
        r = await self.client.request(self.method, self._url(), headers=_forward_headers(h), content=content)
        return Reply(r.status_code, _reply_headers(r.headers), r.content)

    def _url(self) -> str:
        return self.upstream_root + self.path + (f"?{self.query}" if self.query else "")


EventTransform = Callable[[Exchange, AsyncIterator[str]], AsyncIterator[str]]


@dataclass(frozen=True)
class Break:
    """One way a real server breaks the contract, as hooks the proxy calls in order.

    ``request`` may rewrite ``ex.body``/``ex.headers`` or answer by itself (return a Reply);
    ``response`` rewrites a whole reply (JSON answers, errors, models list);
    ``head`` rewrites a stream's status and headers; ``events`` rewrites the SSE event data strings
    (each is a JSON text or ``[DONE]``); ``buffered`` holds the whole stream and sends it at the end.
    ``catches`` is the proof: the checks that must fail on this break (and pass without it).
    """

    name: str
    clause: str  # the id of the conformance/CONTRACT.md clause it breaks, e.g. "stream.done"
    description: str
    # the check ids that must report it (a break) or that record it (an INFO-level legal variant)
    catches: tuple[str, ...] = ()
    setup: str = "default"  # how the run is set up to see it (faulty_targets.breaks.SETUPS)
    upstream: str = "faithful"  # "private_fetching": the reference target that fetches private URLs
    request: Callable[[Exchange], Awaitable[Reply | None]] | None = None
    response: Callable[[Exchange, Reply], Awaitable[Reply]] | None = None
    head: Callable[[Exchange, StreamHead], None] | None = None
    events: EventTransform | None = None
    frame: Callable[[str], bytes] | None = None  # how one event's data is written (legal framings)
    buffered: bool = False


def _forward_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in _HOP_HEADERS and k != "host"}
    out["accept-encoding"] = "identity"
    return out


def _reply_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}


def parse_sse(buffer: str) -> tuple[list[str], str]:
    """Split complete events off ``buffer``: (data strings, rest). Enough for the well-framed upstream."""
    buffer = buffer.replace("\r\n", "\n").replace("\r", "\n")
    events: list[str] = []
    while "\n\n" in buffer:
        block, buffer = buffer.split("\n\n", 1)
        data = [ln[5:].removeprefix(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events, buffer


class _Proxy:
    def __init__(self, upstream_root: str, breaks: list[Break], api_key: str | None) -> None:
        self.upstream_root = upstream_root
        self.breaks = breaks
        self.api_key = api_key
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(120.0, connect=10.0)
            self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))
        return self._client

    def app(self, methods: Iterable[str] = ("GET", "POST")) -> Starlette:
        """The proxy as an ASGI app on every path; its upstream client closes when the server stops
        (left open, each run's last pooled connection surfaced as a ResourceWarning in a later test)."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            yield
            if self._client is not None:
                await self._client.aclose()

        return Starlette(
            routes=[Route("/{path:path}", self.handle, methods=list(methods))], lifespan=lifespan
        )

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        ex = Exchange(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            raw_body=raw,
            body=body,
            client=self.client,
            upstream_root=self.upstream_root,
            api_key=self.api_key,
        )
        for b in self.breaks:
            if b.request is not None:
                early = await b.request(ex)
                if early is not None:
                    return await self._finish(ex, early)
        upstream_req = self.client.build_request(
            ex.method, ex._url(), headers=_forward_headers(ex.headers), content=ex.encoded_body()
        )
        resp = await self.client.send(upstream_req, stream=True)
        ctype = resp.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            try:
                content = await resp.aread()
            finally:
                await resp.aclose()
            return await self._finish(ex, Reply(resp.status_code, _reply_headers(resp.headers), content))
        return await self._stream(ex, resp)

    async def _finish(self, ex: Exchange, reply: Reply) -> Response:
        for b in self.breaks:
            if b.response is not None:
                reply = await b.response(ex, reply)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def _stream(self, ex: Exchange, resp: httpx.Response) -> Response:
        head = StreamHead(resp.status_code, _reply_headers(resp.headers))
        for b in self.breaks:
            if b.head is not None:
                b.head(ex, head)
        transforms = [b.events for b in self.breaks if b.events is not None]
        framers = [b.frame for b in self.breaks if b.frame is not None]
        frame = framers[-1] if framers else _plain_frame
        buffered = any(b.buffered for b in self.breaks)

        async def raw_bytes() -> AsyncIterator[bytes]:
            try:
                async for piece in resp.aiter_raw():
                    yield piece
            finally:
                await resp.aclose()

        async def events() -> AsyncIterator[str]:
            pending = ""
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            async for piece in raw_bytes():
                found, pending = parse_sse(pending + decoder.decode(piece))
                for e in found:
                    yield e

        async def reframed() -> AsyncIterator[bytes]:
            stream: AsyncIterator[str] = events()
            for t in transforms:
                stream = t(ex, stream)
            async for e in stream:
                yield frame(e)

        body: AsyncIterator[bytes] = reframed() if transforms or framers else raw_bytes()
        if buffered:
            body = _hold_all(body)
        return StreamingResponse(body, status_code=head.status, headers=head.headers)


def _plain_frame(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


async def _hold_all(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    held = [piece async for piece in body]
    yield b"".join(held)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yield ``http://127.0.0.1:PORT``."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="auto", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"proxy-{port}"
    )
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("the proxy did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def resolve_breaks(names: Iterable[str]) -> list[Break]:
    from faulty_targets.breaks import BREAKS, LEGAL_VARIANTS

    known = {**BREAKS, **LEGAL_VARIANTS}
    out = []
    for n in names:
        if n not in known:
            raise KeyError(f"unknown break {n!r}; known: {', '.join(sorted(known))}")
        out.append(known[n])
    return out


@contextlib.contextmanager
def breaking_proxy(
    upstream_base_url: str, breaks: Iterable[str] = (), api_key: str | None = None
) -> Iterator[str]:
    """Serve a proxy of ``upstream_base_url`` that applies the named breaks; yield its base URL.

    The yielded URL keeps the upstream's path (``/v1/openai`` or ``/v1``); every path is forwarded, so
    both route styles work. ``api_key`` is the upstream's key, needed only by the auth breaks.
    """
    parts = urlsplit(upstream_base_url)
    root = f"{parts.scheme}://{parts.netloc}"
    proxy = _Proxy(root, resolve_breaks(breaks), api_key)
    app = proxy.app(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    with serve_app(app) as base:
        yield base + parts.path.rstrip("/")
