"""Exchanges against real, sometimes hostile, servers on 127.0.0.1: evidence always, hangs never."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eyechart.wire.exchange import (
    KEY_PLACEHOLDER,
    curl_reproducer,
    encode_body,
    send,
    send_stream,
    summarize_body,
    summarize_data_uri,
)

KEY = "sk-test-SECRET-0123456789"
STOP = threading.Event()


def _chunk(content: str | None, *, role: str | None = None, finish: str | None = None) -> bytes:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class Handler(socketserver.BaseRequestHandler):
    """A tiny HTTP/1.1 server whose behaviour is chosen by the request path."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                return
            body += piece
        getattr(self, "do_" + path.strip("/").replace("-", "_"), self.do_missing)(sock, headers, body)

    @staticmethod
    def reply(sock: socket.socket, status: str, body: bytes, ctype: str = "application/json") -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        head += "Connection: close\r\n\r\n"
        sock.sendall(head.encode() + body)

    def do_missing(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        self.reply(sock, "404 Not Found", b'{"error": {"message": "no such path"}}')

    def do_echo(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        answer = {
            "auth": headers.get("authorization"),
            "sha256": hashlib.sha256(body).hexdigest(),
            "n": len(body),
        }
        self.reply(sock, "200 OK", json.dumps(answer).encode())

    def do_leak(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        self.reply(
            sock,
            "401 Unauthorized",
            json.dumps({"error": {"message": f"bad {headers['authorization']}"}}).encode(),
        )

    def do_garbage(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"\x00\x01GARBAGE NOT HTTP\r\n\r\n\xff\xfe")

    def do_reset(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def do_reset_midbody(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100000\r\n\r\n")
        sock.sendall(_chunk("Hi", role="assistant"))
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def do_hang(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        STOP.wait(30)

    def do_huge(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        block = b"x" * 65536
        try:
            while not STOP.is_set():
                sock.sendall(block)
        except OSError:
            pass

    def do_endless(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        sock.sendall(_chunk("", role="assistant"))
        try:
            while not STOP.is_set():
                sock.sendall(_chunk("tok") * 20)
                time.sleep(0.005)
        except OSError:
            pass

    def do_drip(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        try:
            while not STOP.is_set():
                sock.sendall(b":")
                time.sleep(0.3)
        except OSError:
            pass

    def do_slow_head(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"z" * 200 + b"\r\n"
        try:
            for i in range(len(head)):  # one byte every 0.1 s: no single read ever times out
                if STOP.is_set():
                    return
                sock.sendall(head[i : i + 1])
                time.sleep(0.1)
        except OSError:
            pass

    def do_sse(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        for piece in [
            _chunk("Hel", role="assistant"),
            _chunk("lo"),
            _chunk(None, finish="stop"),
            b"data: [DONE]\n\n",
        ]:
            sock.sendall(piece)
            time.sleep(0.02)

    def do_sse_no_done(self, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        sock.sendall(_chunk("Hi", role="assistant") + _chunk(None, finish="stop"))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    STOP.clear()
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    STOP.set()
    server.shutdown()
    server.server_close()


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def _no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text)


def test_a_plain_exchange_is_complete_evidence(base: str, client: httpx.Client) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    ex = send(client, "POST", base + "/echo", api_key=KEY, json_body=body, timeout=5)
    assert ex.ok and ex.status == 200 and ex.content_type == "application/json"
    assert ex.json["auth"] == f"Bearer {KEY_PLACEHOLDER}"  # the server echoed the key: scrubbed
    assert ex.json["sha256"] == hashlib.sha256(encode_body(body)).hexdigest()
    assert ex.request_headers["Authorization"] == f"Bearer {KEY_PLACEHOLDER}"
    assert ex.t_send_ns < ex.t_head_ns <= ex.t_end_ns and ex.elapsed_s > 0  # type: ignore[operator]
    _no_key(ex, ex.curl, ex.request_headers, ex.describe(), ex.body)


def test_a_key_echoed_by_the_server_is_scrubbed(base: str, client: httpx.Client) -> None:
    ex = send(client, "POST", base + "/leak", api_key=KEY, json_body={}, timeout=5)
    assert ex.status == 401 and ex.json == {"error": {"message": f"bad Bearer {KEY_PLACEHOLDER}"}}
    _no_key(ex.body, ex.describe())


@pytest.mark.parametrize(
    ("path", "error_class"),
    [("/garbage", "protocol"), ("/reset", "reset"), ("/hang", "timeout"), ("/huge", "too_large")],
)
def test_hostile_servers_end_as_classified_evidence(
    base: str, client: httpx.Client, path: str, error_class: str
) -> None:
    t0 = time.monotonic()
    ex = send(
        client, "POST", base + path, api_key=KEY, json_body={"a": 1}, timeout=1.0, max_body_bytes=1 << 20
    )
    assert time.monotonic() - t0 < 3
    assert ex.error_class == error_class, ex.error
    assert len(ex.body) <= 1 << 20 and ex.json is None and ex.json_error
    _no_key(ex, ex.error, ex.curl)


def test_headers_dripped_byte_by_byte_stop_at_the_total_deadline(base: str, client: httpx.Client) -> None:
    # one byte every 0.1 s: the per-read timeout (5 s) never fires; only the wall-clock limit can stop it
    t0 = time.monotonic()
    ex = send(client, "GET", base + "/slow-head", api_key=KEY, timeout=5, total_timeout=1.5)
    assert 1.4 < time.monotonic() - t0 < 3
    assert ex.error_class == "timeout" and ex.status is None
    assert "total time limit of 1.5s" in (ex.error or "")


def test_the_real_key_is_masked_and_a_wrong_probe_key_is_shown(base: str, client: httpx.Client) -> None:
    wrong = "eyechart-wrong-key-0000"
    ex = send(client, "POST", base + "/leak", api_key=wrong, json_body={"q": KEY}, timeout=5, secret=KEY)
    # the deliberately wrong key is sent and shown as is, so the reproducer really gets the 401
    assert ex.request_headers["Authorization"] == f"Bearer {wrong}"
    assert f"-H 'Authorization: Bearer {wrong}'" in ex.curl
    assert ex.json["error"]["message"] == f"bad Bearer {wrong}"
    # the real key, wherever it appears (here in the request body), is masked
    assert KEY_PLACEHOLDER in ex.curl and KEY_PLACEHOLDER in (ex.request_body or "")
    _no_key(ex, ex.curl, ex.request_body, ex.request_headers, ex.describe())
    ex = send(client, "POST", base + "/leak", api_key=KEY, json_body={}, timeout=5, secret=KEY)
    assert ex.request_headers["Authorization"] == f"Bearer {KEY_PLACEHOLDER}"
    assert f'-H "Authorization: Bearer {KEY_PLACEHOLDER}"' in ex.curl
    _no_key(ex, ex.curl, ex.body, ex.describe())
    # a key header passed explicitly is masked when it holds the real key, shown when it does not
    ex = send(client, "GET", base + "/echo", api_key=None, headers={"X-Api-Key": KEY}, timeout=5, secret=KEY)
    assert ex.request_headers["X-Api-Key"] == KEY_PLACEHOLDER
    _no_key(ex, ex.curl, ex.body)
    ex = send(
        client, "GET", base + "/echo", api_key=None, headers={"Authorization": "Bearer nope"}, secret=KEY
    )
    assert "-H 'Authorization: Bearer nope'" in ex.curl


def test_nothing_listening_is_a_connect_error(client: httpx.Client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = send(client, "GET", f"http://127.0.0.1:{port}/models", api_key=KEY, timeout=2)
    assert ex.error_class == "connect" and ex.status is None


def test_a_stream_is_read_strictly_as_it_arrives(base: str, client: httpx.Client) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ex, a = send_stream(client, base + "/sse", api_key=KEY, json_body=body, timeout=5, total_timeout=10)
    assert ex.ok and ex.status == 200 and "text/event-stream" in ex.content_type
    assert a.violations == [] and a.text == "Hello" and a.finish_reason == "stop"
    assert a.t_first_content is not None and a.t_first_content > ex.t_send_ns
    assert a.content_reads == 2 and a.delivery_spread is not None and a.delivery_spread > 0
    assert " -N" in ex.curl
    ex, a = send_stream(client, base + "/sse-no-done", api_key=KEY, json_body=body, timeout=5)
    assert ex.ok and {f.code for f in a.violations} == {"done_missing"}


@pytest.mark.parametrize(
    ("path", "error_class"),
    [("/endless", "timeout"), ("/drip", "timeout"), ("/reset-midbody", "reset"), ("/hang", "timeout")],
)
def test_hostile_streams_end_within_bounds(
    base: str, client: httpx.Client, path: str, error_class: str
) -> None:
    t0 = time.monotonic()
    ex, a = send_stream(
        client, base + path, api_key=KEY, json_body={"stream": True}, timeout=0.5, total_timeout=1.0
    )
    assert time.monotonic() - t0 < 2.5
    assert ex.error_class == error_class, ex.error
    assert "done_missing" in a.codes or "incomplete_event" in a.codes
    assert len(ex.body) <= 2048


def test_an_endless_stream_is_cut_by_the_byte_bound(base: str, client: httpx.Client) -> None:
    ex, a = send_stream(
        client, base + "/endless", api_key=KEY, json_body={"stream": True}, timeout=2, total_timeout=30,
        max_body_bytes=50_000, max_raw_bytes=10_000,
    )  # fmt: skip
    assert ex.error_class == "too_large" and 50_000 < ex.body_bytes < 200_000
    assert len(a.raw) == 10_000 and a.raw_truncated and a.text.startswith("toktok")


def test_an_error_for_a_stream_request_is_kept_as_json(base: str, client: httpx.Client) -> None:
    ex, _ = send_stream(client, base + "/leak", api_key=KEY, json_body={"stream": True}, timeout=5)
    assert ex.status == 401 and ex.json["error"]["message"].endswith(KEY_PLACEHOLDER)


def test_data_uris_are_abbreviated_in_summaries_and_big_reproducers(tmp_path: Path) -> None:
    payload = "A" * 55_000
    uri = f"data:image/png;base64,{payload}"
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert summarize_data_uri(uri) == f"data:image/png;base64,<55,000 base64 chars, sha256:{digest}…>"
    assert summarize_data_uri("data:image/png;base64,AAAA") == "data:image/png;base64,AAAA"
    body = {"messages": [{"content": [{"image_url": {"url": uri}}]}]}
    assert summarize_body(body)["messages"][0]["content"][0]["image_url"]["url"].endswith("…>")
    small = curl_reproducer(
        "POST", "http://h/x", body, {"Authorization": f"Bearer {KEY}"}, inline_limit=10**6
    )
    assert payload in small and KEY not in small
    big = curl_reproducer("POST", "http://h/x", body, {"Authorization": f"Bearer {KEY}"}, inline_limit=1000)
    assert payload not in big and big.startswith("# body abbreviated") and KEY not in big
    target = tmp_path / "body.json"
    exact = curl_reproducer("POST", "http://h/x", body, {}, body_file=target, inline_limit=1000)
    assert f"--data-binary @{target}" in exact and target.read_bytes() == encode_body(body)


def test_the_reproducer_runs_with_curl(base: str, client: httpx.Client, tmp_path: Path) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": 'it\'s a "quote" and $HOME\nEYECHART_BODY'}],
    }
    ex = send(client, "POST", base + "/echo", api_key=KEY, json_body=body, timeout=5)
    env = {**os.environ, "EYECHART_API_KEY": KEY}
    out = subprocess.run(["bash", "-c", ex.curl], capture_output=True, env=env, timeout=20, check=True)
    answer = json.loads(out.stdout)
    assert answer["auth"] == f"Bearer {KEY}"  # the shell filled in the key
    assert answer["sha256"] == hashlib.sha256(encode_body(body) + b"\n").hexdigest()  # heredoc adds \n
    assert json.loads(encode_body(body)) == body


# --- stale keep-alive connections -----------------------------------------------------------------


class KeepAliveServer:
    """A raw asyncio HTTP/1.1 server that keeps connections alive after the first answer and then, for a
    later request on the same connection, misbehaves as its path says: ``/stale-close`` closes, and
    ``/stale-rst`` resets, without a response byte (uvicorn after an error escaped the app, seen from the
    client); ``/stale-partial`` sends part of a head, then resets. The first request of a connection is
    always answered, as JSON or (a path with ``sse``) as an event stream."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop
        )
        self._server = future.result(5)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = next(
                    (
                        int(v)
                        for k, _, v in (x.partition(":") for x in lines[1:])
                        if k.lower() == "content-length"
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.hits[path] = self.hits.get(path, 0) + 1
                served += 1
                if served > 1 and path.startswith("/stale-close"):
                    writer.close()
                    return
                if served > 1 and path == "/stale-rst":
                    self._reset(writer)
                    return
                if served > 1 and path == "/stale-partial":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    self._reset(writer)
                    return
                if "sse" in path:
                    body = _chunk("Hi", role="assistant") + _chunk(None, finish="stop") + b"data: [DONE]\n\n"
                    ctype = "text/event-stream"
                else:
                    body = json.dumps({"path": path, "connection": self.connections}).encode()
                    ctype = "application/json"
                head_out = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head_out.encode() + body)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()


@pytest.fixture()
def keepalive() -> Iterator[tuple[KeepAliveServer, str]]:
    server = KeepAliveServer()
    url = server.start()
    yield server, url
    server.stop()


@pytest.mark.parametrize("path", ["/stale-close", "/stale-rst"])
def test_a_stale_keepalive_connection_is_retried_once_on_a_fresh_one(
    keepalive: tuple[KeepAliveServer, str], client: httpx.Client, path: str
) -> None:
    server, url = keepalive
    first = send(client, "GET", url + "/ok", api_key=KEY, timeout=5)
    assert first.status == 200 and first.retried is None and first.json["connection"] == 1
    ex = send(client, "POST", url + path, api_key=KEY, json_body={"a": 1}, timeout=5)
    # the server got the request twice: once on the reused connection it then dropped, once on a new one
    assert server.hits[path] == 2 and server.connections == 2
    assert ex.ok and ex.status == 200 and ex.json == {"path": path, "connection": 2}
    assert ex.retried and "reused keep-alive connection" in ex.retried and "reset" in ex.retried
    assert "sent twice" in ex.describe()
    _no_key(ex.retried, ex.describe())


def test_a_stale_connection_under_a_stream_is_retried_too(
    keepalive: tuple[KeepAliveServer, str], client: httpx.Client
) -> None:
    server, url = keepalive
    assert send(client, "GET", url + "/ok", api_key=KEY, timeout=5).status == 200
    ex, a = send_stream(client, url + "/stale-close-sse", api_key=KEY, json_body={"stream": True}, timeout=5)
    assert server.hits["/stale-close-sse"] == 2
    assert ex.status == 200 and ex.retried and a.violations == [] and a.text == "Hi"
    assert a.t_first_content is not None and a.t_first_content >= ex.t_send_ns  # timed from the retry


def test_a_reset_after_response_bytes_or_on_a_fresh_connection_is_evidence(
    keepalive: tuple[KeepAliveServer, str], base: str, client: httpx.Client
) -> None:
    server, url = keepalive
    assert send(client, "GET", url + "/ok", api_key=KEY, timeout=5).status == 200
    ex = send(client, "POST", url + "/stale-partial", api_key=KEY, json_body={}, timeout=5)
    assert ex.error_class in ("reset", "protocol") and ex.retried is None  # bytes came: the server's answer
    assert server.hits["/stale-partial"] == 1
    ex = send(client, "POST", base + "/reset", api_key=KEY, json_body={}, timeout=5)
    assert ex.error_class == "reset" and ex.retried is None  # a fresh connection reset: the server's answer
