"""The Locust user that sends vision chat requests and times every streamed chunk.

:class:`VisionChatUser` is a ``FastHttpUser`` (geventhttpclient). It takes a pre-built request body from
the workload, sends it with an ``X-Request-Id`` the target's ``--trace`` records, and reads the response
straight off the socket, stamping each read with ``time.monotonic_ns()``:

- ``t_send`` just before the request is written, ``t_head`` when the headers are parsed,
- ``t_first`` at the read holding the first event with *non-empty* ``content`` (a role-only first chunk
  is not the first token), one timestamp per content chunk for ITL (per chunk, not per SSE line),
- ``t_end`` at the read holding the end of the body.

A request over ``--request-timeout`` is a ``timeout`` failure with what it received so far; its
connection is dropped (a fresh client replaces it, so no socket is ever left checked out).

The reader (:class:`eyechart.load.chunks.StreamReader`) is cheap on purpose, since the hot path runs
~150k chunks/s; its docstring states the fast path and its one tradeoff.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import gevent
from geventhttpclient.response import HTTPConnectionClosed
from locust import task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from eyechart.load.chunks import StreamReader, classify_exception, classify_status
from eyechart.load.records import RequestRecord
from eyechart.wire.exchange import retry_on_fresh_connection

_monotonic_ns = time.monotonic_ns
_yield = gevent.sleep  # sleep(0): run the other ready greenlets first
_READ = 65536


def _closed_before_any_byte(exc: BaseException) -> bool:
    """The connection was closed or reset before a single response byte (geventhttpclient's
    ``HTTPConnectionClosed`` means exactly that), or broke while the request was written."""
    return isinstance(exc, HTTPConnectionClosed | ConnectionResetError | BrokenPipeError)


class VisionChatUser(FastHttpUser):
    """One load user: takes the next request (closed loop) or the next intended send time (open loop).

    The per-process :class:`eyechart.load.session.LoadSession` (workload, schedule, stats, writer) is
    set up by the locustfile's ``test_start`` hook; the user only asks it what to send and when.
    """

    abstract = True  # the locustfile exposes a concrete subclass
    network_timeout = 120.0
    connection_timeout = 10.0
    concurrency = 1
    max_retries = 0

    session_getter: Callable[[], Any] | None = None

    def on_start(self) -> None:
        getter = type(self).session_getter
        if getter is None:
            raise StopUser()
        self._session = getter()
        if self._session is None:
            raise StopUser()
        s = self._session
        # The lowest-overhead path: one geventhttpclient HTTPClient (one keep-alive connection) per user.
        self._http = s.new_client()
        self._path = s.chat_path
        self._headers = s.headers
        s.user_started()

    @task
    def chat(self) -> None:
        s = self._session
        t_sched = s.next_send()
        if t_sched is None:
            raise StopUser()
        if t_sched > 0:
            delay = t_sched - _monotonic_ns()
            if delay > 0:
                gevent.sleep(delay / 1e9)
        else:
            t_sched = None  # closed loop
        rec, chunk_times = self.send(s.pick(), t_sched)
        s.record(rec, chunk_times)

    def send(self, template: Any, t_sched: int | None) -> tuple[RequestRecord, list[int]]:
        """One request: its record and the arrival times of its content chunks (for ITL)."""
        s = self._session
        rid = s.new_request_id()
        headers = dict(self._headers)
        if s.request_id_header:
            headers[s.request_id_header] = rid
        times: list[int] = []  # content chunks' arrival times, filled as the stream is read
        rec = RequestRecord(
            request_id=rid,
            stage=s.stage_of(t_sched if t_sched is not None else _monotonic_ns()),
            case=template.case,
            stream=template.stream,
            transport=template.transport,
            t_sched=t_sched,
            t_send=0,
            images=template.images,
            pixels=template.pixels,
            image_bytes=template.image_bytes,
            wire_bytes=len(template.body),
        )
        s.track(rec, times)
        keep: list[bytes] | None = [] if s.sample() else None  # a judged answer is kept whole
        self._seen_headers: dict[str, str] = {}
        timer = gevent.Timeout(s.request_timeout_s)
        timer.start()
        try:
            self._exchange(rec, template.body, headers, template.stream, times, keep)
            if keep is not None:
                s.judge(template, rec, self._seen_headers, b"".join(keep))
        except gevent.Timeout as t:
            if t is not timer:
                raise
            rec.t_end = _monotonic_ns()
            rec.error_class = "timeout"
            rec.error = f"no complete answer within --request-timeout {s.request_timeout_s:g} s"
            rec.content_chunks = len(times)
            if times:
                rec.t_first = times[0]
            self._renew_client()
        finally:
            timer.close()
        return rec, times

    def _renew_client(self) -> None:
        """Drop the connection a request was cut off on: a new client, the old one closed."""
        old, self._http = self._http, self._session.new_client()
        with contextlib.suppress(Exception):
            old.close()

    def _exchange(
        self,
        rec: RequestRecord,
        body: bytes,
        headers: dict[str, str],
        stream: bool,
        times: list[int],
        keep: list[bytes] | None = None,
    ) -> None:
        while True:
            reused = self._http._connection_pool._socket_queue.qsize() > 0  # a kept-alive connection
            try:
                if not rec.retried:
                    rec.t_send = _monotonic_ns()  # last thing before the request is written
                resp = self._http.request("POST", self._path, body=body, headers=headers)
                break
            except Exception as exc:
                # the retry's latencies still count from the first send: the lost time stays in
                if not rec.retried and retry_on_fresh_connection(
                    reset=_closed_before_any_byte(exc), reused=reused, response_bytes=0
                ):
                    rec.retried = True
                    self._renew_client()
                    continue
                rec.t_end = _monotonic_ns()
                rec.error_class = classify_exception(exc)
                rec.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                return
        rec.t_head = _monotonic_ns()
        status = resp.status_code
        if keep is not None:
            self._seen_headers = {k.lower(): v for k, v in resp.items()}
        rec.status = status
        try:
            if status >= 400 or not stream:
                data = resp.read()
                rec.t_end = _monotonic_ns()
                rec.response_bytes = len(data)
                if keep is not None:
                    keep.append(data)
                err = classify_status(status)
                if err is not None:
                    rec.error_class = err
                    rec.error = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
                else:
                    self._whole(rec, data)
                return
            if "event-stream" not in (resp.get("content-type") or ""):
                resp.read()
                rec.t_end = _monotonic_ns()
                rec.error_class = "malformed"
                rec.error = f"stream asked, got Content-Type {resp.get('content-type')!r}"
                return
            self._stream(rec, resp, times, keep)
        except Exception as exc:
            rec.t_end = _monotonic_ns()
            rec.error_class = classify_exception(exc, reading=True)
            rec.error = f"{type(exc).__name__} while reading: {str(exc)[:200]}"
            rec.content_chunks = len(times)
            if times:
                rec.t_first = times[0]
            with contextlib.suppress(Exception):
                resp.release()

    def _stream(self, rec: RequestRecord, resp: Any, times: list[int], keep: list[bytes] | None) -> None:
        """Read the SSE body into ``rec``; the content chunks' arrival times go to ``times``."""
        reader = StreamReader(times)
        feed = reader.feed
        nbytes = 0
        buf = resp._body_buffer
        if buf:
            data = bytes(buf)
            del buf[:]
            nbytes += len(data)
            rec.response_bytes = nbytes
            if keep is not None:
                keep.append(data)
            feed(data, rec.t_head or _monotonic_ns())
        first = True
        while not resp.message_complete:
            sock = resp._sock
            if sock is None:
                break
            data = sock.recv(_READ)
            t = _monotonic_ns()
            if not data:
                resp.release()
                break
            if first:
                # Streams often become readable together (a batch of tokens). Stamp, then let the other
                # ready users take their own stamps before this one parses and records: otherwise the
                # last of N is stamped N parse-and-record times late.
                first = False
                _yield()
            resp.feed(data)
            buf = resp._body_buffer
            if buf:
                data = bytes(buf)
                del buf[:]
                nbytes += len(data)
                rec.response_bytes = nbytes
                if keep is not None:
                    keep.append(data)
                feed(data, t)
        rec.t_end = _monotonic_ns()
        reader.close(complete=bool(resp.message_complete))
        rec.content_chunks = len(times)
        if times:
            rec.t_first = times[0]
        rec.prompt_tokens = reader.prompt_tokens
        if reader.completion_tokens is not None:
            rec.completion_tokens = reader.completion_tokens
        else:
            rec.completion_tokens = len(times)
            rec.tokens_estimated = True
        if reader.error_class is not None:
            rec.error_class = reader.error_class
            rec.error = reader.error

    def _whole(self, rec: RequestRecord, body: bytes) -> None:
        try:
            obj = json.loads(body)
            usage = obj.get("usage") or {}
            content = obj["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            rec.error_class = "malformed"
            rec.error = f"bad JSON body: {body[:120]!r}"
            return
        if content:
            rec.t_first = rec.t_end  # unstreamed: the first token arrives with the whole answer
            rec.content_chunks = 1
        if isinstance(usage.get("completion_tokens"), int):
            rec.completion_tokens = usage["completion_tokens"]
        else:
            rec.completion_tokens = len(content.split())
            rec.tokens_estimated = True
        if isinstance(usage.get("prompt_tokens"), int):
            rec.prompt_tokens = usage["prompt_tokens"]
