"""Peer comparison for issue 4 item 10: eyechart's load generator next to other load tools, same run.

Every tool drives the same workload against the same reference target in one invocation: a text-only
streamed chat, max_tokens 256 with ``ignore_eos`` (the answer runs to max_tokens where the target
honours it), N concurrent streams (closed loop) for a fixed time. The target (``eyechart serve
--latency zero``) is pinned to core 1 and every tool to core 0 (``taskset``), one tool at a time.

What is measured, and where:

* chunks/s and requests/s come from the TARGET, not from the tools: its ``--trace`` (one JSON line per
  request, CLOCK_MONOTONIC) gives, for the requests received while a tool ran, the completion tokens
  (one token per SSE chunk on this target) and the window from the first request received to the last
  byte written. ``eyechart_completion_tokens_total`` from ``/metrics`` is read before and after as a
  cross-check. The tools' own token counts use their own tokenizers and are not comparable.
* CPU: the tool's whole process tree. ``total`` is getrusage(RUSAGE_CHILDREN) over the invocation
  (start-up, load, teardown, report); ``window`` samples /proc for the tree every 0.2 s and takes the
  difference across the trace window (interpolated), so start-up and report writing are excluded.
* TTFT error (``--ttft``): the target holds every answer back 200 ms (``--faults slow_headers=200ms``:
  the delay comes after the request is read, before any byte is written) and then writes the stream.
  Ground truth per request is ``first_token_ns - received_ns`` from the trace. Tools do not send a
  request id the trace can join on, so the comparison is of distributions: tool-reported TTFT mean and
  p99 minus the trace's mean and p99 over the same requests. At 8 streams there is no queueing, so the
  server side is ~200 ms for every request and the difference is the tool's own added latency
  (its send path, the loopback, HTTP parsing and its event-loop delay).

Tools: ``eyechart`` (``eyechart load --workload chunk-flood``), ``locust-bare`` (a plain Locust
FastHttpUser reading lines, no metrics beyond a chunk count), and, when installed in the peers venv
(see bench/peers/README.md), ``guidellm`` and ``aiperf``. A tool that is not installed is skipped
with a message. Network: 127.0.0.1 only (hub look-ups are pointed at a closed local port).

    .venv/bin/python bench/peers/run_peers.py                       # 64 streams, 20 s each
    .venv/bin/python bench/peers/run_peers.py --ttft --users 8 --seconds 10
    .venv/bin/python bench/peers/run_peers.py --tools guidellm,aiperf --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MAIN_BIN = Path(sys.executable).parent
PEERS_VENV = Path(os.environ.get("EYECHART_PEERS_VENV", "/tmp/peers-venv"))
MODEL = "peer-bench"
KEY = "peer-bench-key"
HAS_TASKSET = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Keep every hub look-up on loopback: a closed port fails fast instead of reaching the internet.
NO_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}

BARE = """
import json
from locust import FastHttpUser, task
BODY = json.dumps({"model": %(model)r, "messages": [{"role": "user", "content": "Count words."}],
                   "max_tokens": 256, "ignore_eos": True, "stream": True,
                   "stream_options": {"include_usage": True}})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer %(key)s"}
class Bare(FastHttpUser):
    @task
    def chat(self):
        n = 0
        for line in self.client.iter_lines("/chat/completions", method="POST", data=BODY, headers=HEADERS):
            if line.startswith("data:") and '"content":"' in line:
                n += 1
