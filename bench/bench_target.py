"""How much the reference target sustains on one core at ``--latency zero``, and whether its simulated
engine completes what ``eyechart.target.capacity`` computes.

The server is pinned to CPU 0 (``taskset``, when available) and this asyncio + httpx client to CPU 1,
so the figures are the target's own cost per request and per streamed chunk: what ``eyechart load``
can rely on when it uses the target to measure the harness itself.

    .venv/bin/python bench/bench_target.py [--seconds 5] [--concurrency 32]

Prints what the client achieved (requests/s, streamed chunks/s) and the server's CPU per request,
from which the one-core capacity follows: when the server's core is not busy, the client (one Python
core) was the limit and the capacity line is the figure that matters.

Then, for Llama-3.2-11B-Vision and Qwen2.5-VL-7B on one H100 (the real deployments, except
``--max-seqs``, cut to 32 so that this host can keep the batch full) and a text and an image workload,
it saturates the engine with closed-loop users and prints the completed throughput beside the computed
one, and the SLO-limited rate the planner should find. ``--speed`` is chosen per case so the engine
completes ~``--capacity-rps`` requests/s (this machine, not the engine, is the limit far above that).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from eyechart.target.capacity import (
    Slo,
    Workload,
    arrival_gaps,
    completion_rate,
    max_throughput,
    simulate,
    slo_rate,
)
from eyechart.target.deployment import deployment
from eyechart.target.launch import RunningTarget, start_target
from eyechart.target.trace import read_trace


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to tell whether the server or client saturated."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(pid: int, cpu: int) -> bool:
    if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return False
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)
    return True


async def _drive(
    t: RunningTarget, body: dict[str, Any], seconds: float, concurrency: int
) -> tuple[int, int, int, float]:
    headers = {"Authorization": f"Bearer {t.api_key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = chunks = errors = 0
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as http:
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done, chunks, errors
            while time.monotonic() < stop_at:
                if body.get("stream"):
                    async with http.stream("POST", f"{t.base_url}/chat/completions", json=body) as r:
                        raw = await r.aread()
                    chunks += raw.count(b'"content"')
                else:
                    r = await http.post(f"{t.base_url}/chat/completions", json=body)
                if r.status_code == 200:
                    done += 1
                else:
                    errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - t0
    return done, chunks, errors, elapsed


CAPACITY_CASES = [
    ("llama-3.2-11b-vision", "text 200 in / 64 out", False),
    ("llama-3.2-11b-vision", "64x48 image + text / 64 out", True),
    ("qwen2.5-vl-7b", "text 200 in / 64 out", False),
    ("qwen2.5-vl-7b", "64x48 image + text / 64 out", True),
]
SLO = Slo(ttft_s=0.5, tpot_s=0.05)  # at --speed 1


def capacity_check(uri: str, seconds: float, target_rps: float, max_seqs: int) -> None:
    if hasattr(os, "sched_setaffinity"):  # unpin: targets started from here would share the client's core
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    print(f"\ncomputed capacity vs a saturated run (H100, --max-seqs {max_seqs}, closed loop, non-streamed):")
    for profile, label, with_image in CAPACITY_CASES:
        content: Any = "lighthouse " * 190 + "Describe it."
        if with_image:
            content = [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": uri}},
            ]
        body: dict[str, Any] = {"messages": [{"role": "user", "content": content}], "max_tokens": 64}
        body["ignore_eos"] = True
        with start_target(args=["--model-profile", profile, "--gpu", "h100-sxm", "--latency", "zero"]) as t:
            usage = httpx.post(
                f"{t.base_url}/chat/completions",
                json={**body, "model": t.model},
                headers={"Authorization": f"Bearer {t.api_key}"},
            ).json()["usage"]
        images = 0
        if with_image:  # the image tokens: the same request without the image counts the text alone
            text_only = {**body, "messages": [{"role": "user", "content": [content[0]]}]}
            with start_target(args=["--model-profile", profile, "--latency", "zero"]) as t:
                plain = httpx.post(
                    f"{t.base_url}/chat/completions",
                    json={**text_only, "model": t.model},
                    headers={"Authorization": f"Bearer {t.api_key}"},
                ).json()["usage"]["prompt_tokens"]
            images = usage["prompt_tokens"] - plain
        workload = Workload(usage["prompt_tokens"] - images, 64, images)
        at_one = deployment(profile, "h100-sxm", max_seqs=max_seqs)
        speed = target_rps / max_throughput(at_one, workload)
        computed = max_throughput(deployment(profile, "h100-sxm", max_seqs=max_seqs, speed=speed), workload)
        slo_rps = slo_rate(at_one, workload, SLO)
        trace = Path(tempfile.mkdtemp(prefix="eyechart-bench-")) / "trace.jsonl"
        args = ["--model-profile", profile, "--gpu", "h100-sxm", "--max-seqs", str(max_seqs)]
        args += ["--speed", f"{speed:.6g}", "--log-level", "error"]
        with start_target(args=args, trace=trace) as t:
            t0 = time.monotonic_ns()
            _, _, errors, _ = asyncio.run(_drive(t, {**body, "model": t.model}, seconds, 3 * max_seqs))
        stop_ns = t0 + seconds * 1e9  # then users stop sending and the queue drains
        ends = [
            r["end_ns"] / 1e9 for r in read_trace(trace) if t0 <= r["received_ns"] and r["end_ns"] <= stop_ns
        ]
        engine = deployment(profile, "h100-sxm", max_seqs=max_seqs, speed=speed)
        measured = completion_rate(ends, gap_s=engine.step_s(1) / 2, head=0.2, tail=0.05)
        print(
            f"  {profile:21} {label:28} {workload.prompt_tokens:4} text + {images:4} image tokens  "
            f"--speed {speed:7.4f}: computed {computed:6.1f} req/s, measured {measured:6.1f} "
            f"({measured / computed - 1:+.1%}){f'  errors {errors}' if errors else ''}"
        )
        print(
            f"  {'':21} at --speed 1: saturates at {computed / speed:6.1f} req/s; meets TTFT p95 <= "
            f"{SLO.ttft_s:g} s and TPOT p95 <= {SLO.tpot_s:g} s up to {slo_rps:6.1f} req/s (Poisson arrivals)"
        )


async def _open_loop(t: RunningTarget, body: dict[str, Any], offsets: list[float]) -> int:
    """Send one request at each offset (seconds from now), whatever the answers; the errors."""
    headers = {"Authorization": f"Bearer {t.api_key}"}
    errors = 0
    async with httpx.AsyncClient(
        timeout=60, headers=headers, limits=httpx.Limits(max_connections=None)
    ) as http:
        start = time.monotonic()

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            r = await http.post(f"{t.base_url}/chat/completions", json=body)
            errors += r.status_code != 200

        await asyncio.gather(*(one(at) for at in offsets))
    return errors


def latency_check(requests: int, target_rps: float, max_seqs: int) -> None:
    """The same Poisson arrivals, replayed against the target and simulated: their latency quantiles."""
    profile, out = "llama-3.2-11b-vision", 64
    workload = Workload(prompt_tokens=193, output_tokens=out)  # the text case above
    speed = target_rps / max_throughput(deployment(profile, "h100-sxm", max_seqs=max_seqs), workload)
    engine = deployment(profile, "h100-sxm", max_seqs=max_seqs, speed=speed)
    print(
        f"\nlatency, target vs simulation (same Poisson arrivals, {requests} requests, {profile} at --speed "
        f"{speed:.4f}, server-side times from --trace):"
    )
    for load in (0.5, 0.8, 0.95):
        rate = load * target_rps
        gaps = arrival_gaps(requests, "poisson", 1)
        offsets = list(itertools.accumulate(g / rate for g in gaps))
        sim = simulate(engine, workload, rate=rate, requests=requests, gaps=gaps)
        trace = Path(tempfile.mkdtemp(prefix="eyechart-bench-")) / "trace.jsonl"
        args = ["--model-profile", profile, "--gpu", "h100-sxm", "--max-seqs", str(max_seqs)]
        args += ["--speed", f"{speed:.6g}", "--log-level", "error"]
        with start_target(args=args, trace=trace) as t:
            body = {
                "model": t.model,
                "messages": [{"role": "user", "content": "lighthouse " * 190 + "Describe it."}],
            }
            errors = asyncio.run(_open_loop(t, {**body, "max_tokens": out, "ignore_eos": True}, offsets))
        served = [r for r in read_trace(trace) if r["status"] == 200]
        real = {
            "ttft": [(r["first_token_ns"] - r["received_ns"]) / 1e9 for r in served],
            "tpot": [(r["end_ns"] - r["first_token_ns"]) / 1e9 / (out - 1) for r in served],
            "e2e": [(r["end_ns"] - r["received_ns"]) / 1e9 for r in served],
        }
        cells = []
        for name, values in real.items():
            values.sort()
            for q in (0.5, 0.95):
                got = values[min(len(values) - 1, int(q * len(values)))] * 1e3
                want = sim.quantile(name, q) * 1e3
                cells.append(f"{name} p{int(q * 100)} {got:6.1f}/{want:6.1f}")
        print(
            f"  {load:4.0%} of capacity ({rate:5.1f} req/s) measured/simulated ms: "
            + "  ".join(cells)
            + (f"  errors {errors}" if errors else "")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--capacity-seconds", type=float, default=12.0, help="length of each saturated run")
    ap.add_argument("--capacity-rps", type=float, default=40.0, help="the completion rate to scale to")
    ap.add_argument("--max-seqs", type=int, default=32)
    ap.add_argument("--latency-requests", type=int, default=400, help="requests per open-loop latency run")
    args = ap.parse_args()
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(png, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    with start_target(args=["--latency", "zero"]) as t:
        pinned = _pin(t.pid, 0) and _pin(os.getpid(), 1)
        print(f"target pid {t.pid}; pinned server to CPU 0 and client to CPU 1: {pinned}")
        text = [{"role": "user", "content": "Say something about eye charts."}]
        image = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": uri}},
                ],
            }
        ]
        cases = [
            ("non-streamed, text", {"model": t.model, "messages": text, "max_tokens": 16}),
            ("streamed, text", {"model": t.model, "messages": text, "stream": True}),
            ("non-streamed, 64x48 PNG", {"model": t.model, "messages": image, "max_tokens": 16}),
        ]
        asyncio.run(_drive(t, cases[0][1], 0.5, 4))  # warm up
        for name, body in cases:
            cpu0 = _cpu_seconds(t.pid)
            done, chunks, errors, elapsed = asyncio.run(_drive(t, body, args.seconds, args.concurrency))
            busy = (_cpu_seconds(t.pid) - cpu0) / elapsed
            line = f"{name:26} {done / elapsed:8.0f} requests/s"
            if chunks:
                line += f"  {chunks / elapsed:9.0f} chunks/s ({chunks / max(done, 1):.0f} chunks/request)"
            per_request = busy / max(done / elapsed, 1e-9)
            line += f"  server CPU {busy:.0%} of a core, {per_request * 1e6:.0f} us/request"
            line += f" -> one core sustains ~{1 / per_request:.0f} requests/s"
            print(line + (f"  errors {errors}" if errors else ""))
    capacity_check(uri, args.capacity_seconds, args.capacity_rps, args.max_seqs)
    latency_check(args.latency_requests, args.capacity_rps, args.max_seqs)


if __name__ == "__main__":
    main()
