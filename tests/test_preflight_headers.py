"""The preflight sends what the run will send: ``--header`` values and TLS settings reach the probe.

A gateway on 127.0.0.1 (the faulty-target proxy with one request hook) answers 401 unless a request
carries ``X-Gateway-Token``. Without the header each job stops in its preflight with one line and exit 2
naming the refusal and ``--header``; with it the run goes ahead, every request carries the header, and
the header's value (secret-looking by its name) is written nowhere in the run folder. A reproducer
(conform's for a finding, load's for a failed request) reads it from ``$X_GATEWAY_TOKEN`` and the key
from ``$EYECHART_API_KEY``: pasted into bash with both set, it gets through the gateway again. Plain
``locust -f "$(eyechart locustfile)"`` without ``--model`` asks ``/models`` through the gateway too. The
real ``eyechart`` and ``locust`` commands run in subprocesses, as a user types them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from faulty_targets.proxy import Break, Exchange, Reply, _Proxy, resolve_breaks, serve_app
from load_targets import MODEL, ChatServer

from eyechart.report.load import failed_requests
from eyechart.target.launch import RunningTarget

TOKEN = "gw-7c1e9a5d20b4"
REFUSAL = "X-Gateway-Token header required"


@contextlib.contextmanager
def gateway(upstream_base_url: str, breaks: Iterable[str] = ()) -> Iterator[tuple[str, list[str]]]:
    """A gateway in front of ``upstream_base_url``: 401 without the token, then the named contract
    ``breaks`` (faulty_targets.breaks); yields (base URL, the paths of the requests it let through)."""
    passed: list[str] = []

    async def gate(ex: Exchange) -> Reply | None:
        if ex.headers.get("x-gateway-token") != TOKEN:
            return Reply.of_json(401, {"error": {"message": REFUSAL, "type": "authentication_error"}})
        passed.append(ex.path)
        return None

    root, _, path = upstream_base_url.partition("/v1")
    gate_break = Break("gateway", "", "wants a header of its own", request=gate)
    proxy = _Proxy(root, [gate_break, *resolve_breaks(breaks)], None)
    with serve_app(proxy.app()) as base:
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

        # the reproducer of a failed request, built from what the run folder holds, goes through too
        (run,) = (tmp_path / "reports").glob("*-load")
        summary = json.loads((run / "summary.json").read_text())
        assert summary["run"]["headers"] == {"X-Gateway-Token": "$X_GATEWAY_TOKEN"}
        with gzip.open(run / "requests.jsonl.gz", "rt") as f:
            record = {**json.loads(f.readline()), "error_class": "5xx", "status": 500}
        (failed,) = failed_requests([record], summary, run)
        reproducer = failed["reproducer"]
        assert '-H "X-Gateway-Token: $X_GATEWAY_TOKEN"' in reproducer
        assert f"-H 'X-Request-Id: {record['request_id']}'" in reproducer
        assert _pasted(reproducer, run, EYECHART_API_KEY="unused", X_GATEWAY_TOKEN=TOKEN) == "200"
        assert len(upstream.seen) == 13 and upstream.seen[-1]["x-gateway-token"] == TOKEN
        _assert_written_nowhere(tmp_path / "reports", TOKEN)


def test_plain_locust_without_a_model_asks_through_the_gateway(tmp_path: Path) -> None:
    # `locust -f "$(eyechart locustfile)"` with no --model: each process asks /models itself, and must
    # send the run's headers (here from $EYECHART_HEADERS, as `eyechart load` passes --header) to do so
    py = sys.executable
    locustfile = subprocess.run(
        [py, "-m", "eyechart", "locustfile"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EYECHART_")}
    env["EYECHART_HEADERS"] = json.dumps({"X-Gateway-Token": TOKEN})
    with ChatServer() as upstream, gateway(upstream.base_url) as (url, passed):
        proc = subprocess.run(
            [py, "-m", "locust", "-f", locustfile, "--headless", "-u", "2", "-r", "2", "--host", url,
             "--workload", "text-only-baseline", "--requests", "6", "--min-requests", "3",
             "--run-time", "60s", "--report-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert passed[0] == "/v1/models" and passed.count("/v1/chat/completions") == 6
    (run,) = (tmp_path / "reports").glob("*-load")
    assert json.loads((run / "summary.json").read_text())["run"]["model"] == MODEL
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
    # the gateway also changes chunk ids, so stream.same_id fails and its finding has a reproducer
    with gateway(target.base_url, ["stream.id_changes"]) as (url, passed):
        code, out = _eyechart(*CONFORM, "--base-url", url, cwd=tmp_path, key=target.api_key)
        assert code == 2, out
        line = _one_line(out)
        assert "HTTP 401" in line and REFUSAL in line and "--header" in line
        assert passed == []

        header = f"X-Gateway-Token: {TOKEN}"
        code, out = _eyechart(
            *CONFORM, "--base-url", url, "--header", header, cwd=tmp_path, key=target.api_key
        )
        assert code == 1, out  # the one MUST finding; 401s from the gateway would fail models.list too
        (report,) = (tmp_path / "reports").glob("*-conform/conformance.json")
        checks = {c["id"]: c for c in json.loads(report.read_text())["checks"]}
        assert {i: c["status"] for i, c in checks.items()} == {
            "models.list": "pass",
            "endpoints.chat_completions": "pass",
            "stream.same_id": "fail",
        }
        assert passed[0].endswith("/models") and any(p.endswith("/chat/completions") for p in passed)
        _assert_written_nowhere(tmp_path / "reports", TOKEN)

        evidence = checks["stream.same_id"]["evidence"]
        assert evidence["exchange"]["request"]["headers"]["X-Gateway-Token"] == "$X_GATEWAY_TOKEN"
        reproducer = evidence["reproducer"]
        assert '-H "X-Gateway-Token: $X_GATEWAY_TOKEN"' in reproducer
        assert '-H "Authorization: Bearer $EYECHART_API_KEY"' in reproducer
        through = len(passed)
        assert _pasted(reproducer, tmp_path, EYECHART_API_KEY=target.api_key, X_GATEWAY_TOKEN=TOKEN) == "200"
        assert len(passed) == through + 1  # the gateway let the pasted request through
        assert _pasted(reproducer, tmp_path, EYECHART_API_KEY=target.api_key) == "401"  # the token matters


def _pasted(reproducer: str, cwd: Path, **variables: str) -> str:
    """The HTTP status curl gets when ``reproducer`` is pasted into bash in ``cwd`` with ``variables`` set
    (and no other eyechart or gateway variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EYECHART_API_KEY", "X_GATEWAY_TOKEN")}
    cmd = reproducer.replace("curl -sS", "curl -sS -o /dev/null -w %{http_code} --max-time 30", 1)
    proc = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, env={**env, **variables}, cwd=cwd, timeout=60
    )
    return proc.stdout


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
