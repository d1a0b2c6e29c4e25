"""Shared fixtures: a real reference target on 127.0.0.1 and a tiny local image server.

``target`` is one ``eyechart serve`` subprocess per session (one per pytest-xdist worker), with the
default latency model run 20x faster (streams stay incremental, tests stay fast), private URLs allowed
(for ``image_server``) and a trace file. Tests that need other settings start their own with
``launch.start_target``.
"""

from __future__ import annotations

import gc
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eyechart.target.launch import RunningTarget, start_target

FAST_ARGS = ("--speed", "20", "--allow-private-urls")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Hide what collection built (every module and item of this session) from the garbage collector.

    Each in-process conformance run is a nested pytest session, and pytest ends every session with a
    full ``gc.collect()``: scanning this session's heap cost ~0.2 s per run, a third of a short run.
    Frozen objects are never freed, which is fine: they live until the session ends anyway.
    """
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def own_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This session's temporary files, and those of every command it starts, in a folder of its own.

    A test that asserts nothing is left behind in the temp dir (a load worker's record parts) then sees
    this session's files only, not those of a run going on beside it (the other pytest-xdist worker,
    another checkout's suite on the same machine).
    """
    path = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(path))
        mp.setattr(tempfile, "tempdir", str(path))
        yield path


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTarget]:
    trace = tmp_path_factory.mktemp("target") / "trace.jsonl"
    with start_target(args=FAST_ARGS, trace=trace) as running:
        yield running


class ImageServer:
    """Serves registered bytes at ``/<name>`` over real HTTP on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, ctype = files.get(self.path.lstrip("/"), (b"not found", "text/plain"))
                self.send_response(200 if self.path.lstrip("/") in files else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str, body: bytes, content_type: str = "image/png") -> str:
        self.files[name] = (body, content_type)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def trace_path(target: RunningTarget) -> Path:
    assert target.trace_path is not None
    return target.trace_path
