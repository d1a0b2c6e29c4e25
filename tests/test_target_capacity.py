"""The engine's computed capacity: exact on cases worked by hand, and what a real run of the target
over 127.0.0.1 measures. A capacity planner is checked against these numbers, so they must be true."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from eyechart.target.capacity import (
    Slo,
    Workload,
    arrival_gaps,
    completion_rate,
    max_throughput,
    meets,
    simulate,
    slo_rate,
)
from eyechart.target.deployment import deployment
from eyechart.target.launch import start_target
from eyechart.target.trace import read_trace


def test_one_sequence_at_a_time_gives_the_throughput_worked_by_hand() -> None:
    d = deployment("qwen2.5-vl-7b", "h100-sxm", max_seqs=1)
    w = Workload(prompt_tokens=300, output_tokens=20, image_tokens=400)
    # one request: a prefill step of 700 tokens (encoding 400 image tokens) that emits the first
    # token, then 19 decode steps attending over the growing context
    per_request = d.step_s(700, 700, 400) + sum(d.step_s(1, 700 + i) for i in range(1, 20))
    assert max_throughput(d, w) == pytest.approx(1 / per_request, rel=1e-6)


def test_the_kv_cache_can_be_what_limits_the_batch() -> None:
    w = Workload(prompt_tokens=200, output_tokens=50)
    per = 250
    by_kv = deployment("llama-3.2-11b-vision", max_seqs=100, kv_tokens=3 * per)
    by_seqs = deployment("llama-3.2-11b-vision", max_seqs=3)
    assert max_throughput(by_kv, w) == pytest.approx(max_throughput(by_seqs, w), rel=1e-6)
    assert max_throughput(deployment("llama-3.2-11b-vision", max_seqs=100), w) > 5 * max_throughput(by_kv, w)


def test_the_slo_limited_rate_is_the_highest_rate_meeting_every_limit() -> None:
    d = deployment("llama-3.2-11b-vision", "h100-sxm", max_seqs=32)
    w = Workload(prompt_tokens=500, output_tokens=64, image_tokens=1601)
    ceiling = max_throughput(d, w)
    assert slo_rate(d, w, Slo()) == ceiling  # no limit: saturation is the only bound
    slo = Slo(ttft_s=0.3, tpot_s=0.04)
    rate = slo_rate(d, w, slo, requests=600)
    assert 0 < rate < ceiling
    assert rate == slo_rate(d, w, slo, requests=600)  # deterministic for a seed
    gaps = arrival_gaps(600, "poisson", 0)  # the arrivals slo_rate judged, scaled to each rate

    def holds(r: float) -> bool:
        return meets(simulate(d, w, rate=r, requests=600, gaps=gaps), slo)

    assert holds(rate) and not holds(rate * 1.03)
    tighter = slo_rate(d, w, Slo(ttft_s=0.15, tpot_s=0.04), requests=600)
    assert tighter < rate
    lone_prefill = d.step_s(2101, 2101, 1601)
    assert slo_rate(d, w, Slo(ttft_s=lone_prefill * 0.9), requests=200) == 0.0  # no rate meets it


def test_computed_capacity_matches_a_saturated_run_of_the_target(tmp_path: Path) -> None:
    # At --speed 5 with 4 sequences and 32-token answers the engine completes ~40 requests/s: enough to
    # saturate it with 12 closed-loop users, little enough that this machine's CPU is not the limit.
    speed, seqs, out, users, seconds = 5.0, 4, 32, 12, 4.0
    trace = tmp_path / "trace.jsonl"
    with start_target(args=["--speed", str(speed), "--max-seqs", str(seqs)], trace=trace) as t:
        body = {
            "model": t.model,
            "messages": [{"role": "user", "content": "Say something about eye charts."}],
            "max_tokens": out,
            "ignore_eos": True,
        }
        headers = {"Authorization": f"Bearer {t.api_key}"}
        usage = httpx.post(f"{t.base_url}/chat/completions", json=body, headers=headers).json()["usage"]
        assert usage["completion_tokens"] == out

        async def drive() -> None:
            limits = httpx.Limits(max_connections=users)
            async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:
                stop = time.monotonic() + seconds

                async def user() -> None:
                    while time.monotonic() < stop:
                        r = await http.post(f"{t.base_url}/chat/completions", json=body)
                        assert r.status_code == 200

                await asyncio.gather(*(user() for _ in range(users)))

        t0 = time.monotonic_ns()
        asyncio.run(drive())
    stop_ns = t0 + seconds * 1e9  # then users stop sending and the queue drains
    served = [r for r in read_trace(trace) if r["received_ns"] >= t0]
    engine = deployment("llama-3.2-11b-vision", max_seqs=seqs, speed=speed)
    # completions while every user was still sending (the queue full), counted in whole waves
    ends = [r["end_ns"] / 1e9 for r in served if r["end_ns"] <= stop_ns]
    measured = completion_rate(ends, gap_s=engine.step_s(1) / 2, head=0.2, tail=0.05)
    computed = max_throughput(engine, Workload(prompt_tokens=usage["prompt_tokens"], output_tokens=out))
    assert computed == pytest.approx(measured, rel=0.10), (measured, computed)
    # the engine really was saturated: every admission waited for a free slot once the queue formed
    assert max(r["admitted_ns"] - r["received_ns"] for r in served) > 0.05e9


def test_metrics_speak_vllm_and_any_request_id_reaches_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    ids = ["7f9c2ba4-e88f-4c2b-9a64-1f0e3c5d8b21", "free text / with spaces, é and ünïcode"]
    with start_target(args=["--speed", "20"], trace=trace) as t, httpx.Client(timeout=10) as http:
        auth = {"Authorization": f"Bearer {t.api_key}"}
        body = {"model": t.model, "messages": [{"role": "user", "content": "hi"}]}
        for rid in ids:
            raw = rid.encode("latin-1")  # a header carries bytes; the server reads them as Latin-1
            r = http.post(f"{t.base_url}/chat/completions", json=body, headers={**auth, "X-Request-Id": raw})
            assert r.status_code == 200
            assert {k.lower(): v for k, v in r.headers.raw}[b"x-request-id"] == raw  # echoed as sent
        text = http.get(f"{t.root_url}/metrics").text
    model = f'model_name="{t.model}"'
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:gpu_cache_usage_perc",
        "vllm:kv_cache_usage_perc",
    ):
        assert f"# TYPE {name} gauge" in text and f"{name}{{{model}}} 0\n" in text, name
    assert f"vllm:generation_tokens_total{{{model}}} " in text
    assert "eyechart_requests_running{" in text and "eyechart_kv_tokens_capacity{" in text
    records = {r["request_id"]: r for r in read_trace(trace)}
    assert set(records) == set(ids)
    for r in records.values():
        assert r["received_ns"] <= r["admitted_ns"] <= r["first_token_ns"] <= r["end_ns"]
        assert len(r["token_ns"]) == r["completion_tokens"] > 0


def test_simulated_latencies_match_the_target_under_the_same_poisson_arrivals(tmp_path: Path) -> None:
    # The SLO-limited rate is only as true as the simulated latencies: replay one Poisson arrival
    # pattern against the target (80 % of its capacity) and the simulation, compare the trace's times.
    out, requests = 32, 120
    engine = deployment("llama-3.2-11b-vision", max_seqs=4, speed=5)
    workload = Workload(prompt_tokens=6, output_tokens=out)  # "Say something about eye charts."
    rate = 0.8 * max_throughput(engine, workload)
    gaps = arrival_gaps(requests, "poisson", 3)
    trace = tmp_path / "trace.jsonl"
    with start_target(args=["--speed", "5", "--max-seqs", "4"], trace=trace) as t:
        body = {
            "model": t.model,
            "messages": [{"role": "user", "content": "Say something about eye charts."}],
            "max_tokens": out,
            "ignore_eos": True,
        }

        async def replay() -> None:
            limits = httpx.Limits(max_connections=None)
            auth = {"Authorization": f"Bearer {t.api_key}"}
            async with httpx.AsyncClient(timeout=30, headers=auth, limits=limits) as http:
                start = time.monotonic()

                async def one(at: float) -> None:
                    await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                    r = await http.post(f"{t.base_url}/chat/completions", json=body)
                    assert (
                        r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == workload.prompt_tokens
                    )

                offsets = [sum(gaps[: i + 1]) / rate for i in range(requests)]
                await asyncio.gather(*(one(at) for at in offsets))

        asyncio.run(replay())
    served = read_trace(trace)
    sim = simulate(engine, workload, rate=rate, requests=requests, gaps=gaps)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    e2e = median([(r["end_ns"] - r["received_ns"]) / 1e9 for r in served])
    tpot = median([(r["end_ns"] - r["first_token_ns"]) / 1e9 / (out - 1) for r in served])
    ttft = median([(r["first_token_ns"] - r["received_ns"]) / 1e9 for r in served])
    assert e2e == pytest.approx(sim.quantile("e2e", 0.5), rel=0.05)
    assert tpot == pytest.approx(sim.quantile("tpot", 0.5), rel=0.05)
    assert ttft == pytest.approx(sim.quantile("ttft", 0.5), abs=0.005)  # a few ms of event-loop jitter
