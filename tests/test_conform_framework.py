"""The conformance framework: check marks, verdicts by severity, --only/--skip, and the reports.

Each test writes a small suite of checks into a temporary folder and runs pytest on it in a
subprocess (the plugin is loaded through its entry point, exactly as for users). Checks that talk to
a server use a real HTTP server on 127.0.0.1 that answers with hostile text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from eyechart import bundled
from eyechart.conform.checks import CheckResult
from eyechart.conform.results import ConformanceRun, exit_code
from eyechart.report.conformance import junit_xml, schema_path, to_json
from eyechart.secrets import scrub

SECRET = "sk-test-very-secret-4242"
HOSTILE = "<script>alert('owned')</script><img src=x onerror=alert(1)>"

LOCAL_SUITE = """
import pytest
from eyechart.conform.checks import check, expect, fail, skip

@check("demo.pass", severity="MUST", clause="0. passes")
def test_pass():
    expect(True, "never")

@check("demo.should", severity="SHOULD", clause="0. a SHOULD finding")
def test_should():
    fail("the thing is only half right", expected="right", got="half")

@check("demo.info", severity="INFO", clause="0. an INFO finding")
def test_info():
    assert 1 == 2, "informational"

@check("demo.skipped", severity="MUST", clause="0. not applicable")
def test_skipped():
    skip("nothing to judge here")

@pytest.mark.parametrize("fmt", ["gif", "bmp"])
@check("demo.format.{fmt}", severity="MUST", clause="0. parametrized")
def test_format(fmt):
    expect(fmt in ("gif", "bmp") and not (MUST_FAIL and fmt == "bmp"), "bmp was accepted", got=fmt)

def test_not_a_check():
    pass
"""

SERVER_SUITE = """
from eyechart.conform.checks import check, expect
from eyechart.conform.session import Session

@check("demo.server_error", severity="MUST", clause="6. 4xx never 5xx")
def test_server(api: Session):
    ex = api.chat(api.text_body("hi"))
    expect(ex.status == 200, "the server said " + ex.body.decode(), exchange=ex, expected=200, got=ex.status)