"""


# -- the target -------------------------------------------------------------------------------------


@dataclass
class Target:
    proc: subprocess.Popen[bytes]
    port: int
    trace: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_target(tmp: Path, ttft: bool) -> Target:
    trace, port_file = tmp / "trace.jsonl", tmp / "port"
    pin = ["taskset", "-c", "1"] if HAS_TASKSET else []
    cmd = [*pin, str(MAIN_BIN / "eyechart"), "serve", "--latency", "zero", "--port", "0",
           "--port-file", str(port_file), "--model", MODEL, "--trace", str(trace)]  # fmt: skip
    if ttft:
        cmd += ["--faults", "slow_headers=200ms"]
    proc = subprocess.Popen(cmd, env={**os.environ, "EYECHART_API_KEY": KEY})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the target exited with {proc.returncode}: {' '.join(cmd)}")
        if port_file.exists() and port_file.read_text().strip():
            t = Target(proc, int(port_file.read_text()), trace)
            try:
                urllib.request.urlopen(f"{t.base}/health", timeout=2).close()
                return t
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the target did not start within 30 s")


def stop_target(t: Target) -> None:
    t.proc.send_signal(signal.SIGINT)
    try:
        t.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        t.proc.kill()


def completion_tokens(t: Target) -> float:
    with urllib.request.urlopen(f"{t.base}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("eyechart_completion_tokens_total"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def trace_between(t: Target, t0: int, t1: int) -> list[dict[str, Any]]:
    time.sleep(0.6)  # the trace is flushed at most every 0.2 s
    out = []
    for line in t.trace.read_text().splitlines():
        r = json.loads(line)
        if r.get("type") == "request" and t0 <= r["received_ns"] <= t1:
            out.append(r)
    return out


# -- CPU of a process tree --------------------------------------------------------------------------


class TreeCpu:
    """Samples the CPU seconds of a process and its descendants (live ones, plus what they reaped)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree_cpu(self) -> float:
        stats: dict[int, tuple[int, float]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                raw = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2 :].split()
            stats[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]) / CLK_TCK)
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            p = frontier.pop()
            kids = [c for c, (pp, _) in stats.items() if pp == p and c not in tree]
            tree.update(kids)
            frontier += kids
        return sum(stats[p][1] for p in tree if p in stats)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic_ns(), self._tree_cpu()))
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, ns: int) -> float:
        s = self.samples
        if not s:
            return 0.0
        if ns <= s[0][0]:
            return s[0][1]
        for (ta, ca), (tb, cb) in itertools.pairwise(s):
            if ta <= ns <= tb:
                return ca + (cb - ca) * (ns - ta) / max(1, tb - ta)
        return s[-1][1]


# -- the tools --------------------------------------------------------------------------------------


@dataclass
class Run:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ttft: Callable[[], tuple[float, float] | None] = lambda: None  # tool-reported (mean, p99) in ms


def _json_under(d: Path, name: str) -> dict[str, Any]:
    found = sorted(d.rglob(name))
    if not found:
        raise FileNotFoundError(f"{name} not found under {d}")
    return json.loads(found[-1].read_text())


def eyechart(t: Target, users: int, secs: int, d: Path) -> Run:
    def ttft() -> tuple[float, float]:
        m = _json_under(d, "summary.json")["metrics"]["ttft"]
        return m["mean"], m["p99"]

    cmd = [str(MAIN_BIN / "eyechart"), "load", "--base-url", f"{t.base}/v1", "--model", MODEL,
           "--workload", "chunk-flood", "--users", str(users), "--duration", f"{secs}s",
           "--report-dir", str(d), "--quiet"]  # fmt: skip
    return Run(cmd, {"EYECHART_API_KEY": KEY}, ttft)


def locust_bare(t: Target, users: int, secs: int, d: Path) -> Run:
    f = d / "bare_locustfile.py"
    d.mkdir(parents=True, exist_ok=True)
    f.write_text(BARE % {"model": MODEL, "key": KEY})
    cmd = [str(MAIN_BIN / "locust"), "-f", str(f), "--headless", "--only-summary", "--host", f"{t.base}/v1",
           "-u", str(users), "-r", str(users), "-t", f"{secs}s", "--stop-timeout", "10"]  # fmt: skip
    return Run(cmd)


def guidellm(t: Target, users: int, secs: int, d: Path) -> Run:
    out = d / "guidellm.json"

    def ttft() -> tuple[float, float]:
        s = json.loads(out.read_text())["benchmarks"][0]["metrics"]["time_to_first_token_ms"]["successful"]
        return s["mean"], s["percentiles"]["p99"]

    cmd = [str(PEERS_VENV / "bin" / "guidellm"), "run",
           "--backend", f"kind=openai_http,target={t.base},model={MODEL},api_key={KEY}",
           "--profile", f"kind=concurrent,streams={users}",
           "--constraint", f"kind=max_duration,seconds={secs}",
           "--tokenizer", f"kind=huggingface_auto,model={d.parent / 'tokenizer'}",
           "--data", "kind=synthetic_text,prompt_tokens=16,output_tokens=256",
           "--output", f"kind=json,path={out}", "--disable-console-interactive"]  # fmt: skip
    return Run(cmd, {"HF_HUB_OFFLINE": "1"}, ttft)


