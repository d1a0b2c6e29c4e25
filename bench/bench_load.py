"""Bench of the load generator itself (issue 4 item 10). Prints figures; asserts nothing.

(a) ceiling: eyechart's Locust user pinned to core 0 (taskset) against a flood server pinned to core 1
    that answers every request with 256 one-word chunks in one write (never the bottleneck), 64 users:
    chunks/s, requests/s, CPU per 1000 chunks in the load window and for the whole invocation,
    start-up + teardown time, peak RSS. The same against a bare Locust FastHttpUser (iter_lines).
(b) timing error against the server's ground truth (CLOCK_MONOTONIC, joined by X-Request-Id) at
    8, 64 and 256 concurrent streams with a 200 ms TTFT.

The flood server lives here, not in the reference target: the target's answers have their own
length, while this bench needs exactly 256 chunks and a write-time ground truth per request.

    .venv/bin/python bench/bench_load.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
HAS_TASKSET = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


# -- the flood server (run as a subprocess: python bench_load.py --serve PORT DELAY_MS TRACE) -----


def _stream_bytes(n_chunks: int) -> bytes:
    head = '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    parts = [f'data: {head}"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}\n\n']
    parts += [
        f'data: {head}"delta":{{"content":" w{i}"}},"finish_reason":null}}]}}\n\n' for i in range(n_chunks)
    ]
    parts.append(f'data: {head}"delta":{{}},"finish_reason":"stop"}}]}}\n\n')
    usage = f'{{"prompt_tokens":3,"completion_tokens":{n_chunks},"total_tokens":{n_chunks + 3}}}'
    parts.append(
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        f'"usage":{usage}}}\n\n'
    )
    parts.append("data: [DONE]\n\n")
    body = "".join(parts).encode()
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in [body]) + b"0\r\n\r\n"


def serve(port: int, delay_ms: float, trace: str) -> None:
    payload = _stream_bytes(256)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    truth: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                t_recv = time.monotonic_ns()
                length, rid = 0, ""
                for line in raw.split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    k = k.lower()
                    if k == b"content-length":
                        length = int(v)
                    elif k == b"x-request-id":
                        rid = v.strip().decode()
                if length:
                    await reader.readexactly(length)
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000)
                writer.write(head + payload)
                t_first = time.monotonic_ns()
                if trace:
                    truth.append(f"{rid} {t_recv} {t_first}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()
        if trace:
            Path(trace).write_text("\n".join(truth))

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(delay_ms: float, trace: str = "") -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    pin = ["taskset", "-c", "1"] if HAS_TASKSET else []
    proc = subprocess.Popen([*pin, sys.executable, __file__, "--serve", str(port), str(delay_ms), trace])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("flood server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


# -- runs ---------------------------------------------------------------------------------------------

BARE = """
import json, time
from locust import FastHttpUser, task, events
CHUNKS = [0]
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Count words."}],
                   "max_tokens": 256, "stream": True, "stream_options": {"include_usage": True}})
class Bare(FastHttpUser):
    @task
    def chat(self):
        for line in self.client.iter_lines("/chat/completions", method="POST", data=BODY,
                                           headers={"Content-Type": "application/json"}):
            if line.startswith("data:") and '"content":"' in line:
                CHUNKS[0] += 1
T0 = [0.0, 0.0]
@events.test_start.add_listener
def _(**kw):
    T0[0], T0[1] = time.monotonic(), time.process_time()
@events.test_stop.add_listener
def _(environment, **kw):
    wall, cpu = time.monotonic() - T0[0], time.process_time() - T0[1]
    print("BARE", json.dumps({"chunks": CHUNKS[0], "wall_s": wall, "cpu_s": cpu,
          "requests": environment.stats.total.num_requests}), flush=True)
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, resource.struct_rusage, str]:
    pin = ["taskset", "-c", "0"] if HAS_TASKSET else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run([*pin, *cmd], env=env, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = resource.struct_rusage(
        tuple(getattr(after, f) - getattr(before, f) if f.startswith("ru_utime") or f.startswith("ru_stime")
              else getattr(after, f) for f in ("ru_utime", "ru_stime", "ru_maxrss"))
        + (0,) * 13
    )  # fmt: skip
    return wall, usage, r.stdout + r.stderr


def eyechart_run(port: int, users: int, seconds: int, run_dir: Path) -> dict[str, object]:
    env = {**os.environ, "EYECHART_API_KEY": "bench"}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", f"http://127.0.0.1:{port}/v1", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
           "--workload", "chunk-flood", "--model", "m", "--run-dir", str(run_dir), "--min-requests", "1",
           "--stop-timeout", "10"]  # fmt: skip
    wall, ru, out = _run(cmd, env)
    summary = json.loads((run_dir / "summary.json").read_text())
    proc = next(iter(summary["saturation"]["processes"].values()))
    chunks = summary["throughput"]["chunks_per_s"] * summary["duration_s"]
    cpu_total = ru.ru_utime + ru.ru_stime
    return {
        "chunks_per_s": summary["throughput"]["chunks_per_s"],
        "requests_per_s": summary["throughput"]["requests_per_s"],
        "cpu_ms_per_1000_chunks_window": 1e6 * proc["cpu_s"] / chunks if chunks else None,
        "cpu_ms_per_1000_chunks_total": 1e6 * cpu_total / chunks if chunks else None,
        "cpu_total_over_window": cpu_total / proc["cpu_s"] if proc["cpu_s"] else None,
        "startup_teardown_s": wall - proc["wall_s"],
        "peak_rss_mb": ru.ru_maxrss / 1024,
        "loop_lag_p99_ms": proc["lag_p99_ms"],
        "cpu_fraction": proc["cpu_fraction"],
        "valid": summary["saturation"]["valid"],
        "exit_tail": out.strip().splitlines()[-1:] if not summary["saturation"]["valid"] else [],
    }


