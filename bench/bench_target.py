"""How much the reference target sustains on one core at ``--latency zero``.

The server is pinned to CPU 0 (``taskset``, when available) and this asyncio + httpx client to CPU 1,
so the figures are the target's own cost per request and per streamed chunk: what ``eyechart load``
can rely on when it uses the target to measure the harness itself.

    .venv/bin/python bench/bench_target.py [--seconds 5] [--concurrency 32]

Prints what the client achieved (requests/s, streamed chunks/s) and the server's CPU per request,
from which the one-core capacity follows: when the server's core is not busy, the client (one Python
core) was the limit and the capacity line is the figure that matters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import subprocess
import time
from typing import Any

import httpx
from PIL import Image

from eyechart.target.launch import RunningTarget, start_target


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
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


if __name__ == "__main__":
    main()
