"""Small hostile chat servers for ``eyechart load`` tests, on 127.0.0.1 (real HTTP/1.1 keep-alive).

Each behaves like a real server someone will point ``eyechart load`` at:

- ``uuid_only``: like llama-cpp-python, answers 400 with an empty body unless ``X-Request-Id`` (or no
  id at all) is a UUID;
- ``close_after_error``: every ``error_every``-th request gets a 500; the connection stays open but the
  next request written on it is met by a close before any response byte (a keep-alive connection the
  server dropped as the request went out);
- ``cross_streams``: every ``cross_every``-th stream carries the previous stream's ``id`` in one chunk
  and that stream's ``usage`` (what batching bugs look like under load).

``ChatServer.seen`` keeps the request headers each request arrived with.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "tiny-vlm"


class ChatServer:
    def __init__(
        self,
        *,
        uuid_only: bool = False,
        error_every: int = 0,
        cross_every: int = 0,
        tokens: int = 6,
        token_delay_s: float = 0.002,
    ) -> None:
        self.uuid_only = uuid_only
        self.error_every = error_every
        self.cross_every = cross_every
        self.tokens = tokens
        self.token_delay_s = token_delay_s
        self.seen: list[dict[str, str]] = []
        self.count = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.last_stream: tuple[str, dict[str, int]] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            drop_next = False

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
                self._send(200, body, "application/json")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with server.lock:
                    server.count += 1
                    count = server.count
                    server.seen.append({k.lower(): v for k, v in self.headers.items()})
                    drop = self.drop_next
                if drop:  # the connection we "closed" after an error: no byte, just the close
                    with server.lock:
                        server.dropped += 1
                    self.close_connection = True
                    return
                rid = self.headers.get("X-Request-Id")
                if server.uuid_only and rid is not None:
                    try:
                        uuid.UUID(rid)
                    except ValueError:
                        self._send(400, b"", "text/plain")
                        return
                if server.error_every and count % server.error_every == 0:
                    self._send(500, b'{"error":{"message":"boom","type":"server_error"}}', "application/json")
                    self.drop_next = True  # one handler per connection: the next request on it
                    return
                req = json.loads(raw or b"{}")
                if req.get("stream"):
                    self._stream(req, count)
                else:
                    body = {
                        "id": f"chatcmpl-{count}", "object": "chat.completion", "created": int(time.time()),
                        "model": MODEL,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * 3},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                    }  # fmt: skip
                    self._send(200, json.dumps(body).encode(), "application/json")

            def _stream(self, req: dict[str, Any], count: int) -> None:
                cid = f"chatcmpl-{count}"
                # the same prompt counts the same prompt tokens (the body's length stands for it)
                usage = {
                    "prompt_tokens": 5 + len(json.dumps(req.get("messages"))) % 89,
                    "completion_tokens": server.tokens,
                }
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                with server.lock:
                    other = server.last_stream
                    server.last_stream = (cid, dict(usage))
                cross = bool(server.cross_every and count % server.cross_every == 0 and other)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                created = int(time.time())

                def event(obj: Any) -> None:
                    data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

                def chunk(
                    delta: dict[str, Any], finish: str | None = None, the_id: str = cid
                ) -> dict[str, Any]:
                    return {"id": the_id, "object": "chat.completion.chunk", "created": created,
                            "model": MODEL,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip

                event(chunk({"role": "assistant", "content": ""}))
                for i in range(server.tokens):
                    time.sleep(server.token_delay_s)
                    the_id = other[0] if cross and i == server.tokens // 2 and other else cid
                    event(chunk({"content": f"w{i} "}, the_id=the_id))
                event(chunk({}, "stop"))
                if (req.get("stream_options") or {}).get("include_usage"):
                    u = other[1] if cross and other else usage
                    event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                           "choices": [], "usage": u})  # fmt: skip
                event(b"[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
