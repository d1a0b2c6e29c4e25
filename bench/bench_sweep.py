"""Bench of sweeps, planning and load across processes (issue 9 item 6). Prints figures; asserts nothing.

(a) streamed chunks/s with 1 and 2 worker processes on this machine: ``eyechart load --processes N`` and
    ``--expect-workers 2`` with two ``eyechart load --worker`` processes, chunk-flood workload (256
    one-word chunks per answer) against ``eyechart serve --latency zero``.
(b) planner accuracy against the computed truth: ``eyechart load --sweep rate=auto`` and ``eyechart
    plan`` for two GPU profiles x two text-only workloads on the embedded engine (``--speed 2
    --max-seqs 4``, so this CPU is never the bottleneck), SLO e2e_<--stat> at 1.6x its low-load value;
    ``max_goodput_rps`` against ``eyechart.target.capacity.slo_rate`` over 2000 arrivals ("truth") and
    over the arrivals of one point ("matched": a short point starts empty and queues less).
(c) a default ``eyechart load --sweep rate=auto`` against the embedded target (its wall time), then
    ``eyechart plan`` for four SLOs against the truth computed for the request mix the target served.

    PYTHONPATH=src .venv/bin/python bench/bench_sweep.py [--skip a,b,c] [--point 8s] [--stat p95]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eyechart.target.capacity import Slo, Workload, max_throughput, simulate, slo_rate, workloads_of_trace
from eyechart.target.deployment import deployment
from eyechart.target.launch import start_target
from eyechart.target.tokens import split_tokens
from eyechart.target.trace import read_trace

PY = sys.executable
KEY = "sk-bench-sweep"
ENV = {**os.environ, "NO_COLOR": "1", "EYECHART_API_KEY": KEY}
WORKLOADS = {
    "short": ("Say something about eye charts.", 32),
    "long": (
        "Read the following note and answer in one paragraph: the optician tested both eyes with the "
        "chart at six metres, then again with lenses, and wrote down what changed between the two tests.",
        96,
    ),
}
PROFILES = ("llama-3.2-11b-vision", "qwen2.5-vl-7b")


def _run(args: list[str], timeout: float = 3600) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [PY, "-m", "eyechart", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def _only_run(report_dir: Path) -> Path:
    return sorted(report_dir.glob("*-load"))[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chunks(tmp: Path, seconds: int) -> None:
    print(f"(a) streamed chunks/s, chunk-flood, 32 users, {seconds} s, target --latency zero")
    with start_target(api_key=KEY, args=["--latency", "zero"]) as t:
        base = ["load", "--quiet", "--base-url", t.base_url, "--workload", "chunk-flood", "--users", "32",
                "--duration", f"{seconds}s", "--max-loop-lag-ms", "1000", "--max-cpu", "2"]  # fmt: skip
        for label, extra in (("1 process", []), ("2 processes (--processes 2)", ["--processes", "2"])):
            out = tmp / f"chunks-{len(extra)}"
            code, _text, wall = _run([*base, *extra, "--report-dir", str(out)])
            s = json.loads((_only_run(out) / "summary.json").read_text())
            tp = s["throughput"]
            print(f"  {label:<34} {tp['chunks_per_s']:>9,.0f} chunks/s  "
                  f"{tp['requests_per_s']:6.1f} req/s  exit {code}  wall {wall:.0f} s")  # fmt: skip
        port = _free_port()
        out = tmp / "chunks-hosts"
        master = subprocess.Popen(
            [PY, "-m", "eyechart", *base, "--expect-workers", "2", "--master-port", str(port),
             "--report-dir", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        workers = [
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "eyechart",
                    "load",
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                ],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        master.wait(timeout=seconds + 120)
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(timeout=30)
        s = json.loads((_only_run(out) / "summary.json").read_text())
        print(f"  {'2 workers (--expect-workers 2)':<34} {s['throughput']['chunks_per_s']:>9,.0f} chunks/s  "
              f"{s['throughput']['requests_per_s']:6.1f} req/s  exit {master.returncode}")  # fmt: skip


def accuracy(tmp: Path, point: str, stat: str) -> None:
    print(
        f"\n(b) planner vs computed truth: --sweep rate=auto, --duration {point} per point, Poisson arrivals"
    )
    print(f"  {'profile':<22}{'workload':<9}{'SLO':<18}{'truth':>7}{'plan':>7}{'error':>8}"
          f"{'matched':>8}{'error':>8}{'range':>16}{'max tp':>8}{'truth':>7}"
          f"{'points':>7}{'wall':>6}")  # fmt: skip
    for profile in PROFILES:
        for name, (prompt, answer) in WORKLOADS.items():
            engine = deployment(profile, max_seqs=4, speed=2)
            work = Workload(prompt_tokens=len(split_tokens(prompt)), output_tokens=answer)
            base = simulate(engine, work, rate=0.1 * max_throughput(engine, work), requests=200)
            q = int(stat.lstrip("p")) / 100
            threshold_ms = round(1.6 * base.quantile("e2e", q) * 1000)
            slo = f"e2e_{stat}<={threshold_ms}ms"
            limit = Slo(e2e_s=threshold_ms / 1000, quantile=q)
            truth = slo_rate(engine, work, limit)
            # the same arrivals as a point of this length (Locust's schedule draws the same seed-0 gaps):
            # a short point starts empty, so near the limit it sees less queueing than a long horizon
            per_point = max(20, round(truth * float(point.rstrip("s"))))
            matched = slo_rate(engine, work, limit, requests=per_point)
            wl = tmp / f"{name}.toml"
            wl.write_text(
                f'name = "{name}"\nstream = true\ninclude_usage = true\nimages_per_request = 0\n'
                f"max_tokens = {answer}\nextra_body = {{ ignore_eos = true }}\n"
                f'[[prompts]]\nkind = "text"\ntext = "{prompt}"\n'
            )
            out = tmp / f"acc-{profile}-{name}"
            _code, _text, wall = _run(
                ["load", "--quiet", "--sweep", "rate=auto", "--workload", str(wl), "--duration", point,
                 f"--target-arg=--model-profile={profile}", "--target-arg=--speed=2",
                 "--target-arg=--max-seqs=4",
                 "--users", "16", "--max-loop-lag-ms", "100", "--slo", slo, "--report-dir", str(out)]
            )  # fmt: skip
            run = _only_run(out)
            _run(["plan", str(run), "--slo", slo, "--target-rps", "100"])
            plan: dict[str, Any] = json.loads((run / "plan.json").read_text())
            est = plan["max_goodput_rps"] or 0.0
            low, high = plan["max_goodput_rps_low"], plan["max_goodput_rps_high"]
            npts = len(json.loads((run / "summary.json").read_text())["sweep"]["points"])
            span = f"{low:.2f}-{high:.2f}" if high else f"{low:.2f}-?"
            print(f"  {profile:<22}{name:<9}{slo:<18}{truth:7.2f}{est:7.2f}{(est - truth) / truth:+8.1%}"
                  f"{matched:8.2f}{(est - matched) / matched:+8.1%}{span:>16}"
                  f"{plan['max_throughput_rps']:8.2f}{max_throughput(engine, work):7.2f}"
                  f"{npts:7d}{wall:6.0f}")  # fmt: skip


DEFAULT_SLOS = ("ttft_p50<=1s", "e2e_p50<=4s", "ttft_p95<=2s", "e2e_p95<=10s")


def _limit(slo: str) -> Slo:
    """``ttft_p95<=2s`` as the engine's ``Slo`` (seconds at the quantile)."""
    metric, _, rest = slo.partition("_")
    stat, _, value = rest.partition("<=")
    seconds = float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
    return Slo(quantile=int(stat.lstrip("p")) / 100, **{f"{metric}_s": seconds})


