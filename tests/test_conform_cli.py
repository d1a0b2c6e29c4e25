"""``eyechart conform`` end to end: the embedded target passes sections 1, 2, 3 and 6; legal variants
and declared profiles behind a real proxy fail nothing; usage problems exit 2 quickly and clearly.
(That each break fails the check ids it names is proven break by break in test_checks_catch_breaks.py.)"""

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


def test_only_matching_nothing_is_a_usage_error(target: RunningTarget, tmp_path: Path) -> None:
    """A pattern that selects nothing is the user's typo (exit 2, said before anything runs), not a run
    that proved nothing (4)."""
    opts = ConformOptions(
        base_url=target.base_url,
        api_key=target.api_key,
        only=["nothing.*"],
        report_dir=tmp_path,
        progress=False,
    )
    outcome = run_conformance(opts)
    assert outcome.code == 2 and "--only 'nothing.*' matches no check id" in outcome.message


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


def _run(url: str, target: RunningTarget, tmp_path: Path, only: list[str], overrides: list[str]) -> Any:
    opts = ConformOptions(
        base_url=url,
        api_key=target.api_key,
        model=target.model,
        only=only,
        overrides=overrides,
        report_dir=tmp_path,
        progress=False,
    )
    return run_conformance(opts)


def test_an_open_target_declared_open_gets_info_not_must_failures(
    target: RunningTarget, tmp_path: Path
) -> None:
    open_ = ["auth_required=false"]
    with breaking_proxy(target.base_url, ["auth.none"], api_key=target.api_key) as url:
        declared = _run(url, target, tmp_path / "declared", ["auth.*"], open_)
        undeclared = _run(url, target, tmp_path / "undeclared", ["auth.missing_key"], [])
    results = {r.id: r for r in declared.run.results}
    assert set(results) >= {"auth.missing_key", "auth.wrong_key", "auth.stream_plain_json", "auth.models_key"}
    for r in results.values():
        assert (r.severity, r.status) == ("INFO", "warn"), (r.id, r.status, r.message)
        assert r.message.startswith("the target runs without auth")
    assert int(declared.code) == 0
    (must,) = undeclared.run.results  # the same open server, auth expected: a MUST failure
    assert (must.severity, must.status) == ("MUST", "fail") and int(undeclared.code) == 1
    # a keyed server declared open still passes: the 401s are right
    with breaking_proxy(target.base_url, [], api_key=target.api_key) as url:
        keyed = _run(url, target, tmp_path / "keyed", ["auth.*"], open_)
    assert {r.status for r in keyed.run.results} == {"pass"}


def test_no_byte_limit_skips_size_refuse_and_every_profile_probes_bombs_and_schemes(
    target: RunningTarget, tmp_path: Path
) -> None:
    only = ["limits.size_refuse", "security.decompression_bomb", "security.scheme.*", "security.slow_drip"]
    settings = ["size_refuse_bytes=0", "security_probes=false"]
    with breaking_proxy(target.base_url, ["images.bomb_500"], api_key=target.api_key) as url:
        outcome = _run(url, target, tmp_path, only, settings)
    results = {r.id: r for r in outcome.run.results}
    assert results["limits.size_refuse"].status == "skip"
    assert "no image byte limit" in results["limits.size_refuse"].message
    assert results["security.slow_drip"].status == "skip"  # fetch policy: off with the probes
    # "4xx, never 5xx" is not fetch policy: the bomb's 500 is found with the probes off
    assert results["security.decompression_bomb"].status == "fail"
    assert {results[f"security.scheme.{s}"].status for s in ("file", "ftp", "gopher")} == {"pass"}


def test_shared_exchanges_are_listed_in_the_evidence_of_every_check_judging_them(
    target: RunningTarget, tmp_path: Path
) -> None:
    only = ["errors.client_mistake.*", "errors.code_string"]
    with breaking_proxy(target.base_url, ["errors.integer_code"], api_key=target.api_key) as url:
        outcome = _run(url, target, tmp_path, only, [])
    result = {r.id: r for r in outcome.run.results}["errors.code_string"]
    assert result.status == "warn"
    listed = result.evidence["exchanges"]
    assert listed and listed[0].get("shared") and listed[0]["url"].endswith("/chat/completions")


def test_a_url_image_reproducer_says_how_to_serve_the_fixtures_again(
    target: RunningTarget, tmp_path: Path
) -> None:
    with breaking_proxy(target.base_url, ["images.url_unsupported"], api_key=target.api_key) as url:
        outcome = _run(url, target, tmp_path, ["images.transport.url"], [])
    (result,) = outcome.run.results
    assert result.status == "fail"
    repro = str(result.evidence["reproducer"])
    first, second, rest = repro.split("\n", 2)
    assert first.startswith("# image URLs point at this run's fixture server http://127.0.0.1:")
    command = second.removeprefix("# serve the same images there first: ")
    assert command.startswith("eyechart fixtures serve --bind 127.0.0.1 --port ")
    # follow the note: serve the fixtures, paste the command against the target itself (no break): 200
    port = int(command.rsplit(" ", 1)[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "eyechart", *command.split()[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        pasted = rest.replace(url, target.base_url).replace(
            "curl -sS", "curl -sS -o /dev/null -w %{http_code} --max-time 30", 1
        )
        proc = subprocess.run(
            ["bash", "-c", pasted],
            capture_output=True,
            text=True,
            timeout=40,
            env={"PATH": os.environ["PATH"], "EYECHART_API_KEY": target.api_key},
        )
    finally:
        server.terminate()
        server.wait(10)
    assert proc.stdout.strip() == "200", proc.stdout + proc.stderr


USER_SUITE = """
from eyechart.conform.checks import check, expect
from eyechart.conform.session import Session, json_of


@check("mine.models_listed", severity="MUST", clause="my team's rule: /models lists the model under test")
def test_models_listed(api: Session) -> None:
    ids = [m.get("id") for m in json_of(api.models()).get("data", [])]
    expect(api.model in ids, "the model under test is not listed", got=ids)
"""


def test_list_shows_every_check_with_severity_and_clause(tmp_path: Path) -> None:
    suite = tmp_path / "mine"
    suite.mkdir()
    (suite / "test_mine.py").write_text(USER_SUITE)
    proc = _cli("--list", "--suite", str(suite), "--report-dir", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = [line.split() for line in proc.stdout.splitlines()]
    rows = {c[0]: c[1] for c in cells if len(c) > 1 and c[1] in ("MUST", "SHOULD", "INFO")}
    assert rows["mine.models_listed"] == "MUST"
    assert rows["auth.wrong_key"] in ("MUST", "SHOULD", "INFO") and len(rows) > 60
    assert "my team" in proc.stdout
    assert not (tmp_path / "out").exists()  # listing sends nothing and writes nothing


def test_suite_runs_a_users_checks_beside_the_bundled_ones(target: RunningTarget, tmp_path: Path) -> None:
    suite = tmp_path / "mine"
    suite.mkdir()
    (suite / "test_mine.py").write_text(USER_SUITE)
    (suite / "test_endpoints.py").write_text("")  # same file name as a bundled module: still imported apart
    opts = ConformOptions(
        base_url=target.base_url,
        api_key=target.api_key,
        only=["mine.*", "models.list"],
        report_dir=tmp_path / "out",
        extra_suites=[suite],
        progress=False,
    )
    outcome = run_conformance(opts)
    assert outcome.run is not None, outcome.message
    assert {r.id: r.status for r in outcome.run.results} == {
        "mine.models_listed": "pass",
        "models.list": "pass",
    }
    assert int(outcome.code) == 0
