"""The simulated engine: FCFS admission, continuous-batching steps, their timing, overload as queueing,
the faults spec, shutdown."""

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
from eyechart.target.batching import Batcher
from eyechart.target.deployment import deployment
from eyechart.target.engine import Engine, QueueFull, Sequence
from eyechart.target.faults import FaultInjector, FaultSpecError, parse_faults
from eyechart.target.launch import start_target
from eyechart.target.trace import read_trace


def seq(name: str, kv: int = 10, text: int = 5, image: int = 0, answer: int | None = 3) -> Sequence:
    s = Sequence(request_id=name, text_tokens=text, image_tokens=image, kv_reserve=kv)
    s.answer_tokens = answer
    return s


def test_admission_is_first_come_first_served_under_max_seqs_and_kv_capacity() -> None:
    b = Batcher(deployment("llava-1.5-7b", max_seqs=2, kv_tokens=100), max_waiting=3)
    a, bb = seq("a"), seq("b")
    b.add(a, 1)
    b.add(bb, 2)
    assert [s.request_id for s in b.running] == ["a", "b"] and a.admitted_ns == 1
    c, d, e = seq("c"), seq("d"), seq("e")
    for s in (c, d, e):
        b.add(s, 3)
    assert len(b.waiting) == 3 and c.admitted_ns is None
    with pytest.raises(QueueFull):
        b.add(seq("f"), 4)
    b.remove(d, 5)  # "d" gives up while queued: it never runs
    b.remove(bb, 6)
    assert [s.request_id for s in b.running] == ["a", "c"] and c.admitted_ns == 6
    b.remove(a, 7)
    assert [s.request_id for s in b.running] == ["c", "e"] and not b.waiting and d.admitted_ns is None
    b.remove(c, 8)
    b.remove(e, 8)
    assert b.kv_used == 0 and not b.running
    # KV capacity: "small" fits the sequence count but not the cache, and nobody jumps the queue.
    big, small, tiny = seq("big", kv=90), seq("small", kv=20), seq("tiny", kv=5)
    for s in (big, small, tiny):
        b.add(s, 9)
    assert [s.request_id for s in b.running] == ["big"] and [s.request_id for s in b.waiting] == [
        "small",
        "tiny",
    ]
    b.remove(big, 10)
    assert [s.request_id for s in b.running] == ["small", "tiny"]
    # A sequence larger than the whole cache still runs, alone, rather than waiting forever.
    b2 = Batcher(deployment("llava-1.5-7b", max_seqs=4, kv_tokens=100))
    huge = seq("huge", kv=500)
    b2.add(huge, 0)
    b2.add(seq("next", kv=1), 0)
    assert [s.request_id for s in b2.running] == ["huge"] and len(b2.waiting) == 1


def test_a_step_decodes_every_running_sequence_then_fills_the_token_budget_with_prefill_chunks() -> None:
    d = deployment("qwen2.5-vl-7b", "h100-sxm", max_seqs=8, max_batched_tokens=100)
    b = Batcher(d)
    old = seq("old", text=10, answer=5)
    b.add(old, 0)
    step = b.plan()
    assert step is not None and [(s.request_id, n) for s, n in step.items] == [("old", 10)]
    emitted, _ = b.complete(step, 0)
    assert [(s.request_id, i) for s, i in emitted] == [("old", 0)]  # the step that ends the prefill
    first, second = seq("first", text=70, image=50), seq("second", text=30)
    b.add(first, 0)
    b.add(second, 0)
    step = b.plan()
    assert step is not None
    # one decode, then first's prefill in chunks: 99 tokens of budget left, 120 to prefill
    assert [(s.request_id, n) for s, n in step.items] == [("old", 1), ("first", 99)]
    # the step encodes first's 50 image tokens and attends over old's 11 + first's 99 tokens
    assert step.duration_s == pytest.approx(d.step_s(100, 11 + 99, 50))
    b.complete(step, 0)
    step = b.plan()
    assert step is not None
    assert [(s.request_id, n) for s, n in step.items] == [("old", 1), ("first", 21), ("second", 30)]
    assert step.duration_s == pytest.approx(d.step_s(52, 12 + 120 + 30, 0))  # images encoded once
    emitted, _ = b.complete(step, 0)
    assert [(s.request_id, i) for s, i in emitted] == [("old", 2), ("first", 0), ("second", 0)]
    # a sequence whose answer is not known yet holds its place without decoding
    late = seq("late", text=4, answer=None)
    b.add(late, 0)
    step = b.plan()
    assert step is not None
    b.complete(step, 0)
    step = b.plan()
    assert step is not None and "late" not in [s.request_id for s, _ in step.items]
    assert not b.set_answer(late, 2, 0)
    step = b.plan()
    assert step is not None and ("late", 1) in [(s.request_id, n) for s, n in step.items]


