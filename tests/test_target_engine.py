"""The simulated engine: FIFO admission, the latency model, overload as queueing, faults spec, shutdown."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from eyechart.target.answer import shape_answer
from eyechart.target.engine import Engine, QueueFull, Scheduler, Sequence
from eyechart.target.faults import FaultInjector, FaultSpecError, parse_faults
from eyechart.target.launch import start_target
from eyechart.target.models import get_profile
from eyechart.target.trace import read_trace


def seq(name: str, kv: int = 10) -> Sequence:
    return Sequence(request_id=name, text_tokens=5, image_tokens=0, kv_reserve=kv)


def test_scheduler_admits_in_arrival_order_under_max_seqs_and_kv_capacity() -> None:
    async def scenario() -> list[str]:
        profile = get_profile("llava-1.5-7b").tuned(max_seqs=2, kv_tokens=100)
        sched = Scheduler(profile, max_waiting=3)
        a, b = sched.enqueue(seq("a")), sched.enqueue(seq("b"))
        assert sched.running == 2 and sched.waiting == 0
        waiting = [sched.enqueue(seq(n)) for n in ("c", "d", "e")]
        assert sched.waiting == 3
        with pytest.raises(QueueFull):
            sched.enqueue(seq("f"))
        order: list[str] = []

        async def wait(lease: Any) -> None:
            await lease.wait()
            order.append(lease.seq.request_id)

        tasks = [asyncio.create_task(wait(w)) for w in waiting]
        await asyncio.sleep(0)
        waiting[1].close()  # "d" gives up while queued: it never runs
        b.close()
        a.close()
        await asyncio.sleep(0.01)
        assert sched.running == 2 and sched.waiting == 0
        for w in waiting:
            w.close()
        assert sched.running == 0 and sched.kv_used == 0
        big = sched.enqueue(seq("big", kv=90))
        blocked = sched.enqueue(seq("small", kv=20))  # fits the seq count, not the KV cache
        assert sched.running == 1 and sched.waiting == 1
        big.close()
        assert sched.running == 1
        blocked.close()
        for t in tasks:
            t.cancel()
        return order

    assert asyncio.run(scenario()) == ["c", "e"]


def test_engine_times_tokens_by_the_latency_model() -> None:
    profile = get_profile("llama-3.2-11b-vision").tuned(speed=2)

    async def scenario() -> list[float]:
        engine = Engine(profile)
        s = Sequence(request_id="x", text_tokens=1200, image_tokens=1601, kv_reserve=3000)
        lease = engine.enqueue(s)
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        fut.set_result(["a", "b", "c", "d"])
        times = []
        async for _ in engine.run(lease, fut):
            times.append(time.monotonic_ns())
        assert engine.scheduler.running == 0
        assert s.admitted_ns is not None
        return [(t - s.admitted_ns) / 1e9 for t in times]

    offsets = asyncio.run(scenario())
    ttft = (1200 + 1601) / 24_000 + 1601 * 0.00002 / 2  # prefill at 2x + vision encode at 2x
    assert ttft - 0.001 <= offsets[0] < ttft + 0.05
    # Tokens keep to an absolute schedule (a late wake-up does not push back every later token):
    # token i is due at TTFT + i decode steps, 20 ms / 2 for a lone sequence.
    for i, offset in enumerate(offsets):
        due = ttft + i * 0.010
        assert due - 0.001 <= offset < due + 0.05, (i, offsets)


def test_shape_answer_applies_stop_before_cap() -> None:
    text = "The red square sits left of the blue one."
    assert shape_answer(text, ["blue"], None) == (
        ["The", " red", " square", " sits", " left", " of", " the", " "],
        "stop",
    )
    pieces, finish = shape_answer(text, ["blue"], 2)
    assert (pieces, finish) == (["The", " red"], "length")
    assert "".join(shape_answer(text, [], None)[0]) == text


def test_fault_spec_parsing_and_seeded_draws() -> None:
    cfg = parse_faults("error_rate=0.1,disconnect=0.05,stall=2s,malformed=0.02,slow_headers=250ms,seed=9")
    assert (cfg.error_rate, cfg.stall, cfg.slow_headers, cfg.seed) == (0.1, 2.0, 0.25, 9)
    draws_a = [FaultInjector(cfg).draw() for _ in range(1)] + [d for d in _draws(cfg, 200)]
    draws_b = [FaultInjector(cfg).draw() for _ in range(1)] + [d for d in _draws(cfg, 200)]
    assert draws_a == draws_b
    errors = sum(d.error for d in _draws(cfg, 2000))
    assert 120 < errors < 290  # 10% of 2000, with slack
    for bad in ("error_rate=2", "bogus=1", "stall=-1s", "disconnect", "error_status=200"):
        with pytest.raises(FaultSpecError):
            parse_faults(bad)


def _draws(cfg: Any, n: int) -> list[Any]:
    inj = FaultInjector(cfg)
    return [inj.draw() for _ in range(n)]


def test_overload_shows_as_queueing_in_ttft_and_metrics(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    with start_target(args=["--speed", "4", "--max-seqs", "2"], trace=trace) as t:
        headers = {"Authorization": f"Bearer {t.api_key}"}
        body = {"model": t.model, "messages": [{"role": "user", "content": "Say something."}], "stream": True}
        ttft: dict[str, float] = {}
        waiting_seen: list[float] = []

        def one(i: int) -> None:
            with httpx.Client(timeout=30) as http:
                t0 = time.monotonic()
                rid = f"q{i}"
                with http.stream(
                    "POST",
                    f"{t.base_url}/chat/completions",
                    json=body,
                    headers={**headers, "X-Request-Id": rid},
                ) as r:
                    for line in r.iter_lines():
                        if '"content"' in line and rid not in ttft:
                            ttft[rid] = time.monotonic() - t0

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for th in threads:
            th.start()
        with httpx.Client(timeout=5) as http:
            for _ in range(20):
                text = http.get(f"{t.root_url}/metrics").text
                m = re.search(r"^eyechart_requests_waiting\{[^}]*\} (\S+)$", text, re.M)
                assert m is not None
                waiting_seen.append(float(m.group(1)))
                running = re.search(r"^eyechart_requests_running\{[^}]*\} (\S+)$", text, re.M)
                assert running is not None and float(running.group(1)) <= 2
                time.sleep(0.02)
        for th in threads:
            th.join(30)
        assert max(waiting_seen) >= 1
        times = sorted(ttft.values())
        assert len(times) == 6
        assert times[-1] > times[0] + 0.1  # the last admitted waited for two earlier batches
    records = read_trace(trace)  # flushed on shutdown
    waits = sorted((r["admitted_ns"] - r["received_ns"]) / 1e9 for r in records)
    assert len(records) == 6 and waits[0] < 0.05 and waits[-1] > 0.1


def test_bad_flags_exit_2_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "eyechart", "serve", "--faults", "bogus=1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "unknown fault 'bogus'" in proc.stderr and "Traceback" not in proc.stderr
    trace = tmp_path / "t.jsonl"
    t = start_target(args=["--latency", "zero"], trace=trace)
    body: dict[str, Any] = {"model": t.model, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(
        f"{t.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {t.api_key}"}
    )
    assert r.status_code == 200
    assert t.stop() == 0
    assert [rec["status"] for rec in read_trace(trace)] == [200]


def test_a_client_leaving_mid_stream_frees_its_slot() -> None:
    with start_target(args=["--max-seqs", "1"]) as t:  # real speed: a long answer takes ~1 s
        headers = {"Authorization": f"Bearer {t.api_key}"}
        body = {
            "model": t.model,
            "messages": [{"role": "user", "content": "Tell me about it."}],
            "stream": True,
        }
        with httpx.Client(timeout=10) as http:
            with http.stream("POST", f"{t.base_url}/chat/completions", json=body, headers=headers) as r:
                next(r.iter_lines())  # first token, then hang up
            t0 = time.monotonic()
            r2 = http.post(
                f"{t.base_url}/chat/completions",
                json={**body, "stream": False, "max_tokens": 2},
                headers=headers,
            )
            assert r2.status_code == 200
            assert time.monotonic() - t0 < 0.5  # not queued behind the abandoned stream
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                text = http.get(f"{t.root_url}/metrics").text
                if 'class="disconnect"} 1' in text:
                    break
                time.sleep(0.05)
            assert 'class="disconnect"} 1' in text
        assert "Traceback" not in t.log_tail(200)
