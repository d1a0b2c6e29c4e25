"""``eyechart load --sweep`` end to end, and the planner on its output against the engine's computed truth.

Every sweep here is the real command (real Locust children against the embedded reference target),
scaled down: the engine runs at ``--speed 2`` with 4 sequences, so it saturates near 17 req/s, and the
workload is text-only with a pinned 32-token answer, so this machine's CPU is never what saturates.
The truth is ``eyechart.target.capacity`` run on the same deployment and workload.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eyechart.load import sweep
from eyechart.target.capacity import Slo, Workload, max_throughput, slo_rate
from eyechart.target.deployment import deployment

ENGINE = ("--target-arg=--speed=2", "--target-arg=--max-seqs=4")
PROMPT = "Say something about eye charts."  # 6 prompt tokens under the target's tokenizer
ANSWER = 32


def _workload(tmp_path: Path) -> Path:
    path = tmp_path / "fixed-text.toml"
    path.write_text(
        'name = "fixed-text"\nstream = true\ninclude_usage = true\nimages_per_request = 0\n'
        f"max_tokens = {ANSWER}\nextra_body = {{ ignore_eos = true }}\n"
        f'[[prompts]]\nkind = "text"\ntext = "{PROMPT}"\n'
    )
    return path


def _eyechart(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "eyechart", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _run_dir(report_dir: Path) -> Path:
    runs = sorted(report_dir.glob("*-load"))
    assert len(runs) == 1, runs
    return runs[0]


def test_auto_sweep_finds_the_knee_and_the_plan_matches_the_engines_truth(tmp_path: Path) -> None:
    slo = "e2e_p50<=300ms"
    r = _eyechart(
        "load", "--quiet", "--sweep", "rate=auto", "--workload", str(_workload(tmp_path)), *ENGINE,
        "--duration", "4s", "--warmup", "1s", "--users", "16", "--min-requests", "10",
        "--max-loop-lag-ms", "100",
        "--slo", slo, "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    out = r.stdout + r.stderr
    run = _run_dir(tmp_path / "reports")
    summary = json.loads((run / "summary.json").read_text())
    s = summary["sweep"]
    points = s["points"]
    engine = deployment("llama-3.2-11b-vision", max_seqs=4, speed=2)
    work = Workload(prompt_tokens=6, output_tokens=ANSWER)
    truth_max = max_throughput(engine, work)
    # the probe measured the engine's maximum throughput, and the points climb from a quarter of it
    assert s["mode"] == "rate" and s["max_throughput_rps"] == pytest.approx(truth_max, rel=0.15), out
    assert 4 <= len(points) <= len(sweep.AUTO_FRACTIONS), out
    offered = [p["offered_rps"] for p in points]
    assert offered == sorted(offered) and offered[0] < 0.3 * truth_max
    for p in points:  # each point is a whole run in its own folder, with the shape the planner reads
        assert (run / p["dir"] / "summary.json").is_file() and (run / p["dir"] / "index.html").is_file()
        assert {"achieved_rps", "goodput_rps", "error_rate", "incomplete", "valid", "saturated"} <= set(p)
        assert {"ttft", "itl", "tpot", "e2e", "schedule_lag"} <= set(p["metrics"])
    valid = [p for p in points if p["valid"]]
    assert len(valid) >= len(points) - 2, out  # a busy machine may spoil a point, not the sweep
    # the low points keep up; past the maximum, the points that fall behind are marked saturated
    assert not any(p["saturated"] for p in valid if p["offered_rps"] < 0.6 * truth_max), points
    over = [p for p in valid if p["saturated"]]
    assert over and all(p["offered_rps"] > 0.9 * truth_max for p in over), [
        (p["offered_rps"], p["achieved_rps"]) for p in points
    ]
    knee = s["knee"]
    assert knee is not None and points[knee["index"]]["label"] == knee["label"]
    assert 0.6 * truth_max <= knee["achieved_rps"] <= 1.1 * truth_max, knee
    assert all(p["offered_rps"] > knee["offered_rps"] for p in over)
    assert "knee" in s["definition"] and (run / "index.html").read_text().count("<svg") >= 3
    # the exit code judges only the points at or below the knee (past it, the SLO is breached)
    judged = points[: knee["index"] + 1]
    assert r.returncode == (4 if any(not p["valid"] for p in judged) else max(p["exit_code"] for p in judged))

    # the planner on this sweep finds the SLO-limited rate the engine computes, within 10 %
    p = _eyechart("plan", str(run), "--slo", slo, "--target-rps", "100")
    assert p.returncode == 0, p.stdout + p.stderr
    plan = json.loads((run / "plan.json").read_text())
    truth = slo_rate(engine, work, Slo(e2e_s=0.300, quantile=0.5))
    assert plan["max_goodput_rps"] == pytest.approx(truth, rel=0.10), (plan["max_goodput_rps"], truth, plan)
    assert plan["limiting_slo"] == slo and plan["replicas"] >= 100 / truth_max
    assert "capacity-plan" in (run / "index.html").read_text()


def _point(label: str, offered: float | None, achieved: float, e2e: float, *, users: int | None = None,
           code: int = 0, valid: bool = True) -> dict[str, Any]:  # fmt: skip
    metrics = {"e2e": {"p50": e2e}}
    return {"label": label, "offered_rps": offered, "users": users, "achieved_rps": achieved,
            "sent_rps": offered, "valid": valid, "exit_code": code, "metrics": metrics}  # fmt: skip


def test_knee_saturation_and_exit_code_rules() -> None:
    pts = [_point("a", 2, 2.0, 100), _point("b", 4, 4.0, 110), _point("c", 8, 7.9, 140),
           _point("d", 10, 8.2, 400, code=1), _point("e", 12, 8.1, 900, code=1)]  # fmt: skip
    sweep.judge(pts, "rate")
    assert [p["saturated"] for p in pts] == [False, False, False, True, True]
    knee = sweep.find_knee(pts)
    assert knee is not None and knee["index"] == 2 and knee["label"] == "c"
    assert sweep.exit_code(pts, knee) == 0  # the SLO breaches past the knee do not fail the sweep
    pts[1]["exit_code"] = 1
    assert sweep.exit_code(pts, knee) == 1  # a breach at or below the knee does
    pts[1]["valid"] = False
    assert sweep.exit_code(pts, sweep.find_knee(pts)) == 4
    # latency leaving the plateau ends the knee even while throughput keeps up
    calm = [_point("a", 2, 2.0, 100), _point("b", 4, 4.0, 120), _point("c", 6, 6.0, 200)]
    sweep.judge(calm, "rate")
    assert not any(p["saturated"] for p in calm) and sweep.find_knee(calm)["label"] == "b"  # type: ignore[index]
    # users sweeps: saturated once throughput stops growing with users
    users = [_point(f"u{u}", None, tp, 100, users=u) for u, tp in ((1, 4.0), (2, 7.9), (4, 12.0), (8, 12.2))]
    sweep.judge(users, "users")
    assert [p["saturated"] for p in users] == [False, False, False, True]


def test_sweep_specs_and_caps_are_checked_before_anything_runs(tmp_path: Path) -> None:
    assert sweep.parse_sweep("rate=auto") == sweep.SweepSpec("rate", None)
    assert sweep.parse_sweep("users=8,1,2").values == (1.0, 2.0, 8.0)
    for bad in ("rate=", "speed=1,2", "users=auto", "rate=1,x", "rate=0,1", "users=1.5"):
        with pytest.raises(sweep.SweepError):
            sweep.parse_sweep(bad)
    r = _eyechart("load", "--sweep", "rate=1,2", "--rate", "3", "--report-dir", str(tmp_path))
    assert r.returncode == 2 and "--sweep sets each point's load" in r.stderr
    r = _eyechart("load", "--sweep", "lots", "--report-dir", str(tmp_path))
    assert r.returncode == 2 and "rate=auto" in r.stderr
    assert not list(tmp_path.glob("*-load"))


def test_listed_rates_obey_max_rate_and_max_requests(tmp_path: Path) -> None:
    r = _eyechart(
        "load", "--quiet", "--sweep", "rate=4,8,12,16,50", "--max-rate", "20", "--max-requests", "30",
        "--workload", str(_workload(tmp_path)), "--target-arg=--speed=20", "--duration", "2s",
        "--warmup", "1s", "--min-requests", "3", "--max-loop-lag-ms", "100",
        "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    run = _run_dir(tmp_path / "reports")
    s = json.loads((run / "summary.json").read_text())["sweep"]
    offered = [p["offered_rps"] for p in s["points"]]
    assert 50 not in offered and offered == sorted(offered) and offered[0] == 4, r.stdout + r.stderr
    assert len(offered) < 4 and s["requests_sent"] <= 30, s  # the cap holds across points
    assert any("--max-rate 20" in n for n in s["notes"]) and any("--max-requests" in n for n in s["notes"])


def test_ctrl_c_ends_the_sweep_with_a_partial_report(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "eyechart", "load", "--quiet", "--sweep", "rate=4,8,16", "--duration", "20s",
           "--workload", str(_workload(tmp_path)), "--target-arg=--speed=20", "--min-requests", "3",
           "--report-dir", str(tmp_path / "reports")]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "reports").glob("*-load/points/01-*/progress.json")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    s = json.loads((_run_dir(tmp_path / "reports") / "summary.json").read_text())["sweep"]
    assert [p["offered_rps"] for p in s["points"]] == [4], out.decode(errors="replace")
    assert any("interrupted" in n for n in s["notes"])


def _record(sent_s: float, end_s: float | None, stage: str = "measure") -> dict[str, Any]:
    return {"t_send": int(sent_s * 1e9), "t_sched": None, "stage": stage, "error_class": None,
            "t_end": None if end_s is None else int(end_s * 1e9)}  # fmt: skip


def test_a_closed_loop_probe_measures_what_the_target_completes_not_what_the_users_sent() -> None:
    # 64 users send at once; the target (2 req/s) returns its first answer after 12 s, then one every
    # 0.5 s, each finished user sending again at once: a 20 s window sees 64 + 16 sends but 16 completions
    ends = [12 + 0.5 * k for k in range(60)]
    records = [_record(0.0, e) for e in ends]
    records += [_record(e, e + 32) for e in ends if e <= 20]
    rate = sweep.completion_rate(records, 20.0, closed_loop=True)
    assert rate == pytest.approx(2.0, rel=0.1)
    # the run's own figure (requests sent in the window) would have said 4 req/s: twice the truth
    assert sum(1 for r in records if r["t_send"] <= 20e9) / 20 == pytest.approx(4.0, rel=0.05)
    # an open loop's pipeline is full after a typical end-to-end latency, not at its first answer
    steady = [_record(0.5 * k, 0.5 * k + 3) for k in range(80)]
    assert sweep.completion_rate(steady, 40.0, closed_loop=False) == pytest.approx(2.0, rel=0.1)


def test_low_rate_points_measure_long_enough_to_pass_the_validity_gate() -> None:
    s = sweep.Sweep(sweep.parse_sweep("rate=auto"), duration_s=30.0, point_samples=40)
    loads = s._auto_loads(2.2)
    assert loads[0].rate == pytest.approx(0.55) and loads[0].duration_s == pytest.approx(40 / 0.55)
    assert all(p.duration_s is not None and p.duration_s * (p.rate or 0) >= 40 - 1e-9 for p in loads)
    assert loads[-1].duration_s == 30.0  # fast points keep --duration
    assert sweep.Sweep(sweep.parse_sweep("rate=1,2"), duration_s=None)._listed()[0].duration_s is None


def test_auto_runs_every_point_below_the_probed_maximum_and_trusts_a_higher_load_that_kept_up(
    tmp_path: Path,
) -> None:
    # a target that sustains 10 req/s, whose 5 req/s point falls short by chance (bursty completions)
    def completed(rate: float) -> float:
        return 3.5 if rate == 5 else min(rate, 10.0) if rate <= 10 else 7.0

    ran: list[float | None] = []

    def run_point(load: sweep.PointLoad, folder: Path, prefix: str) -> int:
        ran.append(load.rate)
        rate = load.rate or 10.0
        done = 10.0 if load.probe else completed(rate)
        folder.mkdir(parents=True)
        doc = {"requests": {"total": 100, "sent": 100}, "duration_s": 100 / rate,
               "throughput": {"requests_per_s": done}, "metrics": {"e2e": {"p50": 100.0}}}  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(doc))
        return 0

    s = sweep.Sweep(sweep.parse_sweep("rate=auto"), duration_s=None)
    s.run(tmp_path, run_point)
    offered = [p["offered_rps"] for p in s.points]
    assert s.max_throughput_rps == 10.0 and offered == [2.5, 5, 7, 8, 8.7, 9.3, 10, 11.5], s.notes
    assert any("stopped after rate-11.5" in n for n in s.notes)  # over the maximum, clearly short: stop
    saturated = [p["offered_rps"] for p in s.points if p["saturated"]]
    assert saturated == [11.5]  # 5 fell short, but 7 and more kept up at higher rates
    assert s.document()["probe_throughput_rps"] == 10.0


def test_a_points_goodput_never_exceeds_what_it_completed() -> None:
    # the run's own figures count the requests sent in the window (4/s, 3/s of them within the SLOs);
    # the target completed 2/s: goodput is that rate times the share that met the SLOs
    records = [_record(0.5 * k, 0.5 * k + 3) for k in range(80)]
    doc = {"requests": {"total": 160, "sent": 160}, "duration_s": 40.0,
           "throughput": {"requests_per_s": 4.0}, "goodput": {"requests_per_s": 3.0}}  # fmt: skip
    p = sweep.make_point(sweep.PointLoad("rate-4", rate=4.0), doc, 0, "points/01-rate-4", records)
    assert p["achieved_rps"] == pytest.approx(2.0, rel=0.05)
    assert p["goodput_rps"] == pytest.approx(0.75 * p["achieved_rps"])