def aiperf(t: Target, users: int, secs: int, d: Path) -> Run:
    def ttft() -> tuple[float, float]:
        m = _json_under(d, "profile_export_aiperf.json")["time_to_first_token"]
        return m["avg"], m["p99"]

    # Not HF_HUB_OFFLINE: in offline mode AIPerf looks a local path up in the hub cache and fails.
    cmd = [str(PEERS_VENV / "bin" / "aiperf"), "profile", "-m", MODEL, "--url", t.base,
           "--endpoint-type", "chat", "--streaming", "--tokenizer", str(d.parent / "tokenizer"),
           "--concurrency", str(users), "--benchmark-duration", str(secs), "--benchmark-grace-period", "5",
           "--isl", "16", "--osl", "256", "--extra-inputs", "ignore_eos:true", "--api-key", KEY,
           "--ui", "none", "--artifact-dir", str(d)]  # fmt: skip
    return Run(cmd, {}, ttft)


TOOLS: dict[str, Callable[[Target, int, int, Path], Run]] = {
    "eyechart": eyechart,
    "locust-bare": locust_bare,
    "guidellm": guidellm,
    "aiperf": aiperf,
}


def missing(name: str) -> str | None:
    if name in ("guidellm", "aiperf") and not (PEERS_VENV / "bin" / name).exists():
        return f"{name}: not installed in {PEERS_VENV} (see bench/peers/README.md); skipped"
    return None


def _pct(v: list[float], q: float) -> float:
    return sorted(v)[min(len(v) - 1, int(len(v) * q))]