def bare_run(port: int, users: int, seconds: int, tmp: Path) -> dict[str, object]:
    f = tmp / "bare_locustfile.py"
    f.write_text(BARE)
    cmd = [sys.executable, "-m", "locust", "-f", str(f), "--headless", "--only-summary",
           "--host", f"http://127.0.0.1:{port}/v1", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
           "--stop-timeout", "10"]  # fmt: skip
    wall, ru, out = _run(cmd, dict(os.environ))
    line = next(x for x in out.splitlines() if x.startswith("BARE "))
    d = json.loads(line[5:])
    return {
        "chunks_per_s": d["chunks"] / d["wall_s"],
        "requests_per_s": d["requests"] / d["wall_s"],
        "cpu_ms_per_1000_chunks_window": 1e6 * d["cpu_s"] / d["chunks"] if d["chunks"] else None,
        "startup_teardown_s": wall - d["wall_s"],
        "peak_rss_mb": ru.ru_maxrss / 1024,
    }


def timing_error(users: int, seconds: int, tmp: Path) -> dict[str, float]:
    trace = tmp / f"truth-{users}.txt"
    proc, port = start_server(200.0, str(trace))
    run_dir = tmp / f"err-{users}"
    try:
        eyechart_run(port, users, seconds, run_dir)
    finally:
        stop_server(proc)
    truth = {}
    for line in trace.read_text().splitlines():
        rid, recv, first = line.split()
        truth[rid] = (int(recv), int(first))
    ttft_err, first_err = [], []
    with gzip.open(run_dir / "requests.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            s = truth.get(r["request_id"])
            if s is None or r["t_first"] is None or r["stage"] != "measure":
                continue
            ttft_err.append(((r["t_first"] - r["t_send"]) - (s[1] - s[0])) / 1e6)
            first_err.append((r["t_first"] - s[1]) / 1e6)
    ttft_err.sort()
    first_err.sort()
    p99 = lambda v: v[min(len(v) - 1, int(len(v) * 0.99))]  # noqa: E731
    return {
        "streams": users,
        "requests": len(ttft_err),
        "ttft_err_mean_ms": statistics.fmean(ttft_err),
        "ttft_err_p99_ms": p99(ttft_err),
        "first_token_delivery_mean_ms": statistics.fmean(first_err),
        "first_token_delivery_p99_ms": p99(first_err),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--error-seconds", type=int, default=8)
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]), args.serve[2])
        return
    print(f"taskset pinning: {'yes (generator core 0, server core 1)' if HAS_TASKSET else 'no'}")
    with tempfile.TemporaryDirectory(prefix="eyechart-bench-") as t:
        tmp = Path(t)
        proc, port = start_server(0.0)
        try:
            ours = eyechart_run(port, 64, args.seconds, tmp / "ceiling")
            bare = bare_run(port, 64, args.seconds, tmp)
        finally:
            stop_server(proc)
        print("\n(a) ceiling, 64 streams x 256 one-word chunks, zero latency")
        for name, d in (("eyechart VisionChatUser", ours), ("bare Locust FastHttpUser", bare)):
            print(f"  {name}:")
            for k, v in d.items():
                print(f"    {k:<32} {v:.3f}" if isinstance(v, float) else f"    {k:<32} {v}")
        print("\n(b) timing error vs ground truth, 200 ms TTFT (ms; + = client later than server)")
        for users in (8, 64, 256):
            e = timing_error(users, args.error_seconds, tmp)
            print(
                "  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items())
            )


if __name__ == "__main__":
    main()