def default_wall(tmp: Path) -> None:
    """The done-when of issue 9: the default sweep on the default workload, planned, against the truth
    for the request mix the target actually served (read off its --trace)."""
    print(
        "\n(c) a default `eyechart load --sweep rate=auto` (captioning-mixed, embedded target with its "
        "default engine), then `eyechart plan`; truth = capacity.slo_rate on the served request mix"
    )
    out, trace = tmp / "default", tmp / "default-trace.jsonl"
    code, _text, wall = _run(
        ["load", "--quiet", "--sweep", "rate=auto", f"--target-arg=--trace={trace}", "--report-dir", str(out)]
    )
    run = _only_run(out)
    s = json.loads((run / "summary.json").read_text())["sweep"]
    knee = s["knee"]["label"] if s["knee"] else None
    print(f"  wall {wall:.0f} s, {len(s['points'])} points + the probe, max throughput "
          f"{s['max_throughput_rps']:.2f} req/s, knee {knee}, exit {code}")  # fmt: skip
    for n in s["notes"]:
        print(f"  note: {n}")
    mix = workloads_of_trace(read_trace(trace))
    engine = deployment("llama-3.2-11b-vision")
    print(f"  served mix: {len(mix)} requests, mean {sum(w.image_tokens for w in mix) / len(mix):.0f} image "
          f"tokens, {sum(w.output_tokens for w in mix) / len(mix):.0f} answer tokens; computed max "
          f"throughput {max_throughput(engine, mix * 10):.2f} req/s")  # fmt: skip
    print(f"  {'SLO':<16}{'truth':>7}{'plan':>7}{'error':>8}{'low-high':>13}  truth inside")
    for slo in DEFAULT_SLOS:
        _run(["plan", str(run), "--slo", slo, "--target-rps", "10"])
        plan: dict[str, Any] = json.loads((run / "plan.json").read_text())
        truth = slo_rate(engine, mix, _limit(slo))
        est = plan["max_goodput_rps"] or 0.0
        low, high = plan["max_goodput_rps_low"] or 0.0, plan["max_goodput_rps_high"]
        inside = low <= truth <= (high if high is not None else float("inf"))
        span = f"{low:.2f}-{high:.2f}" if high is not None else f"{low:.2f}-?"
        print(f"  {slo:<16}{truth:7.2f}{est:7.2f}{(est - truth) / truth:+8.1%}{span:>13}  {inside}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="", help="comma list of a,b,c")
    ap.add_argument("--point", default="8s", help="(b): measured time per sweep point")
    ap.add_argument("--chunk-seconds", type=int, default=15)
    ap.add_argument(
        "--stat", default="p95", choices=["p50", "p90", "p95", "p99"], help="(b): the SLO's quantile"
    )
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)\n")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "a" not in skip:
            chunks(tmp, a.chunk_seconds)
        if "b" not in skip:
            accuracy(tmp, a.point, a.stat)
        if "c" not in skip:
            default_wall(tmp)


if __name__ == "__main__":
    main()
