"""Progress a person can trust: printed while a run goes (also in a CI log, where stdout is a pipe),
failures as they happen, lines never cut at 80 columns, and the load clock labelled by phase."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from faulty_targets import breaking_proxy
from rich.console import Console

from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.load.arrivals import LoadModel
from eyechart.load.runner import RunPlan, phase_of, progress_line
from eyechart.target.launch import RunningTarget


def _stream(args: list[str], cwd: Path) -> list[tuple[float, str]]:
    """Run ``eyechart ARGS`` with stdout and stderr on one pipe; each line with the time it arrived."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}
    for name in ("EYECHART_API_KEY", "EYECHART_BASE_URL", "EYECHART_MODEL"):
        env.pop(name, None)
    with subprocess.Popen(
        [sys.executable, "-m", "eyechart", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    ) as proc:
        assert proc.stdout is not None
        t0 = time.monotonic()
        lines = [(time.monotonic() - t0, line.rstrip("\n")) for line in proc.stdout]
        assert proc.wait(timeout=300) in (0, 1, 4), lines
    return lines


def test_conform_in_a_pipe_prints_progress_while_checks_run(tmp_path: Path) -> None:
    # the security checks run ~11 s: two plain progress lines (one every 5 s) before the summary
    only = ["--only", "security.*", "--skip", "security.lying_length.longer"]  # 5 s of waiting less
    lines = _stream(["conform", *only, "--report-dir", str(tmp_path)], tmp_path)
    end = next(t for t, line in lines if line.startswith("eyechart conform:"))
    progress = [
        (t, line) for t, line in lines if re.match(r"conform \d+/\d+ checks · \d+ s elapsed · ETA", line)
    ]
    assert progress, [line for _, line in lines]
    assert progress[0][0] < end - 1, "the first progress line came only at the end"
    done = [int(re.match(r"conform (\d+)/", line).group(1)) for _, line in progress]  # type: ignore[union-attr]
    assert done == sorted(done) and done[-1] > 0, "progress must move"
    assert any("area security" in line for _, line in progress)
    # off a terminal nothing is cut at 80 columns: the skip reason stays one long line
    skipped = [line for _, line in lines if "MUST checks skipped:" in line]
    assert skipped and len(skipped[0]) > 80 and not skipped[0].endswith("…")


def test_conform_failures_are_printed_as_they_happen(target: RunningTarget, tmp_path: Path) -> None:
    out = io.StringIO()
    with breaking_proxy(target.base_url, ["auth.none"], api_key=target.api_key) as url:
        opts = ConformOptions(
            base_url=url, api_key=target.api_key, model=target.model, only=["auth.*"], report_dir=tmp_path
        )
        outcome = run_conformance(opts, Console(file=out, width=80))
    assert int(outcome.code) == 1
    text = out.getvalue()
    assert re.search(r"conform: \d+ checks to run", text)
    line = next(x for x in text.splitlines() if "auth.wrong_key" in x)
    assert line.lstrip().startswith("FAIL") and "MUST" in line
    assert "a chat request with a wrong key" in line  # the finding's message, on the same line
    assert target.api_key not in text


def test_load_in_a_pipe_prints_phase_clock_and_labelled_figures(tmp_path: Path) -> None:
    lines = _stream(
        ["load", "--duration", "8s", "--users", "2", "--min-requests", "1", "--target-arg=--speed=4",
         "--report-dir", str(tmp_path)],
        tmp_path,
    )  # fmt: skip
    text = [line for _, line in lines]
    end = next(t for t, line in lines if line.startswith("target "))
    live = [
        (t, line)
        for t, line in lines
        if re.match(r"\[(measure|warmup|drain|cooldown) \d+s/8s\] total: ", line)
    ]
    assert live and live[0][0] < end - 1, text
    assert all("last 10 s:" in line for _, line in live)  # Locust's window is said to be a window
    header = "\n".join(text)
    assert "workload  captioning-mixed" in header and "load      closed loop, 2 users" in header
    assert re.search(r"target    http://127\.0\.0\.1:\d+/v1/openai", header)
    assert "ttft_sched" not in header  # closed loop: TTFT_sched is TTFT, so it is not repeated


def _plan(**kw: object) -> RunPlan:
    base = dict(base_url=None, api_key=None, model=None, workload="captioning-mixed", load=LoadModel(users=2),
                duration_s=20.0, requests=None, warmup_s=5.0, cooldown_s=5.0)  # fmt: skip
    return RunPlan(**{**base, **kw})  # type: ignore[arg-type]


def test_the_phase_follows_the_plan() -> None:
    plan = _plan()
    running = {"state": "running", "requests": 3}
    assert phase_of(plan, None, None) == "starting"
    assert phase_of(plan, 2.0, running) == "warmup"
    assert phase_of(plan, 10.0, running) == "measure"
    assert phase_of(plan, 27.0, running) == "cooldown"
    assert phase_of(plan, 31.0, running) == "drain"
    assert phase_of(plan, 31.0, {"state": "stopped"}) == "reporting"
    assert (
        phase_of(_plan(requests=10, duration_s=None, warmup_s=0.0), 3.0, {"state": "running", "requests": 10})
        == "drain"
    )
    line = progress_line(
        plan, 12.4, {"requests": 40, "errors": 2, "rps": 3.5, "ttft_p50_ms": 100, "ttft_p95_ms": 300}
    )
    assert line.startswith("[measure 12s/30s] total: 40 requests, 2 failed · last 10 s: 3.5 req/s")
