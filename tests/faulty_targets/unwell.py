"""Unwell targets: servers that answer correctly but slowly, partly or randomly, to prove verdicts stay
honest about time (issue "verdicts that stay true on slow, wedged and sloppy servers").

Each is a real HTTP server on 127.0.0.1. Most are a proxy in front of the faithful reference target, so
every answer that does come is conformant and any failure the suite reports would be a false one:

- ``one_at_a_time``: handles one chat request at a time; a prompt longer than ``wedge_chars`` keeps it
  busy for ``wedge_s`` seconds after the client gave up (a huge-context request on a real server).
- ``endless_stream``: streams never end (the events keep coming, no ``[DONE]``); plain answers are fine.
- ``hanging_fetch``: a request with an http(s) image URL never gets an answer; the rest is fine.
- ``flaky_5xx``: every ``every``-th chat request gets a 500 (10 % by default).
- ``slow_headers`` (raw socket): lists a model, then drips the headers of every chat answer forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from faulty_targets.proxy import Break, Exchange, Reply, _Proxy, serve_app

KINDS = ("one_at_a_time", "endless_stream", "hanging_fetch", "flaky_5xx")


def _has_url(body: Any) -> bool:
    text = json.dumps(body) if body is not None else ""
    return '"url": "http://' in text or '"url": "https://' in text


def _one_at_a_time(wedge_chars: int, wedge_s: float) -> Break:
    lock = asyncio.Lock()

    async def request(ex: Exchange) -> Reply | None:
        if not ex.is_chat:
            return None
        async with lock:  # later requests queue behind the wedged one, as on a one-slot server
            if len(ex.raw_body) > wedge_chars:
                await asyncio.sleep(wedge_s)
                return Reply.of_json(
                    400,
                    {"error": {"message": "the prompt exceeds the maximum context length",
                               "type": "invalid_request_error", "param": "messages",
                               "code": "context_length_exceeded"}},
                )  # fmt: skip
        return None

    return Break("one_at_a_time", "none", "one request at a time", request=request)


def _endless_stream() -> Break:
    async def events(ex: Exchange, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        last = None
        async for e in stream:
            if e == "[DONE]":
                break
            obj = json.loads(e)
            if obj.get("choices") and obj["choices"][0].get("finish_reason") is None:
                last = obj
                yield e
        while last is not None:
            await asyncio.sleep(0.02)
            last["choices"][0]["delta"] = {"content": " more"}
            yield json.dumps(last)

    return Break("endless_stream", "none", "streams never end", events=events)


def _hanging_fetch() -> Break:
    async def request(ex: Exchange) -> Reply | None:
        if ex.is_chat and _has_url(ex.body):
            await asyncio.sleep(3600)
        return None

    return Break("hanging_fetch", "none", "image URL requests never answer", request=request)


def _flaky_5xx(every: int) -> Break:
    counter = itertools.count(1)

    async def request(ex: Exchange) -> Reply | None:
        if ex.is_chat and next(counter) % every == 0:
            return Reply.of_json(500, {"error": {"message": "upstream overloaded", "type": "server_error",
                                                 "param": None, "code": None}})  # fmt: skip
        return None

    return Break("flaky_5xx", "none", "random 5xx", request=request)


@contextlib.contextmanager
def unwell_target(
    upstream_base_url: str,
    kind: str,
    *,
    wedge_chars: int = 50_000,
    wedge_s: float = 8.0,
    every: int = 10,
) -> Iterator[str]:
    """Serve the unwell ``kind`` in front of ``upstream_base_url``; yield its base URL."""
    from urllib.parse import urlsplit

    made = {
        "one_at_a_time": lambda: _one_at_a_time(wedge_chars, wedge_s),
        "endless_stream": _endless_stream,
        "hanging_fetch": _hanging_fetch,
        "flaky_5xx": lambda: _flaky_5xx(every),
    }[kind]()
    parts = urlsplit(upstream_base_url)
    proxy = _Proxy(f"{parts.scheme}://{parts.netloc}", [made], None)
    with serve_app(proxy.app()) as base:
        yield base + parts.path.rstrip("/")


_MODELS = b'{"object":"list","data":[{"id":"m","object":"model","created":0,"owned_by":"x"}]}'


@contextlib.contextmanager
def slow_headers_target(byte_every_s: float = 0.2) -> Iterator[str]:
    """Lists model ``m``; every POST gets its response headers one byte at a time, forever."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                piece = conn.recv(65536)
                if not piece:
                    return
                head += piece
            if head.startswith(b"GET"):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(_MODELS)}\r\n\r\n".encode()
                    + _MODELS
                )
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():
                conn.sendall(b"X")  # one endless header line
                stop.wait(byte_every_s)

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
