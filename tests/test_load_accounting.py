"""Every request accounted for, and failed runs fail: ``eyechart load`` end to end on 127.0.0.1.

Real ``eyechart load`` subprocesses (real Locust) against the embedded target, its ``--trace`` as the
ground truth. Overload, stalls and drains are scaled down to seconds (``--max-seqs``, ``--faults``,
small ``--drain``); the full-size versions belong in bench/.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from load_targets import ChatServer

from eyechart.target.launch import start_target

KEY = "sk-acct-2b9e41d7c3a05f68"


def _load(args: list[str], report_dir: Path, timeout: float = 120) -> tuple[int, Path | None, str]:
    env = {**os.environ, "NO_COLOR": "1", "EYECHART_API_KEY": KEY}
    # the default validity rule: a busy shared machine is host noise (a warning), not an invalid run
    cmd = [sys.executable, "-m", "eyechart", "load", "--quiet", "--report-dir", str(report_dir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    runs = sorted(report_dir.glob("*-load"))
    return r.returncode, (runs[-1] if runs else None), r.stdout + r.stderr


def _records(run: Path) -> list[dict[str, Any]]:
    with gzip.open(run / "requests.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _trace_ids(path: Path, expected: int) -> set[str]:
    ids: set[str] = set()
    for _ in range(50):  # the target flushes its trace every 0.2 s (and on shutdown)
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        ids = {x["request_id"] for x in lines if x.get("type") == "request"}
        if len(ids) >= expected:
            break
        time.sleep(0.1)
    return ids


def _balanced(block: dict[str, Any]) -> None:
    assert block["sent"] == block["completed"] + block["failed"] + block["incomplete"], block
    assert block["offered"] >= block["sent"], block


def test_over_capacity_open_loop_records_every_request_the_trace_shows(tmp_path: Path) -> None:
    # capacity: 2 sequences at a time, ~1 s each (text-only-baseline at speed 1) = ~2 req/s; offered
    # 10 req/s for 3 s: most requests are still queued or streaming when the 2 s drain ends
    trace = tmp_path / "trace.jsonl"
    code, run, out = _load(
        ["--workload", "text-only-baseline", "--rate", "10", "--arrival", "constant", "--duration", "3s",
         "--drain", "2s", "--min-requests", "3", "--target-arg=--max-seqs=2",
         f"--target-arg=--trace={trace}"],
        tmp_path,
    )  # fmt: skip
    assert run is not None, out
    records = _records(run)
    s = _summary(run)
    req = s["requests"]
    assert s["schema"] == "eyechart/load-summary/2"
    # constant arrivals at 10/s over the window (it starts once every user is spawned)
    assert abs(req["offered"] - 10 * s["duration_s"]) <= 1 and req["offered"] >= 25, (req, s["duration_s"])
    _balanced(req)
    for block in req["by_stage"].values():
        _balanced(block)
    assert req["incomplete"] >= 5 and req["completed"] >= 2, req
    # one record per sent request, and exactly the requests the target saw
    ids = [r["request_id"] for r in records]
    assert len(ids) == len(set(ids)) == req["sent"]
    assert _trace_ids(trace, len(ids)) == set(ids)
    # incomplete requests keep when they were cut (chunks so far: see the stalled-streams test); never
    # counted as failures
    cut = [r for r in records if r["incomplete"]]
    assert len(cut) == req["incomplete"]
    assert all(r["error_class"] is None and r["t_end"] >= r["t_send"] for r in cut)
    assert s["errors"]["rate"] == 0.0
    # the censored view counts them at their stop time: a lower bound above the completed-only one
    cens = s["censored"]
    assert cens["incomplete"] == req["incomplete"] and cens["e2e"]["count"] == req["sent"]
    assert cens["e2e"]["p50"] >= s["metrics"]["e2e"]["p50"]
    assert any("incomplete" in w for w in s["warnings"]), s["warnings"]
    assert f"{req['incomplete']} incomplete" in out and "warning:" in out
    html = (run / "index.html").read_text()
    assert "<h2>Requests</h2>" in html and "Censored view" in html and "warning:" in html
    assert code == 0, out


def test_refused_key_is_found_before_the_run(tmp_path: Path) -> None:
    target = start_target(api_key=KEY, args=["--speed", "20"])
    try:
        env = {**os.environ, "NO_COLOR": "1", "EYECHART_API_KEY": "sk-wrong-0000"}
        r = subprocess.run(
            [sys.executable, "-m", "eyechart", "load", "--quiet", "--report-dir", str(tmp_path),
             "--base-url", target.base_url, "--users", "4", "--duration", "5s"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        target.stop()
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "key was refused" in out and "--api-key" in out and "EYECHART_API_KEY" in out
    assert "sk-wrong-0000" not in out
    assert not list(tmp_path.glob("*-load")), "no load was sent"


def test_every_request_failing_the_same_way_stops_early_and_exits_4(tmp_path: Path) -> None:
    # a model the target does not serve: every chat request is refused with the same 4xx, which the
    # /models probe cannot see; the run stops after the first 20 instead of sending for 60 s
    started = time.monotonic()
    code, run, out = _load(
        ["--workload", "text-only-baseline", "--users", "4", "--duration", "60s", "--drain", "5s",
         "--model", "no-such-model", "--target-arg=--speed=20"],
        tmp_path,
    )  # fmt: skip
    assert time.monotonic() - started < 45, out
    assert code == 4, out
    assert run is not None
    s = _summary(run)
    assert s["requests"]["completed"] == 0 and s["requests"]["failed"] >= 20
    samples = next(g for g in s["gates"] if g["name"] == "valid.samples")
    assert not samples["passed"] and samples["detail"].startswith("no request succeeded: ")
    assert "x 4xx, first: [" in samples["detail"]
    assert "no request succeeded" in out and "stopped early" in out


def test_ten_percent_failing_fails_the_default_error_gate(tmp_path: Path) -> None:
    code, run, out = _load(
        ["--workload", "text-only-baseline", "--users", "4", "--requests", "60", "--min-requests", "10",
         "--target-arg=--speed=20", "--target-arg=--faults=error_rate=0.1,seed=1"],
        tmp_path,
    )  # fmt: skip
    assert run is not None, out
    s = _summary(run)
    assert s["requests"]["sent"] == 60 and s["errors"]["by_class"]["5xx"] == 8, s["errors"]
    gate = next(g for g in s["gates"] if g["name"] == "error_rate")
    assert gate["threshold"] == "<= 5.00%" and not gate["passed"], gate
    assert code == 1, out
    # an explicit --slo error_rate replaces the default
    code, run, out = _load(
        ["--workload", "text-only-baseline", "--users", "4", "--requests", "60", "--min-requests", "10",
         "--slo", "error_rate<=50%", "--target-arg=--speed=20",
         "--target-arg=--faults=error_rate=0.1,seed=1"],
        tmp_path / "loose",
    )  # fmt: skip
    assert code == 0, out


def test_stalled_streams_past_the_drain_are_incomplete_and_failures_have_classes(tmp_path: Path) -> None:
    code, run, out = _load(
        ["--workload", "text-only-baseline", "--users", "8", "--duration", "3s", "--drain", "1s",
         "--min-requests", "3", "--slo", "error_rate<=100%", "--target-arg=--speed=20",
         "--target-arg=--faults=stall=30s,stall_rate=0.2,disconnect=0.2,malformed=0.2,seed=5"],
        tmp_path,
    )  # fmt: skip
    assert run is not None, out
    s = _summary(run)
    _balanced(s["requests"])
    records = _records(run)
    assert len(records) == s["requests"]["totals"]["sent"]
    stalled = [r for r in records if r["incomplete"]]
    assert stalled and all(r["content_chunks"] >= 1 for r in stalled)  # they stall before a later token
    by_class = s["errors"]["by_class"]
    assert by_class["disconnect"] >= 1 and by_class["malformed"] >= 1, by_class
    assert by_class.get("protocol") is None
    for cls in ("disconnect", "malformed"):
        assert s["errors"]["examples"][cls][0].startswith("[")  # the request id leads each example
    assert code == 0, out


def test_a_server_that_rejects_non_uuid_request_ids_is_load_tested_without_errors(tmp_path: Path) -> None:
    common = ["--workload", "text-only-baseline", "--users", "3", "--requests", "30", "--min-requests", "10"]
    with ChatServer(uuid_only=True) as server:
        code, run, out = _load(["--base-url", server.base_url, *common], tmp_path / "uuid")
        assert code == 0, out
        assert run is not None
        records = _records(run)
        assert len(records) == 30 and all(r["error_class"] is None for r in records), records[:3]
        sent = [h["x-request-id"] for h in server.seen]
        assert sorted(sent) == sorted(r["request_id"] for r in records)  # the join key is the UUID
        assert all(str(uuid.UUID(x)) == x for x in sent) and len(set(sent)) == 30
        # another header name, or none at all, for servers that want that
        server.seen.clear()
        code, run, out = _load(
            ["--base-url", server.base_url, *common, "--request-id-header", "X-Correlation-Id",
             "--header", "api-key: gateway-secret-77", "--header", "X-Route:blue"],
            tmp_path / "named",
        )  # fmt: skip
        assert code == 0, out
        assert all("x-request-id" not in h and uuid.UUID(h["x-correlation-id"]) for h in server.seen)
        assert all(h["api-key"] == "gateway-secret-77" and h["x-route"] == "blue" for h in server.seen)
        assert run is not None
        for f in run.rglob("*"):  # a header value may be a secret: never in the run folder
            data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            assert b"gateway-secret-77" not in data, f
        server.seen.clear()
        code, run, out = _load(["--base-url", server.base_url, *common, "--no-request-id"], tmp_path / "none")
        assert code == 0, out
        assert server.seen and all("x-request-id" not in h for h in server.seen)


def test_a_keep_alive_connection_closed_after_an_error_is_retried_not_blamed(tmp_path: Path) -> None:
    # every 5th request gets a 500 and the server then drops that connection as the next request goes
    # out on it: that next request is resent once on a fresh connection, recorded, and succeeds
    with ChatServer(error_every=5) as server:
        code, run, out = _load(
            ["--base-url", server.base_url, "--workload", "text-only-baseline", "--users", "2",
             "--requests", "40", "--min-requests", "10", "--slo", "error_rate<=30%"],
            tmp_path,
        )  # fmt: skip
        dropped = server.dropped
    assert run is not None, out
    records = _records(run)
    s = _summary(run)
    retried = [r for r in records if r["retried"]]
    assert dropped >= 3 and len(retried) == dropped == s["requests"]["retried"], (dropped, s["requests"])
    assert all(r["error_class"] is None for r in retried), retried
    assert s["errors"]["by_class"]["5xx"] == sum(1 for r in records if r["status"] == 500) >= 3
    assert sum(s["errors"]["by_class"].values()) == s["errors"]["by_class"]["5xx"]  # nothing else blamed
    assert code == 0, out


def test_invariants_under_load_catch_ids_and_usage_crossing_between_streams(tmp_path: Path) -> None:
    common = ["--workload", "text-only-baseline", "--users", "2", "--requests", "40", "--min-requests", "10",
              "--check-sample", "100%"]  # fmt: skip
    with ChatServer() as honest:
        code, run, out = _load(["--base-url", honest.base_url, *common], tmp_path / "honest")
    assert code == 0 and run is not None, out
    checks = _summary(run)["invariants"]
    assert checks and all(e["failed"] == 0 and not e.get("errors") for e in checks.values()), checks
    assert max(e["sampled"] for e in checks.values()) == 40  # every answer judged
    # every 4th stream carries the previous stream's id in one chunk and that stream's usage
    with ChatServer(cross_every=4) as crossing:
        code, run, out = _load(["--base-url", crossing.base_url, *common], tmp_path / "crossing")
    assert run is not None, out
    s = _summary(run)
    failed = {check: e for check, e in s["invariants"].items() if e["failed"]}
    assert failed, s["invariants"]
    assert any("id" in check for check in failed), failed  # the id crossing is named by its check
    ids = {r["request_id"] for r in _records(run)}
    for e in failed.values():
        assert e["failed"] <= e["sampled"] and e["examples"]
        assert any(rid in json.dumps(e["examples"]) for rid in ids), e["examples"]
    assert any(w.startswith("invariant ") for w in s["warnings"])
    html = (run / "index.html").read_text()
    assert "Invariants under load" in html and all(check in html for check in failed)
