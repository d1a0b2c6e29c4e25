"""One HTTP exchange as evidence: what was sent, what came back, and a curl command that repeats it.

``send`` and ``send_stream`` never raise for anything a server does. A refused connection, a hang, an
endless or huge body, a reset, garbage instead of HTTP: each ends as an ``Exchange`` whose ``error_class``
is one of ``connect``, ``timeout``, ``reset``, ``protocol``, ``too_large``, within bounded time and memory.
The time bound is wall-clock: ``total_timeout`` covers connecting, writing, the response head and the body
(each socket read is clamped to what is left, so headers dripped one byte at a time cannot stretch it);
the body is streamed and reading stops past ``max_body_bytes``.

Stale keep-alive connections are not the server's answer: a server may close an idle pooled connection
just as the next request goes out on it (uvicorn does after an error escaped the app, without a
``Connection: close`` header). When a request on a *reused* connection is reset or "disconnected
without sending a response" before a single response byte arrived, it is sent once more on a fresh
connection (as urllib3 does) and ``Exchange.retried`` says so; a reset on a fresh connection, or after
any byte, is evidence as it stands::

    with httpx.Client() as client:
        ex = send(client, "GET", base + "/models", api_key=key, timeout=10)
        ex, stream = send_stream(client, base + "/chat/completions", api_key=key, json_body=req,
                                 timeout=30, total_timeout=120)
    ex.status, ex.json, ex.error_class, stream.violations, print(ex.curl)

No secret appears in an Exchange, its repr, or its reproducer (:mod:`eyechart.wire.reproducer` says
what is secret and builds the ``curl`` command): the run's real key (``secret``, by default the ``api_key``
sent) is shown as ``$EYECHART_API_KEY`` wherever it occurs — the Authorization header reads ``Bearer
$EYECHART_API_KEY`` and an echo in a response or error text is replaced too — and a secret-named header
(``X-Gateway-Token``) as ``$X_GATEWAY_TOKEN``, the variable a pasted reproducer reads it from. A
deliberately wrong key sent by a probe (``api_key="wrong", secret=<real key>``) is not a secret: it is
shown literally, so the reproducer really repeats the 401.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpcore
import httpx

from eyechart.secrets import KEY_PLACEHOLDER as KEY_PLACEHOLDER  # re-exported: the reproducer's variable
from eyechart.wire.reproducer import _UNSET, INLINE_LIMIT, mask_bytes, mask_text, masks, shown_headers
from eyechart.wire.reproducer import curl_reproducer as curl_reproducer  # re-exported for older imports
from eyechart.wire.reproducer import encode_body as encode_body
from eyechart.wire.reproducer import summarize_body as summarize_body
from eyechart.wire.reproducer import summarize_data_uri as summarize_data_uri
from eyechart.wire.sse import SSEReader, StreamAnalysis

ErrorClass = Literal["connect", "timeout", "reset", "protocol", "too_large"]

HEAD_BYTES = 2048  # what a report shows of a body


@dataclass
class Exchange:
    """The evidence of one HTTP request and response (or of the transport failure instead)."""

    method: str
    url: str
    request_headers: dict[str, str]  # Authorization shown as Bearer $EYECHART_API_KEY
    request_body: str | None  # JSON text with data URIs abbreviated (a summary, not the bytes sent)
    request_bytes: int = 0  # size of the body actually sent
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)  # what was kept: whole for send(), first 2 KiB of a stream
    body_bytes: int = 0  # how many body bytes arrived in all
    elapsed_s: float = 0.0
    error_class: ErrorClass | None = None
    error: str | None = None  # transport error text (key scrubbed)
    t_send_ns: int = 0  # monotonic ns
    t_head_ns: int | None = None
    t_end_ns: int | None = None
    json: Any = field(default=None, repr=False)  # the parsed body when it is complete JSON
    json_error: str | None = None  # why the body is not JSON (None when it parsed)
    curl: str = field(default="", repr=False)  # the reproducer
    # why the request was sent a second time (a stale keep-alive connection), None when sent once
    retried: str | None = None
    # the JSON body, kept only when it was too big to inline in ``curl`` (see ``save_body``)
    sent_body: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """No transport error (the status may still be anything)."""
        return self.error_class is None

    @property
    def body_head(self) -> bytes:
        return self.body[:HEAD_BYTES]

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    def describe(self) -> str:
        """Three lines for a report: the request, the outcome, the first bytes of the body."""
        outcome = f"HTTP {self.status}" if self.status is not None else "no response"
        if self.error_class:
            outcome += f", {self.error_class}: {self.error}"
        if self.retried:
            outcome += f" (sent twice: {self.retried})"
        head = self.body_head.decode("utf-8", "replace")
        return f"{self.method} {self.url}\n{outcome} after {self.elapsed_s:.3f}s\n{head}"

    def save_body(self, path: Path) -> Path | None:
        """Write the exact request body to ``path`` and point the reproducer at it (``--data-binary
        @path``), for a body too big to inline; None (nothing written) when the reproducer is exact."""
        if self.sent_body is None:
            return None
        path = path.resolve()
        self.curl = curl_reproducer(
            self.method, self.url, self.sent_body, self.request_headers, body_file=path, secret=None
        )
        return path


# --- wall-clock deadlines ---------------------------------------------------------------------------
# httpx timeouts bound each socket operation, not a request: a server dripping its headers one byte every
# half second never trips a 5 s read timeout. The client's network backend is wrapped so that every
# connect, read and write is clamped to what is left of the current exchange's deadline.

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("eyechart_deadline", default=None)


@dataclass
class _Wire:
    """What one attempt did on the wire: connections opened and response bytes read (for the retry rule)."""

    connects: int = 0
    bytes_in: int = 0


_WIRE: contextvars.ContextVar[_Wire | None] = contextvars.ContextVar("eyechart_wire", default=None)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the total time limit of the exchange was reached")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))
        wire = _WIRE.get()
        if wire is not None:
            wire.bytes_in += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        wire = _WIRE.get()
        if wire is not None:
            wire.connects += 1
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        wire = _WIRE.get()
        if wire is not None:
            wire.connects += 1
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadlines(client: httpx.Client) -> bool:
    """Make ``client`` honour exchange deadlines (idempotent; ``send`` does it for every client it gets).

    False when the client's transport is not httpx's default one (then only per-read timeouts apply)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if pool is None or not isinstance(backend, httpcore.NetworkBackend):
        return False
    if not isinstance(backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(backend)
    return True


def bounded_client(*, ca_bundle: str | None = None, insecure: bool = False, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` (same keyword arguments) whose requests through ``send`` obey wall-clock limits.

    ``ca_bundle``/``insecure`` are ``--ca-bundle``/``--insecure``, read here for every job's client: trust
    these CA certificates too, or verify nothing. A bundle that cannot be read raises ``OSError``."""
    if insecure:
        kwargs["verify"] = False
    elif ca_bundle:
        kwargs["verify"] = ssl.create_default_context(cafile=ca_bundle)
    client = httpx.Client(**kwargs)
    install_deadlines(client)
    return client


# --- sending -------------------------------------------------------------------------------------


def _classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError | httpx.UnsupportedProtocol):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc).lower()
        if "peer closed" in text or "disconnected" in text or "incomplete" in text:
            return "reset"
        return "protocol"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | ConnectionError):
        return "reset"
    return "protocol"


def _transfer(
    client: httpx.Client,
    ex: Exchange,
    raw: bytes | None,
    sent_headers: dict[str, str],
    limits: httpx.Timeout,
    reader: SSEReader | None,
    max_body_bytes: int,
    deadline: int,
    total_timeout: float,
    wire: _Wire,
    found: dict[str, str],
) -> bytearray:
    """One attempt: send, read the head and the body into ``ex`` within the deadline; the kept bytes."""
    kept = bytearray()
    keep = max_body_bytes
    token = _WIRE.set(wire)
    try:
        with client.stream(ex.method, ex.url, content=raw, headers=sent_headers, timeout=limits) as response:
            ex.t_head_ns = time.monotonic_ns()
            ex.status = response.status_code
            ex.response_headers = {k.lower(): v for k, v in response.headers.items()}
            streaming = reader is not None and ex.status == 200 and "text/event-stream" in ex.content_type
            if streaming:
                keep = HEAD_BYTES
            for piece in response.iter_bytes():
                now = time.monotonic_ns()
                ex.body_bytes += len(piece)
                if len(kept) < keep:
                    kept += piece[: keep - len(kept)]
                if reader is not None:
                    reader.feed(piece, now)
                if ex.body_bytes > max_body_bytes:
                    ex.error_class = "too_large"
                    ex.error = f"the body exceeded {max_body_bytes:,} bytes; reading stopped"
                    break
                if now > deadline:
                    ex.error_class = "timeout"
                    ex.error = f"the exchange exceeded its total time limit of {total_timeout:g}s"
                    break
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, OSError, ValueError, EOFError) as exc:
        # anything the server does must end as evidence, not a traceback
        ex.error_class = _classify(exc)
        ex.error = mask_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, found)
    finally:
        _WIRE.reset(token)
    return kept


def retry_on_fresh_connection(*, reset: bool, reused: bool, response_bytes: int) -> bool:
    """The one retry rule of both jobs' clients (``conform`` here, ``load`` in its Locust user): a request
    reset on a *reused* keep-alive connection before any response byte arrived is not the server's
    answer (it closed the idle connection as the request went out) and is sent once more on a fresh
    connection, recorded as retried. A reset on a fresh connection, or after any byte, is evidence."""
    return reset and reused and response_bytes == 0


def _stale_connection(ex: Exchange, wire: _Wire) -> bool:
    return retry_on_fresh_connection(
        reset=ex.error_class == "reset" and ex.status is None,
        reused=wire.connects == 0,
        response_bytes=wire.bytes_in,
    )


def _drop_idle_connections(client: httpx.Client) -> None:
    """Close the pool's idle connections, so the next request opens a fresh one (they may be stale too)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    for connection in list(getattr(pool, "connections", None) or []):
        try:
            if connection.is_idle():
                connection.close()
        except Exception:  # a connection that cannot even close is already gone
            continue


def _exchange(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    api_key: str | None,
    json_body: Any,
    headers: dict[str, str] | None,
    timeout: float,
    total_timeout: float,
    max_body_bytes: int,
    reader: SSEReader | None,
    body_dir: Path | None,
    secret: str | None,
) -> Exchange:
    sent_headers: dict[str, str] = {"Accept": "text/event-stream" if reader else "application/json"}
    raw: bytes | None = None
    if json_body is not None:
        raw = encode_body(json_body)
        sent_headers["Content-Type"] = "application/json"
    sent_headers.update(headers or {})
    if api_key is not None:
        sent_headers["Authorization"] = f"Bearer {api_key}"
    found = masks(sent_headers, secret)  # every secret sent -> the variable shown in its place
    body_file = None
    if raw is not None and body_dir is not None and len(raw) > INLINE_LIMIT:
        body_file = body_dir / f"request-{hashlib.sha256(raw).hexdigest()[:16]}.json"
    ex = Exchange(
        method=method.upper(),
        url=url,
        request_headers=shown_headers(sent_headers, secret),
        request_body=(
            mask_text(json.dumps(summarize_body(json_body), ensure_ascii=False), found)
            if json_body is not None
            else None
        ),
        request_bytes=len(raw or b""),
        curl=curl_reproducer(method, url, json_body, sent_headers, body_file=body_file, secret=secret),
    )
    big = raw is not None and body_file is None and len(raw) > INLINE_LIMIT
    if big and not any(s.encode() in (raw or b"") for s in found):  # a body holding a secret stays unsaved
        ex.sent_body = json_body
    read_timeout = min(timeout, total_timeout)
    limits = httpx.Timeout(connect=read_timeout, read=read_timeout, write=read_timeout, pool=read_timeout)
    installed = install_deadlines(client)
    ex.t_send_ns = start = time.monotonic_ns()
    deadline = start + int(total_timeout * 1e9)
    token = _DEADLINE.set(time.monotonic() + total_timeout)
    if reader is not None:
        reader.t_start_ns = start
    try:
        attempt = (client, ex, raw, sent_headers, limits, reader, max_body_bytes, deadline, total_timeout)
        wire = _Wire()
        kept = _transfer(*attempt, wire, found)
        if installed and _stale_connection(ex, wire) and time.monotonic_ns() < deadline:
            first = f"{ex.error_class}: {ex.error}"
            _drop_idle_connections(client)
            ex.status, ex.response_headers, ex.body_bytes = None, {}, 0
            ex.error_class = ex.error = None
            ex.t_send_ns = time.monotonic_ns()
            if reader is not None:
                reader.t_start_ns = ex.t_send_ns
            wire = _Wire()
            kept = _transfer(*attempt, wire, found)
            ex.retried = (
                f"the first attempt, on a reused keep-alive connection, ended before any response byte "
                f"({first}); sent again on a fresh connection"
            )
    finally:
        _DEADLINE.reset(token)
    expired = ex.error_class == "timeout" and time.monotonic_ns() >= deadline
    if expired and "total time limit" not in (ex.error or ""):
        ex.error = f"the exchange exceeded its total time limit of {total_timeout:g}s ({ex.error})"
    ex.t_end_ns = time.monotonic_ns()
    ex.elapsed_s = (ex.t_end_ns - ex.t_send_ns) / 1e9
    complete = len(kept) == ex.body_bytes
    ex.body = mask_bytes(bytes(kept), found)
    if ex.status is not None and ex.error_class is None and complete:
        try:
            ex.json = json.loads(ex.body)
        except ValueError as exc:
            ex.json_error = f"not JSON: {exc}"
    else:
        ex.json_error = "the body was not read completely"
    if reader is not None:
        analysis = reader.close(ex.t_end_ns)
        analysis.raw = mask_bytes(analysis.raw, found)
    return ex


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    api_key: str | None,
    json_body: Any = None,
    timeout: float = 30.0,
    total_timeout: float | None = None,
    max_body_bytes: int = 4 << 20,
    headers: dict[str, str] | None = None,
    body_dir: Path | None = None,
    secret: str | None = _UNSET,
) -> Exchange:
    """Send one request and read the whole body (up to ``max_body_bytes``) within ``total_timeout``
    (default: ``timeout``, wall-clock); ``ex.json`` holds the parsed body. ``api_key=None`` sends no
    Authorization. ``secret``: the run's real key, masked everywhere (default: ``api_key``); pass it when
    ``api_key`` is a deliberately wrong key, which is then shown literally."""
    return _exchange(
        client,
        method,
        url,
        api_key=api_key,
        json_body=json_body,
        headers=headers,
        timeout=timeout,
        total_timeout=total_timeout if total_timeout is not None else timeout,
        max_body_bytes=max_body_bytes,
        reader=None,
        body_dir=body_dir,
        secret=secret,
    )


def send_stream(
    client: httpx.Client,
    url: str,
    *,
    api_key: str | None,
    json_body: Any,
    timeout: float = 30.0,
    total_timeout: float = 300.0,
    max_body_bytes: int = 64 << 20,
    headers: dict[str, str] | None = None,
    body_dir: Path | None = None,
    max_raw_bytes: int = 8 << 20,
    secret: str | None = _UNSET,
) -> tuple[Exchange, StreamAnalysis]:
    """POST a streamed request; every read goes through the strict SSE reader as it arrives.

    The analysis always reflects the bytes that came. When the answer is not a 200 event stream (a JSON
    error, say), look at ``ex.status`` / ``ex.json`` first: the whole body is then kept in ``ex.body``, and
    the analysis (fed the same bytes) is not meaningful. ``include_usage`` for the usage rules is taken from
    ``json_body["stream_options"]``. ``secret`` as for :func:`send`.
    """
    options = json_body.get("stream_options") if isinstance(json_body, dict) else None
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    reader = SSEReader(include_usage=include_usage, max_raw_bytes=max_raw_bytes)
    ex = _exchange(
        client,
        "POST",
        url,
        api_key=api_key,
        json_body=json_body,
        headers=headers,
        timeout=timeout,
        total_timeout=total_timeout,
        max_body_bytes=max_body_bytes,
        reader=reader,
        body_dir=body_dir,
        secret=secret,
    )
    return ex, reader.close()  # closed by the exchange, raw bytes scrubbed
