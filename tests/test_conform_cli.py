"""``eyechart conform`` end to end: the embedded target passes sections 1, 2, 3 and 6; contract breaks
behind a real proxy fail the right check ids; usage problems exit 2 quickly and clearly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faulty_targets import breaking_proxy

from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.target.launch import RunningTarget

MY_SECTIONS = ["models.*", "endpoints.*", "auth.*", "request.*", "response.*", "errors.*"]


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("EYECHART_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "eyechart", "conform", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _report(report_dir: Path) -> dict[str, Any]:
    (run_dir,) = [p for p in report_dir.iterdir() if p.name.endswith("-conform")]
    return json.loads((run_dir / "conformance.json").read_text())


def test_embedded_target_passes_sections_1_2_3_6(tmp_path: Path) -> None:
    proc = _cli("--report-dir", str(tmp_path), *(a for p in MY_SECTIONS for a in ("--only", p)))
    doc = _report(tmp_path)
    failing = [
        (c["id"], c["status"], c["message"]) for c in doc["checks"] if c["status"] in ("fail", "error")
    ]
    assert proc.returncode == 0, (failing, proc.stdout[-3000:], proc.stderr[-3000:])
    assert not failing
    # the reference target keeps the SHOULDs too, OpenAI's strict-spec refusal/logprobs included
    warned = {c["id"] for c in doc["checks"] if c["status"] == "warn"}
    assert not warned
    assert doc["run"]["embedded_target"] is True
    assert doc["counts"]["pass"] >= 30
    assert "eyechart conform: PASS" in proc.stdout
    run_dir = next(tmp_path.iterdir())
    assert {p.name for p in run_dir.iterdir()} >= {"conformance.json", "junit.xml", "index.html"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_base_url_exits_2_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _cli(
        "--base-url", f"http://127.0.0.1:{_free_port()}/v1", "--report-dir", str(tmp_path), timeout=30
    )
    assert proc.returncode == 2
    assert time.monotonic() - started < 15
    assert "cannot reach target" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus-flag"],
        ["--profile", "no-such-profile"],
        ["--set", "no_such_knob=1"],
        ["--base-url", "ftp://x"],
    ],
)
def test_bad_flags_exit_2_with_a_clear_error(args: list[str], tmp_path: Path) -> None:
    proc = _cli(*args, "--report-dir", str(tmp_path), timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.strip() or proc.stderr.strip()


def test_only_matching_nothing_is_an_invalid_run(target: RunningTarget, tmp_path: Path) -> None:
    opts = ConformOptions(
        base_url=target.base_url,
        api_key=target.api_key,
        only=["nothing.*"],
        report_dir=tmp_path,
        progress=False,
    )
    assert run_conformance(opts).code == 4


# break in the proxy -> (check id that must fail, status) ; run with --only on that check
BREAK_CASES = [
    ("auth.none", "auth.wrong_key", "fail"),
    ("auth.401_as_sse", "auth.stream_plain_json", "fail"),
    ("models.malformed", "models.list", "fail"),
    ("models.model_missing", "models.lists_model", "warn"),
    ("response.json_text_plain", "response.content_type", "fail"),
    ("response.empty_id", "response.schema", "fail"),
    ("usage.total_mismatch", "response.usage_total", "fail"),
    ("usage.cost_missing", "response.estimated_cost", "fail"),
    ("usage.over_max_tokens", "response.cap_respected", "fail"),
    ("finish.stop_when_capped", "response.finish_length", "fail"),
    ("errors.detail_envelope", "errors.client_mistake.unknown_model", "fail"),
    ("errors.5xx_for_4xx", "errors.client_mistake.empty_messages", "fail"),
    ("errors.integer_code", "errors.code_string", "warn"),
    ("errors.missing_keys", "errors.envelope_fields", "warn"),
    ("errors.stack_trace", "errors.no_internals", "warn"),
]


@pytest.mark.parametrize(("brk", "check_id", "status"), BREAK_CASES, ids=[c[0] for c in BREAK_CASES])
def test_each_break_fails_its_check(
    target: RunningTarget, tmp_path: Path, brk: str, check_id: str, status: str
) -> None:
    with breaking_proxy(target.base_url, [brk], api_key=target.api_key) as url:
        opts = ConformOptions(
            base_url=url,
            api_key=target.api_key,
            model=target.model,
            only=[check_id],
            report_dir=tmp_path,
            progress=False,
        )
        outcome = run_conformance(opts)
    results = {r.id: r for r in outcome.run.results}
    assert results[check_id].status == status, results[check_id]
    assert outcome.code == (1 if status == "fail" else 0)
    if status == "fail":
        assert results[check_id].evidence.get("reproducer", "").startswith("curl")


def test_legal_variants_pass(target: RunningTarget, tmp_path: Path) -> None:
    with breaking_proxy(
        target.base_url, ["json.extra_keys", "response.canonical_model"], api_key=target.api_key
    ) as url:
        opts = ConformOptions(
            base_url=url,
            api_key=target.api_key,
            only=["response.*", "models.list"],
            report_dir=tmp_path,
            progress=False,
        )
        outcome = run_conformance(opts)
    bad = [(r.id, r.message) for r in outcome.run.results if r.status in ("fail", "error")]
    assert not bad
    assert outcome.code == 0
