"""Load across hosts on Locust's own runners: ``eyechart load --expect-workers N`` as master, workers
started separately (``eyechart load --worker`` and plain ``locust -f $(eyechart locustfile) --worker``).

Both workers run on 127.0.0.1 here, but they write their records to folders of their own and ship them
to the master over Locust's connection, exactly as on other hosts. The merged percentiles must equal,
within the histogram's stated bound, the percentiles of the union of the workers' raw records.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from eyechart.target.launch import start_target

KEY = "sk-hosts-5be1f0c27d9a4e33"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exact(values: list[float], q: float) -> float:
    """Nearest-rank quantile (the rank an HDR histogram reports)."""
    values = sorted(values)
    return values[max(0, math.ceil(q * len(values)) - 1)]


def test_master_and_two_workers_merge_exactly(tmp_path: Path) -> None:
    wl = tmp_path / "short.toml"
    wl.write_text(
        'name = "short"\nstream = true\ninclude_usage = true\nimages_per_request = 0\nmax_tokens = 16\n'
        '[[prompts]]\nkind = "text"\ntext = "Say something about lighthouses."\n'
    )
    port = _free_port()
    env = {**os.environ, "NO_COLOR": "1", "EYECHART_API_KEY": KEY}
    py = sys.executable
    locustfile = subprocess.run(
        [py, "-m", "eyechart", "locustfile"], capture_output=True, text=True, check=True
    )
    assert Path(locustfile.stdout.strip()).is_file()
    workers: list[subprocess.Popen[bytes]] = []
    with start_target(api_key=KEY, args=["--speed", "4"]) as target:
        try:
            load = ["--base-url", target.base_url, "--workload", str(wl), "--max-concurrency", "16",
                    "--rate", "12", "--duration", "4s", "--min-requests", "10",
                    "--max-loop-lag-ms", "100"]  # fmt: skip
            master = subprocess.Popen(
                [py, "-m", "eyechart", "load", "--quiet", *load, "--expect-workers", "2",
                 "--master-port", str(port), "--report-dir", str(tmp_path / "reports")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            at = ["--master-host", "127.0.0.1", "--master-port", str(port)]
            for cmd in (
                [py, "-m", "eyechart", "load", "--worker", *at],
                [py, "-m", "locust", "-f", locustfile.stdout.strip(), "--worker", *at],
            ):
                workers.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        cwd=tmp_path,
                        start_new_session=True,
                    )
                )
            out, _ = master.communicate(timeout=120)
        finally:
            for p in [*workers, master]:
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=20)
    text = out.decode(errors="replace")
    assert master.returncode == 0, text
    run = next((tmp_path / "reports").glob("*-load"))
    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    assert summary["run"]["processes"] == 2 and summary["run"]["load_model"] == "open", summary["run"]
    assert not list(run.glob("requests-part*")) and not list(
        Path(tempfile.gettempdir()).glob("eyechart-worker-*/*")
    )
    with gzip.open(run / "requests.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f if line.strip()]
    per_worker: dict[str, int] = {}
    for r in records:
        worker = r["request_id"][:24]  # a process's UUID prefix, then its counter
        per_worker[worker] = per_worker.get(worker, 0) + 1
    assert len(per_worker) == 2 and min(per_worker.values()) >= 10, per_worker  # the rate was split
    assert summary["requests"]["sent"] == sum(1 for r in records if r["stage"] == "measure")
    ok = [
        r for r in records if r["stage"] == "measure" and r["error_class"] is None and not r.get("incomplete")
    ]
    raw = {
        "ttft": [(r["t_first"] - r["t_send"]) / 1e6 for r in ok],
        "e2e": [(r["t_end"] - r["t_send"]) / 1e6 for r in ok],
    }
    for name, values in raw.items():
        m = summary["metrics"][name]
        assert m["count"] == len(values)
        for stat, q in (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
            exact = _exact(values, q)
            # the stated bound: within max(1 µs, 0.1 %) of a recorded value
            assert abs(m[stat] - exact) <= max(0.001, 0.001 * exact) + 1e-9, (name, stat, m[stat], exact)
    # the rate was split: together the workers offered about 12 req/s
    assert 0.6 * 12 * 4 <= summary["requests"]["sent"] <= 1.4 * 12 * 4, summary["requests"]
    for f in run.rglob("*"):
        if f.is_file():
            data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            assert KEY.encode() not in data, f