def measure(name: str, t: Target, users: int, secs: int, tmp: Path) -> dict[str, Any]:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    run = TOOLS[name](t, users, secs, d)
    pin = ["taskset", "-c", "0"] if HAS_TASKSET else []
    env = {**os.environ, **NO_HUB, **run.env}
    tok0 = completion_tokens(t)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic_ns()
    with (d / "tool.log").open("w") as log:
        proc = subprocess.Popen([*pin, *run.cmd], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=d)
        cpu, target_cpu = TreeCpu(proc.pid), TreeCpu(t.proc.pid)
        try:
            rc = proc.wait(timeout=secs + 240)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        finally:
            cpu.stop()
            target_cpu.stop()
    t1 = time.monotonic_ns()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    reqs = trace_between(t, t0, t1)
    tok1 = completion_tokens(t)
    ok = [r for r in reqs if r["status"] == 200 and r["end_ns"] is not None]
    res: dict[str, Any] = {"tool": name, "exit": rc, "wall_s": (t1 - t0) / 1e9, "log": str(d / "tool.log")}
    if not ok:
        res["error"] = f"no successful request reached the target (exit {rc}); see {d / 'tool.log'}"
        return res
    w0, w1 = min(r["received_ns"] for r in ok), max(r["end_ns"] for r in ok)
    window = (w1 - w0) / 1e9
    chunks = sum(len(r["token_ns"]) for r in ok)
    cpu_total = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cpu_window = cpu.at(w1) - cpu.at(w0)
    res.update(
        requests=len(ok),
        errors=len(reqs) - len(ok),
        window_s=window,
        chunks=chunks,
        chunks_per_request=chunks / len(ok),
        chunks_per_s=chunks / window,
        requests_per_s=len(ok) / window,
        server_tokens_delta=tok1 - tok0,
        cpu_s_total=cpu_total,
        cpu_s_window=cpu_window,
        cpu_fraction_window=cpu_window / window,
        target_cpu_fraction_window=(target_cpu.at(w1) - target_cpu.at(w0)) / window,
        cpu_ms_per_1000_chunks_window=1e6 * cpu_window / chunks,
        cpu_ms_per_1000_chunks_total=1e6 * cpu_total / chunks,
        peak_rss_mb_max_child=ru1.ru_maxrss / 1024,
    )
    truth = [(r["first_token_ns"] - r["received_ns"]) / 1e6 for r in ok if r["first_token_ns"]]
    res["server_ttft_mean_ms"] = statistics.fmean(truth)
    res["server_ttft_p99_ms"] = _pct(truth, 0.99)
    try:
        got = run.ttft()
    except (OSError, KeyError, IndexError, ValueError) as e:
        got, res["ttft_note"] = None, f"tool TTFT not read: {type(e).__name__}: {e}"
    if got:
        res["tool_ttft_mean_ms"], res["tool_ttft_p99_ms"] = got
        res["ttft_err_mean_ms"] = got[0] - res["server_ttft_mean_ms"]
        res["ttft_err_p99_ms"] = got[1] - res["server_ttft_p99_ms"]
    return res


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    cols = [("tool", "tool", 0), ("exit", "exit", 0), ("chunks/s", "chunks_per_s", 0),
            ("req/s", "requests_per_s", 1), ("chunks/req", "chunks_per_request", 1),
            ("CPU%win", "cpu_fraction_window", 2), ("target CPU%", "target_cpu_fraction_window", 2),
            ("ms CPU/1k ch win", "cpu_ms_per_1000_chunks_window", 1),
            ("ms CPU/1k ch total", "cpu_ms_per_1000_chunks_total", 1), ("wall s", "wall_s", 1),
            ("TTFT tool mean/p99", None, 2), ("TTFT trace mean/p99", None, 2),
            ("TTFT err mean/p99", None, 2)]  # fmt: skip
    lines = []
    cells = []
    for r in rows:
        row = []
        for title, key, nd in cols:
            if key is None:
                pre = {"TTFT tool": "tool_ttft", "TTFT trace": "server_ttft", "TTFT err": "ttft_err"}
                m, p = r.get(f"{pre[title[:-9]]}_mean_ms"), r.get(f"{pre[title[:-9]]}_p99_ms")
                sign = "+" if title.startswith("TTFT err") else ""
                row.append("-" if m is None else f"{m:{sign}.2f}/{p:{sign}.2f}")
            elif key in ("cpu_fraction_window", "target_cpu_fraction_window"):
                row.append("-" if key not in r else f"{100 * r[key]:.0f}")
            else:
                row.append(_fmt(r.get(key), nd))
        cells.append(row)
    widths = [max(len(c[0]), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines.append("  ".join(c[0].rjust(w) for c, w in zip(cols, widths, strict=True)))
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=64, help="concurrent streams (default 64)")
    ap.add_argument("--seconds", type=int, default=20, help="load time per tool (default 20)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list from {','.join(TOOLS)}")
    ap.add_argument("--ttft", action="store_true", help="the target holds every answer 200 ms (TTFT error)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--keep", type=Path, help="keep tool outputs and the trace in this folder")
    args = ap.parse_args()
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        ap.error(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    pinning = "yes (tools core 0, target core 1)" if HAS_TASKSET else "no (fewer than 2 cores)"
    mode = "200 ms TTFT (slow_headers)" if args.ttft else "zero latency"
    print(f"taskset pinning: {pinning}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    load = f"{args.users} streams, {args.seconds} s, {mode}"
    print(f"workload: text-only stream, max_tokens 256 + ignore_eos, {load}")
    tmp_ctx = tempfile.TemporaryDirectory(prefix="eyechart-peers-") if args.keep is None else None
    tmp = Path(tmp_ctx.name) if tmp_ctx else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        if any(n in ("guidellm", "aiperf") and not missing(n) for n in names):
            py = PEERS_VENV / "bin" / "python"
            subprocess.run([str(py), str(HERE / "make_tokenizer.py"), str(tmp / "tokenizer")], check=True)
        target = start_target(tmp, args.ttft)
        try:
            for name in names:
                why = missing(name)
                if why:
                    print(why)
                    continue
                print(f"running {name} ...", flush=True)
                r = measure(name, target, args.users, args.seconds, tmp)
                if "error" in r:
                    print(f"  {name}: {r['error']}")
                rows.append(r)
        finally:
            stop_target(target)
        print()
        print(table([r for r in rows if "error" not in r]))
        print("\nchunks/s and req/s: target-side (--trace) over each tool's window; CPU: the tool's process")
        print("tree; TTFT err = tool-reported minus trace (first_token_ns - received_ns), distributions.")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
