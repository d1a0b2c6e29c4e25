"""Nothing a server sends crashes a run or loses its report (issue 10, item 6): one test per kind of byte.

A real HTTP server on 127.0.0.1 answers every chat request with a body carrying the bytes; the run must
end with its three reports written, each parseable, the bytes visible as escapes.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from rich.console import Console

from eyechart.conform.runner import ConformOptions, run_conformance

_ANSWER = (
    '{"id":"chatcmpl-1","object":%s,"created":1700000000,"model":"m","choices":[{"index":0,'
    '"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
# kind -> (the JSON value of "object" as raw bytes, the escape the reports must show)
KINDS = {
    "lone_surrogate": (b'"chat.completion\\ud800"', "\\ud800"),  # valid JSON, not encodable as UTF-8
    "nul_and_controls": (b'"chat\\u0000\\u001b[31m"', "\\u0000"),  # escaped in JSON text
    "raw_control_bytes": (b'"chat\x00\x07\x1b"', "\\x07"),  # raw in the body: not JSON at all
    "invalid_utf8": (b'"chat\xff\xfe\xc3"', "\\xff"),  # bytes that are no UTF-8
}


def _handler(value: bytes) -> type[BaseHTTPRequestHandler]:
    body = _ANSWER.encode().replace(b"%s", value)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # a JSON-valid kind goes into the model id the reports name too
            model = value[1:-1] if value.isascii() and b"\x00" not in value else b"m"
            self._send(b'{"object":"list","data":[{"id":"%s","object":"model","created":0}]}' % model)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(params=sorted(KINDS))
def byte_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    value, shown = KINDS[request.param]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(value))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", shown
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_servers_bytes_never_crash_the_run_or_lose_its_report(
    byte_server: tuple[str, str], tmp_path: Path
) -> None:
    url, shown = byte_server
    console = io.StringIO()
    opts = ConformOptions(
        base_url=url, api_key="sk-x", model=None, only=["response.schema", "request.content_string"],
        report_dir=tmp_path, progress=False,
    )  # fmt: skip
    outcome = run_conformance(opts, Console(file=console, width=120))
    assert "Traceback" not in console.getvalue()
    assert outcome.run is not None and outcome.run_dir is not None, outcome.message
    assert int(outcome.code) == 1  # the malformed answer is a finding, not a crash
    folder = outcome.run_dir
    doc = json.loads((folder / "conformance.json").read_text(encoding="utf-8"))
    schema = next(c for c in doc["checks"] if c["id"] == "response.schema")
    assert schema["status"] == "fail"
    assert shown in json.dumps(doc, ensure_ascii=False)
    junit = ET.parse(folder / "junit.xml").getroot()
    assert shown in ET.tostring(junit, encoding="unicode")
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert shown in html
    for name in ("conformance.json", "junit.xml", "index.html"):
        (folder / name).read_bytes().decode("utf-8")  # every report is valid UTF-8
