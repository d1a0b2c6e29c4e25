"""Hostile servers: raw sockets that misbehave below the HTTP contract, to prove the suite never hangs.

Each answers every request the same bad way. The harness must turn each into failed checks within
bounded time: a garbage reply, an endless stream, a huge body, a reset connection, silence, or headers
dripped one byte at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator

KINDS = ("garbage", "endless_stream", "huge_body", "reset", "hang", "slow_headers")
HUGE_BYTES = 512 * 1024 * 1024  # what the huge body claims and streams (the client should stop long before)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    """Read the request head (and a bounded body) so the client is not blocked writing it."""
    with contextlib.suppress(Exception):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await asyncio.wait_for(reader.readexactly(min(length, 64 * 1024 * 1024)), 10)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"\x00\xff\xfeNOT HTTP AT ALL \x9c\x81\x00\x00\r\n\x07\x08garbage\x00" * 64)
    await writer.drain()


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    i = 0
    chunk = (
        '{{"id":"chatcmpl-endless","object":"chat.completion.chunk","created":1700000000,"model":"m",'
        '"choices":[{{"index":0,"delta":{{"role":"assistant","content":"tok{0} "}},"finish_reason":null}}]}}'
    )
    while True:
        writer.write(f"data: {chunk.format(i)}\n\n".encode())
        await writer.drain()
        i += 1
        await asyncio.sleep(0.005)


async def _huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {HUGE_BYTES}\r\nConnection: close\r\n\r\n".encode()
        + b'{"id":"chatcmpl-huge","object":"chat.completion","padding":"'
    )
    block = b"a" * (1024 * 1024)
    sent = 0
    while sent < HUGE_BYTES:
        writer.write(block)
        await writer.drain()
        sent += len(block)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        b'data: {"id":"chatcmpl-reset","object":"chat.completion.chunk","created":1700000000,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel'
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    if sock is not None:  # linger 0: close sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(3600)


async def _slow_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"z" * 4096 + b"\r\n"
    for i in range(len(head)):
        writer.write(head[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0.5)


_HANDLERS: dict[str, Handler] = {
    "garbage": _garbage,
    "endless_stream": _endless,
    "huge_body": _huge,
    "reset": _reset,
    "hang": _hang,
    "slow_headers": _slow_headers,
}


@contextlib.contextmanager
def hostile_server(kind: str, base_path: str = "/v1/openai") -> Iterator[str]:
    """Serve the ``kind`` of misbehaviour on a free 127.0.0.1 port in a thread; yield its base URL."""
    if kind not in _HANDLERS:
        raise KeyError(f"unknown hostile server {kind!r}; known: {', '.join(KINDS)}")
    handler = _HANDLERS[kind]
    loop = asyncio.new_event_loop()
    tasks: set[asyncio.Task[None]] = set()
    ready = threading.Event()
    port_box: list[int] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                tasks.discard(task)

    async def main() -> asyncio.Server:
        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server_box.append(loop.run_until_complete(main()))
        ready.set()
        loop.run_forever()

    server_box: list[asyncio.Server] = []
    thread = threading.Thread(target=run, daemon=True, name=f"hostile-{kind}")
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the hostile server did not start")
    try:
        yield f"http://127.0.0.1:{port_box[0]}{base_path}"
    finally:

        async def shutdown() -> None:
            server_box[0].close()
            pending = list(tasks)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
