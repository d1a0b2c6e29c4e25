"""The preflight sends what the run will send: ``--header`` values and TLS settings reach the probe.

A gateway on 127.0.0.1 (the faulty-target proxy with one request hook) answers 401 unless a request
carries ``X-Gateway-Token``. Without the header each job stops in its preflight with one line and exit 2
naming the refusal and ``--header``; with it the run goes ahead, every request carries the header, and
the header's value (secret-looking by its name) is written nowhere in the run folder. The real
``eyechart`` command runs in a subprocess, as a user types it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty_targets.proxy import Break, Exchange, Reply, _Proxy, serve_app
from load_targets import ChatServer
from starlette.applications import Starlette
from starlette.routing import Route

from eyechart.target.launch import RunningTarget

TOKEN = "gw-7c1e9a5d20b4"
REFUSAL = "X-Gateway-Token header required"


@contextlib.contextmanager
def gateway(upstream_base_url: str) -> Iterator[tuple[str, list[str]]]:
    """A gateway in front of ``upstream_base_url``: 401 without the token; yields (base URL, the paths of
    the requests it let through)."""
    passed: list[str] = []

    async def gate(ex: Exchange) -> Reply | None:
        if ex.headers.get("x-gateway-token") != TOKEN:
            return Reply.of_json(401, {"error": {"message": REFUSAL, "type": "authentication_error"}})
        passed.append(ex.path)
        return None

    root, _, path = upstream_base_url.partition("/v1")
    proxy = _Proxy(root, [Break("gateway", "", "wants a header of its own", request=gate)], None)
    app = Starlette(routes=[Route("/{path:path}", proxy.handle, methods=["GET", "POST"])])
    with serve_app(app) as base:
        yield f"{base}/v1{path}", passed


def _eyechart(*args: str, cwd: Path, key: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    for name in ("EYECHART_API_KEY", "EYECHART_BASE_URL", "EYECHART_MODEL", "EYECHART_HEADER"):
        env.pop(name, None)
    if key:
        env["EYECHART_API_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-m", "eyechart", *args, "--report-dir", str(cwd / "reports")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _one_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith("fixture server")]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def _assert_written_nowhere(folder: Path, secret: str) -> None:
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert files, f"no run folder under {folder}"
    for f in files:
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        assert secret.encode() not in data, f


LOAD = ["load", "--workload", "text-only-baseline", "--users", "2", "--requests", "12", "--min-requests", "5"]


def test_load_preflight_sends_the_header(tmp_path: Path) -> None:
    with ChatServer() as upstream, gateway(upstream.base_url) as (url, passed):
        code, out = _eyechart(*LOAD, "--base-url", url, cwd=tmp_path)
        assert code == 2, out
        line = _one_line(out)
        assert "HTTP 401" in line and REFUSAL in line and "--header" in line
        assert not (tmp_path / "reports").exists() and passed == []

        code, out = _eyechart(*LOAD, "--base-url", url, "--header", f"X-Gateway-Token: {TOKEN}", cwd=tmp_path)
        assert code == 0, out
        assert passed[0].endswith("/models")  # the preflight went through the gateway first
        assert passed.count("/v1/chat/completions") == 12  # then every request of the run
        assert len(upstream.seen) == 12 and all(h["x-gateway-token"] == TOKEN for h in upstream.seen)
        _assert_written_nowhere(tmp_path / "reports", TOKEN)


CONFORM = [
    "conform",
    "--only",
    "models.list",
    "--only",
    "endpoints.chat_completions",
    "--only",
    "stream.same_id",
]


def test_conform_takes_the_shared_interop_options(target: RunningTarget, tmp_path: Path) -> None:
    with gateway(target.base_url) as (url, passed):
        code, out = _eyechart(*CONFORM, "--base-url", url, cwd=tmp_path, key=target.api_key)
        assert code == 2, out
        line = _one_line(out)
        assert "HTTP 401" in line and REFUSAL in line and "--header" in line
        assert passed == []

        header = f"X-Gateway-Token: {TOKEN}"
        code, out = _eyechart(
            *CONFORM, "--base-url", url, "--header", header, cwd=tmp_path, key=target.api_key
        )
        assert code == 0, out  # 401s from the gateway would fail models.list: the checks sent it too
        (report,) = (tmp_path / "reports").glob("*-conform/conformance.json")
        assert json.loads(report.read_text())["counts"]["pass"] == 3
        assert passed[0].endswith("/models") and any(p.endswith("/chat/completions") for p in passed)
        _assert_written_nowhere(tmp_path / "reports", TOKEN)


@pytest.mark.parametrize("job", ["conform", "load"])
def test_an_unreadable_ca_bundle_stops_the_preflight(job: str, tmp_path: Path) -> None:
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("not a certificate\n")
    with ChatServer() as upstream:
        code, out = _eyechart(job, "--base-url", upstream.base_url, "--ca-bundle", str(bundle), cwd=tmp_path)
    assert code == 2, out
    line = _one_line(out)
    assert "--ca-bundle" in line and "corp-ca.pem" in line
    assert upstream.count == 0 and not (tmp_path / "reports").exists()


def test_conform_names_a_malformed_header(tmp_path: Path) -> None:
    code, out = _eyechart("conform", "--header", "no-colon-here", cwd=tmp_path)
    assert code == 2, out
    assert "--header" in _one_line(out) and "NAME:VALUE" in out
