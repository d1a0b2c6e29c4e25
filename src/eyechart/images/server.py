"""The fixture HTTP server: serves image fixtures by URL, honest and hostile, from a background thread.

A target fetches image URLs from here. Besides plain files it misbehaves on purpose, in bounded ways
(every slow or endless route stops by itself after ``max_seconds``):

  /img/<name>[?content_type=T]     the fixture with its true Content-Type (or the label T)
  /404                             404 with a small text body (so does any unknown path)
  /html-as-png                     an HTML page served as image/png
  /drip/<name>?bps=64&max_seconds=60      the fixture, ``bps`` bytes per second
  /lying-length/<name>?mode=longer|shorter  Content-Length larger than the body (then the connection
                                   idles until ``max_seconds``), or smaller than what is sent
  /redirect/<n>/<name>             a chain of n 302s ending at /img/<name>
  /redirect-private/<token>?to=loopback|metadata   302 to http://127.0.0.1:<port>/canary/<token>
                                   or to http://169.254.169.254/latest/meta-data/
  /canary/<token>                  counts a hit (``canary_hits(token)``) and serves a small PNG
  /exact/<n>.png | /exact/<n>.jpg  an image of exactly n bytes
  /huge?max_bytes=N                a PNG header followed by zeros without Content-Length, up to N bytes
  /health                          200 "ok"

Raw asyncio rather than an ASGI stack: the hostile routes need byte-level control over headers, body
length and timing that a conforming HTTP server would (rightly) refuse to produce.

    with FixtureServer() as srv:
        url = srv.url("/img/colour-red")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from eyechart.images import fixtures

MAX_SECONDS_CAP = 300.0  # no route ever keeps a connection longer than this
MAX_EXACT_BYTES = 64 * 1024 * 1024
DEFAULT_HUGE_BYTES = 256 * 1024 * 1024
_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT = 10.0
_CHUNK = 64 * 1024

_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
}


class FixtureServerError(RuntimeError):
    """The server could not start (address in use, bad bind address, ...)."""


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FixtureServer:
    """Serve fixtures over HTTP from a daemon thread; usable from sync code and as a context manager.

    ``public_url`` is the address the *target* should use (e.g. ``http://10.0.0.5:8900`` when the
    target runs elsewhere); without it URLs use ``http://<bind>:<port>``.
    """

    def __init__(
        self, bind: str = "127.0.0.1", port: int = 0, public_url: str | None = None, cache: Path | None = None
    ) -> None:
        self.bind = bind
        self.public_url = public_url.rstrip("/") if public_url else None
        # A public URL that names a port is where the target calls back: listen there too (a k8s
        # Service or a firewall rule is set up for that port), unless a port is given explicitly.
        self.port = port or (urlsplit(self.public_url).port or 0 if self.public_url else 0)
        self._cache = cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._canary: Counter[str] = Counter()
        self._paths: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> FixtureServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="eyechart-fixture-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise FixtureServerError(f"fixture server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise FixtureServerError(f"cannot serve fixtures on {self.bind}:{self.port}: {self._error}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._shutdown)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FixtureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the server stops (foreground use; Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.bind, self.port, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except (OSError, ValueError) as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _shutdown(self) -> None:
        assert self._loop is not None
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        loop = self._loop

        async def settle() -> None:
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)
            loop.stop()

        loop.create_task(settle())

    # ---------------------------------------------------------------- addresses and counters

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.bind in ("", "0.0.0.0") else "::1" if self.bind == "::" else self.bind
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        """The URL a target uses for ``path`` (e.g. ``/img/png-rgb``)."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def loopback_url(self, path: str) -> str:
        """The same route on 127.0.0.1 of this host: what a private-address redirect points to."""
        return f"http://127.0.0.1:{self.port}" + (path if path.startswith("/") else "/" + path)

    def canary_hits(self, token: str) -> int:
        """How many requests reached ``/canary/<token>``: a non-zero count proves the target connected."""
        with self._lock:
            return self._canary[token]

    def hits(self, path: str) -> int:
        """How many requests arrived for this exact path (query string excluded)."""
        with self._lock:
            return self._paths[path]

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            req = await asyncio.wait_for(self._read_request(reader), _HEAD_TIMEOUT)
            if req is None:
                return
            with self._lock:
                self._paths[req.path] += 1
            await self._route(req, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        split = urlsplit(parts[1])
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        return _Request(parts[0].upper(), unquote(split.path), query, headers)

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in {**headers, "Connection": "close"}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(extra or {})}
        writer.write(self._head(status, headers) + (b"" if head_only else body))
        await writer.drain()

    async def _route(self, req: _Request, w: asyncio.StreamWriter) -> None:
        head_only = req.method == "HEAD"
        if req.method not in ("GET", "HEAD"):
            await self._send(w, 405, b"only GET and HEAD\n", extra={"Allow": "GET, HEAD"})
            return
        parts = [p for p in req.path.split("/") if p]
        route = parts[0] if parts else ""
        try:
            if route == "img" and len(parts) == 2:
                fx = await self._fixture(parts[1])
                ctype = req.query.get("content_type", fx.media_type)
                await self._send(w, 200, fx.data(), ctype, head_only=head_only)
            elif route == "health":
                await self._send(w, 200, b"ok\n", head_only=head_only)
            elif route == "html-as-png":
                await self._send(w, 200, fixtures.HTML_PAGE, "image/png", head_only=head_only)
            elif route == "drip" and len(parts) == 2:
                await self._drip(w, req, parts[1])
            elif route == "lying-length" and len(parts) == 2:
                await self._lying(w, req, parts[1])
            elif route == "redirect" and len(parts) == 3:
                n = int(parts[1])
                if not 0 <= n <= 100:
                    raise ValueError("redirect count must be 0..100")
                target = f"/redirect/{n - 1}/{parts[2]}" if n > 1 else f"/img/{parts[2]}"
                await self._redirect(w, self.url(target))
            elif route == "redirect-private" and len(parts) == 2:
                where = req.query.get("to", "loopback")
                if where == "metadata":
                    await self._redirect(w, "http://169.254.169.254/latest/meta-data/")
                elif where == "loopback":
                    await self._redirect(w, self.loopback_url(f"/canary/{parts[1]}"))
                else:
                    raise ValueError("to= must be loopback or metadata")
            elif route == "canary" and len(parts) == 2:
                with self._lock:
                    self._canary[parts[1]] += 1
                fx = await self._fixture("colour-red")
                await self._send(w, 200, fx.data(), fx.media_type, head_only=head_only)
            elif route == "exact" and len(parts) == 2:
                await self._exact(w, parts[1], head_only)
            elif route == "huge":
                await self._huge(w, req)
            elif route == "":
                await self._send(w, 200, (__doc__ or "").encode(), head_only=head_only)
            else:
                await self._send(w, 404, b"not found\n", head_only=head_only)
        except fixtures.UnknownFixtureError as exc:
            await self._send(w, 404, f"{exc}\n".encode(), head_only=head_only)
        except ValueError as exc:
            await self._send(w, 400, f"bad request: {exc}\n".encode(), head_only=head_only)

    async def _fixture(self, name: str) -> fixtures.Fixture:
        # Generation may take a moment the first time (the large ones): keep the loop free.
        return await asyncio.to_thread(fixtures.get, name, self._cache)

    @staticmethod
    def _seconds(req: _Request, default: float) -> float:
        value = float(req.query.get("max_seconds", default))
        if not 0 < value <= MAX_SECONDS_CAP:
            raise ValueError(f"max_seconds must be in (0, {MAX_SECONDS_CAP:g}]")
        return value

    async def _redirect(self, w: asyncio.StreamWriter, location: str) -> None:
        await self._send(w, 302, b"redirecting\n", extra={"Location": location})

    async def _drip(self, w: asyncio.StreamWriter, req: _Request, name: str) -> None:
        bps = float(req.query.get("bps", 64))
        if bps <= 0:
            raise ValueError("bps must be > 0")
        deadline = time.monotonic() + self._seconds(req, 60.0)
        fx = await self._fixture(name)
        body = fx.data()
        w.write(self._head(200, {"Content-Type": fx.media_type, "Content-Length": str(len(body))}))
        await w.drain()
        step = max(1, int(bps / 10))  # ten writes a second
        for i in range(0, len(body), step):
            if time.monotonic() >= deadline:
                return
            w.write(body[i : i + step])
            await w.drain()
            await asyncio.sleep(step / bps)

    async def _lying(self, w: asyncio.StreamWriter, req: _Request, name: str) -> None:
        mode = req.query.get("mode", "longer")
        hold = self._seconds(req, 30.0)
        fx = await self._fixture(name)
        body = fx.data()
        if mode == "longer":
            declared = len(body) + 1_000_000
        elif mode == "shorter":
            declared = max(0, len(body) // 2)
        else:
            raise ValueError("mode must be longer or shorter")
        w.write(self._head(200, {"Content-Type": fx.media_type, "Content-Length": str(declared)}) + body)
        await w.drain()
        if mode == "longer":
            await asyncio.sleep(hold)  # the promised bytes never come; a client must time out

    async def _exact(self, w: asyncio.StreamWriter, leaf: str, head_only: bool) -> None:
        stem, _, ext = leaf.partition(".")
        if not stem.isdigit() or ext not in ("png", "jpg", "jpeg"):
            raise ValueError("use /exact/<n>.png or /exact/<n>.jpg")
        n = int(stem)
        if n > MAX_EXACT_BYTES:
            raise ValueError(f"at most {MAX_EXACT_BYTES} bytes")
        path = await asyncio.to_thread(fixtures.exact_size_image, n, ext, self._cache)
        media = "image/png" if ext == "png" else "image/jpeg"
        w.write(self._head(200, {"Content-Type": media, "Content-Length": str(n)}))
        if head_only:
            return
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                w.write(chunk)
                await w.drain()

    async def _huge(self, w: asyncio.StreamWriter, req: _Request) -> None:
        limit = int(req.query.get("max_bytes", DEFAULT_HUGE_BYTES))
        if not 0 < limit <= 16 * 1024**3:
            raise ValueError("max_bytes must be in (0, 16 GiB]")
        deadline = time.monotonic() + self._seconds(req, 60.0)
        head = fixtures.png_chunk(b"IHDR", bytes.fromhex("00004e2000004e200800000000"))  # 20000x20000 L
        w.write(self._head(200, {"Content-Type": "image/png"}) + b"\x89PNG\r\n\x1a\n" + head)
        zeros = bytes(_CHUNK)
        sent = 0
        while sent < limit and time.monotonic() < deadline:
            chunk = zeros[: min(_CHUNK, limit - sent)]
            w.write(chunk)
            await w.drain()
            sent += len(chunk)