def test_decode_step_time_grows_with_batch_size_and_context_length() -> None:
    d = deployment("llama-3.2-11b-vision", "h100-sxm")
    lone = d.step_s(1, 1_000)
    assert lone < d.step_s(64, 64_000) < d.step_s(256, 256_000)  # bigger batch, more KV to read
    assert d.step_s(1, 1_000) < d.step_s(1, 100_000)  # one sequence, longer context
    # a lone decode reads the 21.3 GB of weights at 80 % of 3.35 TB/s, plus 2 ms of overhead
    assert lone == pytest.approx(0.002 + (21.3e9 + 1_000 * 131_072) / (3.35e12 * 0.8))
    # prefill of a full 8192-token chunk is compute-bound: 2 x 9.8 B FLOPs a token at half of 989 TFLOP/s
    assert d.step_s(8192) == pytest.approx(0.002 + 2 * 9.8e9 * 8192 / (989e12 * 0.5))
    # image tokens cost the vision encoder's work, once; --speed divides every step
    assert d.step_s(1, 0, 1601) - d.step_s(1) == pytest.approx(1601 * 1.7e9 / (989e12 * 0.5))
    fast = deployment("llama-3.2-11b-vision", "h100-sxm", speed=4)
    assert fast.step_s(64, 64_000) == pytest.approx(d.step_s(64, 64_000) / 4)
    # the KV cache is what 90 % of the memory leaves after the weights and a 3 GiB reserve
    assert d.kv_tokens == int((0.9 * 80 * 2**30 - 21.3e9 - 3 * 2**30) // 131_072)
    assert (d.max_seqs, d.max_batched_tokens) == (1024, 8192)  # vLLM's defaults on an H100
    with pytest.raises(ValueError, match="does not fit"):
        deployment("llama-3.2-90b-vision", "a10", gpus=1)


def test_engine_times_tokens_by_its_steps() -> None:
    d = deployment("llama-3.2-11b-vision", speed=2)

    async def scenario() -> tuple[list[float], Sequence]:
        engine = Engine(d)
        s = Sequence(request_id="x", text_tokens=1200, image_tokens=1601, kv_reserve=3000)
        lease = engine.enqueue(s)
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        fut.set_result(["a", "b", "c", "d"])
        times = []
        async for _ in engine.run(lease, fut):
            times.append(time.monotonic_ns())
        assert engine.running == 0 and engine.kv_used == 0
        await engine.close()
        assert s.admitted_ns is not None
        return [(t - s.admitted_ns) / 1e9 for t in times], s

    offsets, _ = asyncio.run(scenario())
    # 2801 prompt tokens in 2048-token chunks: two prefill steps (images encoded in the first), the
    # first token at the end of the second; then one decode step per token.
    steps = [d.step_s(2048, 2048, 1601), d.step_s(753, 2801)]
    steps += [d.step_s(1, 2801 + i) for i in range(1, 4)]
    due = [sum(steps[: i + 2]) for i in range(4)]
    for i, offset in enumerate(offsets):
        # Steps keep an absolute schedule: a late wake-up does not push back every later token.
        assert due[i] - 0.001 <= offset < due[i] + 0.05, (i, offsets, due)


def test_a_failing_step_fails_every_answer_in_the_engine_instead_of_hanging_it() -> None:
    d = deployment("llama-3.2-11b-vision", speed=50, max_seqs=1)

    async def scenario() -> list[str]:
        engine = Engine(d)

        def broken(*args: Any) -> Any:
            raise ZeroDivisionError("a bug in a step")

        engine.batcher.complete = broken  # type: ignore[method-assign]
        outcomes = []
        for name in ("running", "queued"):
            lease = engine.enqueue(Sequence(request_id=name, text_tokens=5, image_tokens=0, kv_reserve=10))
            fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
            fut.set_result(["a", "b"])
            outcomes.append(engine.run(lease, fut))

        async def consume(gen: Any) -> str:
            try:
                async for _ in gen:
                    pass
            except RuntimeError as exc:
                return str(exc)
            return "finished"

        results = await asyncio.wait_for(asyncio.gather(*(consume(g) for g in outcomes)), 5)
        assert engine.running == engine.waiting == engine.kv_used == 0
        return results

    assert asyncio.run(scenario()) == ["the simulated engine failed"] * 2


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


def test_gpu_flags_choose_the_deployment_and_help_teaches_them() -> None:
    serve = [sys.executable, "-m", "eyechart", "serve"]
    help_text = subprocess.run([*serve, "--help"], capture_output=True, text=True, timeout=30).stdout
    for words in ("--gpu", "--max-batched-tokens", "h100-sxm", "3.35 TB/s", "qwen2.5-vl-7b on 1x h100-sxm"):
        assert words in help_text, words
    bad = subprocess.run(
        [*serve, "--model-profile", "llama-3.2-90b-vision", "--gpu", "a10", "--gpus", "1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "does not fit" in bad.stderr and "Traceback" not in bad.stderr
    args = ["--model-profile", "qwen2.5-vl-7b", "--gpu", "h100-sxm", "--max-batched-tokens", "512"]
    with start_target(args=args) as t:
        text = httpx.get(f"{t.root_url}/metrics").text
    want = deployment("qwen2.5-vl-7b", "h100-sxm").kv_tokens
    assert re.search(rf"^eyechart_kv_tokens_capacity\{{[^}}]*\}} {want}$", text, re.M), want


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
