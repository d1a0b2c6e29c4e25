"""`eyechart plan` as a user runs it: exit codes, plan.json, the terminal text and the index.html section."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from plan_curves import mm1_point, mm1_sweep

from eyechart.plan import command
from eyechart.report.plan import END, START, make_console, print_plan
from eyechart.target.launch import RunningTarget

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "src/eyechart/report/schemas/plan.schema.json").read_text("utf-8")
)
RATES = [1, 2, 4, 6, 7, 8, 9, 10, 12]
PAGE = (
    "<!doctype html><html><head><title>load</title></head><body><h1>eyechart load report</h1>\n</body></html>"
)


def plan_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="eyechart plan")
    command.configure(parser)
    return command.run(parser.parse_args(list(argv)))


def make_run(tmp_path: Path, summary: dict, page: str | None = PAGE) -> Path:
    run = tmp_path / "20260101-000000-load"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary), "utf-8")
    if page is not None:
        (run / "index.html").write_text(page, "utf-8")
    return run


def test_plan_writes_plan_json_prints_the_plan_and_adds_it_to_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path, mm1_sweep(RATES))
    code = plan_cli(str(run), "--slo", "ttft_p95<=1s,error_rate<=1%", "--target-rps", "50",
                    "--headroom", "25%", "--gpu-hour-cost", "2.5", "--gpus-per-replica", "2")  # fmt: skip
    assert code == 0
    plan = json.loads((run / "plan.json").read_text("utf-8"))
    jsonschema.validate(plan, SCHEMA)
    assert plan["limiting_slo"] == "ttft_p95<=1s" and plan["headroom"] == 0.25
    assert plan["replicas"] == math.ceil(50 / (plan["max_goodput_rps"] * 0.75))
    assert plan["gpus_per_replica"] == 2 and plan["cost_per_1k_requests"] > 0
    out = capsys.readouterr().out
    assert "limited by ttft_p95<=1s" in out
    for words in ("max throughput", "limiting SLO", "replicas", "per 1k requests", "past saturation"):
        assert words in out
    assert "\x1b[" not in out  # off a terminal: plain text
    page = (run / "index.html").read_text("utf-8")
    assert page.count(START) == 1 and page.count(END) == 1
    assert page.index("<h1>eyechart load report</h1>") < page.index(START) < page.index("</body>")
    assert "<svg" in page and "Capacity plan" in page


def test_replanning_replaces_the_section(tmp_path: Path) -> None:
    run = make_run(tmp_path, mm1_sweep(RATES))
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 0
    first = (run / "index.html").read_text("utf-8")
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 0
    assert (run / "index.html").read_text("utf-8") == first  # idempotent
    assert plan_cli(str(run), "--slo", "ttft_p95<=3s") == 0
    page = (run / "index.html").read_text("utf-8")
    assert page.count(START) == 1 and page.count(END) == 1
    assert "ttft_p95&lt;=3s" in page and "ttft_p95&lt;=1s" not in page
    assert page.startswith(PAGE.split("\n")[0])
    assert json.loads((run / "plan.json").read_text("utf-8"))["slo"] == ["ttft_p95<=3s"]


def test_a_run_without_index_html_gets_one(tmp_path: Path) -> None:
    run = make_run(tmp_path, mm1_sweep(RATES), page=None)
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 0
    page = (run / "index.html").read_text("utf-8")
    assert page.count(START) == 1 and page.rstrip().endswith("</html>")


def test_html_escapes_what_the_server_and_user_wrote(tmp_path: Path) -> None:
    summary = mm1_sweep(RATES)
    summary["run"]["model"] = "<script>alert(1)</script>"
    summary["run"]["workload"] = "x' onload='alert(2)"
    run = make_run(tmp_path, summary)
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 0
    page = (run / "index.html").read_text("utf-8")
    section = page[page.index(START) : page.index(END)]
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "onload='alert" not in section and "x&#x27; onload=&#x27;alert(2)" in section
    assert "ttft_p95&lt;=1s" in section and "ttft_p95<=1s" not in section


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda d: None, "no summary.json"),
        (lambda d: (d / "summary.json").write_text('{"schema": "eyechart/conformance/1"}'), "not a load run"),
        (lambda d: (d / "summary.json").write_text("{not json"), "not readable JSON"),
    ],
)
def test_a_folder_that_is_not_a_load_run_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, words: str
) -> None:
    setup(tmp_path)
    assert plan_cli(str(tmp_path), "--slo", "ttft_p95<=1s") == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "plan.json").exists()


def test_missing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_cli(str(tmp_path / "nope"), "--slo", "ttft_p95<=1s") == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--slo", "ttft_p95<=2 parsecs"], "unit"),
        (["--slo", "latency_p95<=2s"], "unknown metric"),
        (["--slo", "ttft_p95<=1s", "--headroom", "100%"], "--headroom"),
        (["--slo", "ttft_p95<=1s", "--target-rps", "0"], "--target-rps"),
        (["--slo", "ttft_p95<=1s", "--gpus-per-replica", "0"], "--gpus-per-replica"),
        (["--slo", "ttft_p95<=1s", "--gpu-hour-cost", "-1"], "--gpu-hour-cost"),
    ],
)
def test_bad_options_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    run = make_run(tmp_path, mm1_sweep(RATES))
    assert plan_cli(str(run), *args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (run / "plan.json").exists()


def test_single_point_run_plans_what_it_can(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    point = mm1_point(4)
    summary = {
        "schema": "eyechart/load-summary/1",
        "run": {"rate": 4, "model": "m"},
        **{k: v for k, v in point.items() if k not in ("offered_rps", "users", "valid", "saturated")},
        "gates": [],
        "verdict": {"exit_code": 0, "passed": True},
    }
    run = make_run(tmp_path, summary)
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 0
    assert "one point: every SLO holds at 4 req/s" in capsys.readouterr().out
    assert plan_cli(str(run), "--slo", "ttft_p95<=500ms") == 0
    assert "at most 4 req/s" in capsys.readouterr().out.replace("\n", " ")


def test_a_run_without_valid_points_exits_4(tmp_path: Path) -> None:
    summary = mm1_sweep([1, 2])
    for p in summary["sweep"]["points"]:
        p["valid"] = False
    run = make_run(tmp_path, summary)
    assert plan_cli(str(run), "--slo", "ttft_p95<=1s") == 4
    assert json.loads((run / "plan.json").read_text("utf-8"))["points_valid"] == 0


def test_no_color_means_no_colour_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    from eyechart.load.gates import parse_slo
    from eyechart.plan.capacity import make_plan

    plan = make_plan(mm1_sweep(RATES), parse_slo("ttft_p95<=1s"))
    colour = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;|9[0-7])[0-9;]*m")
    buf = io.StringIO()
    print_plan(plan, make_console(file=buf, force_terminal=True, width=120))
    assert colour.search(buf.getvalue())  # the check can see colour when there is some
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    print_plan(plan, make_console(file=buf, force_terminal=True, width=120))
    assert not colour.search(buf.getvalue())
    assert "limited by ttft_p95<=1s" in buf.getvalue()


def test_plans_a_real_load_run(
    target: RunningTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real single-point `eyechart load` run (Locust against the embedded target) is plannable as is."""
    env = {**os.environ, "NO_COLOR": "1", "EYECHART_API_KEY": target.api_key}
    cmd = [sys.executable, "-m", "eyechart", "load", "--quiet", "--report-dir", str(tmp_path),
           "--base-url", target.base_url, "--workload", "text-only-baseline", "--rate", "4",
           "--duration", "4s", "--min-requests", "5", "--max-loop-lag-ms", "50"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)
    (run,) = tmp_path.glob("*-load")
    assert (run / "summary.json").exists(), r.stdout + r.stderr
    summary = json.loads((run / "summary.json").read_text("utf-8"))
    assert plan_cli(str(run), "--slo", "e2e_p95<=60s,error_rate<=5%", "--target-rps", "10") == 0
    plan = json.loads((run / "plan.json").read_text("utf-8"))
    jsonschema.validate(plan, SCHEMA)
    assert plan["mode"] == "single" and plan["points_valid"] == 1
    rate = summary["throughput"]["requests_per_s"]
    assert plan["max_goodput_rps"] == pytest.approx(rate, rel=1e-5) and plan["max_goodput_is_lower_bound"]
    assert plan["points"][0]["offered_rps"] == 4
    assert "one point: every SLO holds" in capsys.readouterr().out
    page = (run / "index.html").read_text("utf-8")
    assert page.count(START) == 1 and page.index(START) < page.rindex("</body>")
    assert "eyechart load report" in page  # the load report is still there around the plan