"""


def _suite(tmp_path: Path, source: str, *, must_fail: bool = False) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_demo.py").write_text(f"MUST_FAIL = {must_fail}\n" + source)
    return suite


def _pytest(suite: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("EYECHART_API_KEY", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        "--rootdir",
        str(suite),
        "-rx",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=suite.parent)


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "conformance.json").read_text())


def _by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


def test_should_findings_do_not_fail_the_pytest_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _pytest(_suite(tmp_path, LOCAL_SUITE), "--eyechart-report-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo.should" in proc.stdout and "xfail" in proc.stdout.lower()  # visible, not hidden
    checks = _by_id(_report(out))
    assert set(checks) == {
        "demo.pass",
        "demo.should",
        "demo.info",
        "demo.skipped",
        "demo.format.gif",
        "demo.format.bmp",
    }
    assert checks["demo.pass"]["status"] == "pass"
    assert checks["demo.should"]["status"] == "warn"
    assert checks["demo.should"]["evidence"]["expected"] == "right"
    assert checks["demo.info"]["status"] == "warn" and checks["demo.info"]["message"] == "informational"
    assert checks["demo.skipped"]["status"] == "skip"
    assert checks["demo.skipped"]["message"] == "nothing to judge here"
    assert _report(out)["run"]["exit_code"] == 0


def test_strict_makes_should_fail_but_never_info(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _pytest(_suite(tmp_path, LOCAL_SUITE), "--eyechart-strict", "--eyechart-report-dir", str(out))
    assert proc.returncode == 1, proc.stdout
    checks = _by_id(_report(out))
    assert checks["demo.should"]["status"] == "fail"
    assert checks["demo.info"]["status"] == "warn"
    assert _report(out)["run"]["exit_code"] == 1


def test_must_failure_fails_the_run_with_evidence(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _pytest(_suite(tmp_path, LOCAL_SUITE, must_fail=True), "--eyechart-report-dir", str(out))
    assert proc.returncode == 1
    assert "[MUST] demo.format.bmp: bmp was accepted" in proc.stdout
    doc = _report(out)
    assert doc["checks"][0]["id"] == "demo.format.bmp"  # failures first
    assert doc["checks"][0]["evidence"]["got"] == "bmp"
    assert doc["counts"]["fail"] == 1 and doc["run"]["exit_code"] == 1
    junit = (out / "junit.xml").read_text()
    assert junit.count("<failure") == 1 and 'name="demo.format.bmp"' in junit


def test_only_and_skip_select_by_check_id(tmp_path: Path) -> None:
    out = tmp_path / "out"
    suite = _suite(tmp_path, LOCAL_SUITE, must_fail=True)
    proc = _pytest(
        suite,
        "--eyechart-only",
        "demo.format.*,demo.pass",
        "--eyechart-skip",
        "demo.format.bmp",
        "--eyechart-report-dir",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout
    doc = _report(out)
    assert set(_by_id(doc)) == {"demo.pass", "demo.format.gif"}
    assert doc["deselected"] == 4 and doc["run"]["only"] == ["demo.format.*", "demo.pass"]


def test_conformance_json_validates_against_its_schema(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _pytest(_suite(tmp_path, LOCAL_SUITE, must_fail=True), "--eyechart-report-dir", str(out))
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(_report(out))
    with pytest.raises(jsonschema.ValidationError):
        bad = _report(out)
        bad["checks"][0]["status"] = "passed"
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_plugin_is_inert_outside_the_suite(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    proc = _pytest(suite, "--eyechart-report-dir", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert "eyechart conformance" not in proc.stdout
    assert not (tmp_path / "out").exists()


def test_duplicate_check_ids_are_a_usage_error(tmp_path: Path) -> None:
    source = LOCAL_SUITE + '\n@check("demo.pass", severity="MUST", clause="dup")\ndef test_dup():\n    pass\n'
    proc = _pytest(_suite(tmp_path, source))
    assert proc.returncode == 4
    assert "demo.pass" in proc.stderr


class _HostileHandler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Echo", HOSTILE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /models
        self._send(
            200,
            b'{"object":"list","data":[{"id":"m","object":"model","created":0,"owned_by":"x"}]}',
            "application/json",
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        echo = self.headers.get("Authorization", "")  # a server that leaks the key back
        self._send(500, f"{HOSTILE} {echo}".encode(), "text/html")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_reports_escape_server_text_and_never_show_the_key(tmp_path: Path, hostile_server: str) -> None:
    out = tmp_path / "out"
    proc = _pytest(
        _suite(tmp_path, SERVER_SUITE),
        "--eyechart-base-url",
        hostile_server,
        "--eyechart-api-key",
        SECRET,
        "--eyechart-report-dir",
        str(out),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    for name in ("conformance.json", "junit.xml", "index.html"):
        assert SECRET not in (out / name).read_text(), name
    finding = _by_id(_report(out))["demo.server_error"]
    assert finding["status"] == "fail"
    assert finding["evidence"]["exchange"]["status"] == 500
    repro = finding["evidence"]["reproducer"]
    assert repro.startswith("curl") and "$EYECHART_API_KEY" in repro and "/chat/completions" in repro
    html = (out / "index.html").read_text()
    assert "<script>" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "http" not in html.split("<style>")[0] or "src=" not in html  # no external assets


def test_exit_code_and_scrubbing_rules() -> None:
    def run(*statuses: str, not_run: list[str] | None = None) -> ConformanceRun:
        results = [
            CheckResult(id=f"a.c{i}", severity="MUST", status=s, clause="x")  # type: ignore[arg-type]
            for i, s in enumerate(statuses)
        ]
        return ConformanceRun(
            target="t",
            model="m",
            profile="p",
            started=0,
            finished=1,
            results=results,
            not_run=not_run or [],
            secrets=[SECRET],
        )

    assert exit_code(run("pass", "warn", "skip")) == 0
    assert exit_code(run("pass", "fail", "error")) == 1
    assert exit_code(run("pass", "error")) == 4  # no verdict is not a pass
    assert exit_code(run()) == 4
    assert exit_code(run("skip")) == 4
    assert exit_code(run("pass", not_run=["a.x"])) == 4
    assert scrub({"k": [f"Bearer {SECRET}"]}, [SECRET]) == {"k": ["Bearer $EYECHART_API_KEY"]}
    r = run("fail")
    r.results[0].message = f"echoed {SECRET} \x01"
    assert SECRET not in json.dumps(to_json(r)) and SECRET not in junit_xml(r)


def test_bundled_suite_is_where_the_runner_looks() -> None:
    assert (bundled.conformance_dir() / "conftest.py").is_file()


class _HangingChatHandler(BaseHTTPRequestHandler):
    """Lists a model, then never answers a chat request (a wedged inference server)."""

    def do_GET(self) -> None:
        body = b'{"object":"list","data":[{"id":"m","object":"model","created":0,"owned_by":"x"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        time.sleep(20)

    def log_message(self, *args: object) -> None:
        pass


def test_a_hung_target_is_not_judged_and_the_run_ends_in_bounded_time(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangingChatHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "out"
        started = time.monotonic()
        proc = _pytest(
            bundled.conformance_dir(),
            "--eyechart-base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
            "--eyechart-only", "request.*", "--eyechart-skip", "request.harness_validates",
            "--eyechart-request-timeout", "1", "--eyechart-report-dir", str(out),
            timeout=120,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    doc = _report(out)
    # /models answers but no chat request does, not even the one-token probe: nothing is blamed on a
    # target that may be busy; the run says it stopped answering, stops, and names what did not run
    assert {c["status"] for c in doc["checks"]} == {"not_judged"}, proc.stdout[-2000:]
    assert doc["run"]["exit_code"] == 4 and doc["not_run"]
    assert any("stopped answering" in h for h in doc["headline"])
    assert elapsed < 60
    assert any("timeout" in (c["evidence"].get("exchange") or {}).get("error", "") for c in doc["checks"])


UNRELATED_PROJECT = {
    "pytest.ini": "[pytest]\naddopts = --strict-markers --strict-config\nfilterwarnings = error\n",
    "conftest.py": (
        "import pytest\n\n@pytest.fixture\ndef api():\n    return 'the project’s own api fixture'\n"
    ),
    "test_app.py": (
        "def test_own_fixture_wins(api):\n    assert api == 'the project’s own api fixture'\n\n"
        "def test_base_url_is_pytest_base_urls(base_url):\n    assert base_url == 'http://app.example'\n"
    ),
}


def test_an_unrelated_project_runs_beside_pytest_base_url(tmp_path: Path) -> None:
    """The plugin is loaded in every pytest run of an environment: next to pytest-base-url (a dependency
    of pytest-playwright and pytest-selenium) an unrelated project must start, keep its own fixtures and
    options, and see no eyechart collection change or report."""
    pytest.importorskip("pytest_base_url", reason="pytest-base-url is in the dev extra")
    project = tmp_path / "project"
    project.mkdir()
    for name, text in UNRELATED_PROJECT.items():
        (project / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EYECHART_")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--base-url", "http://app.example"]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout and "eyechart conformance" not in proc.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], cwd=project, capture_output=True, text=True, timeout=60
    ).stdout
    assert "--eyechart-base-url" in help_text and "--base-url" in help_text  # both plugins' options
    own = [line.split()[0] for line in help_text.splitlines() if line.strip().startswith("--eyechart")]
    assert own and all(o.startswith("--eyechart-") for o in own)


def test_options_come_from_the_environment_and_ini_too(tmp_path: Path) -> None:
    suite = _suite(tmp_path, LOCAL_SUITE, must_fail=True)
    (suite / "pytest.ini").write_text("[pytest]\neyechart_only = demo.pass\n    demo.format.*\n")
    out = tmp_path / "out"
    env = {**os.environ, "EYECHART_SKIP": "demo.format.bmp", "EYECHART_REPORT_DIR": str(out)}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "-p",
        "no:cacheprovider",
        "-c",
        str(suite / "pytest.ini"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=suite)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(_by_id(_report(out))) == {"demo.pass", "demo.format.gif"}
    # the command line beats the environment
    out2 = tmp_path / "out2"
    proc = subprocess.run(
        [*cmd, "--eyechart-skip", "demo.pass", "--eyechart-report-dir", str(out2)],
        capture_output=True, text=True, timeout=60, env=env, cwd=suite,
    )  # fmt: skip
    assert proc.returncode == 1 and set(_by_id(_report(out2))) == {"demo.format.gif", "demo.format.bmp"}
