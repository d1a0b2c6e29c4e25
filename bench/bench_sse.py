"""How fast the strict SSE reader parses, how fast request.json validates, and what judging one sampled
stream with the invariants costs (one core, printed).

    .venv/bin/python bench/bench_sse.py

A load test reads every event of every stream through ``SSEReader``; the reference target validates
every incoming request with ``schemas.problems("request", ...)``. Both must stay far from being the
bottleneck: compare events/s with the target's token rate and validations/s with its request rate.

``eyechart load --check-sample`` judges a share of live responses with :mod:`eyechart.invariants`. The
cost per judged stream (µs, and per chunk) sets the default sample rate: the goal is that judging 1 % of
requests costs under 1 % of one core at 300,000 chunks/s. The load job's own reader on the same body is
printed beside it, for scale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from eyechart import invariants
from eyechart.load.chunks import StreamReader
from eyechart.profiles import load_profile
from eyechart.wire.build import chat_request, data_uri, image_part, system, user
from eyechart.wire.schemas import problems
from eyechart.wire.sse import SSEReader


def _stream(n_events: int) -> bytes:
    out = []
    for i in range(n_events):
        delta = {"role": "assistant", "content": "tok"} if i == 0 else {"content": " tok"}
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
            "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if i == n_events - 1 else None}],
        }
        out.append(f"data: {json.dumps(chunk)}\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def bench_reader(n_events: int = 20_000, read_size: int = 1024) -> None:
    body = _stream(n_events)
    for label, size in (("whole body in one read", len(body)), (f"{read_size}-byte reads", read_size)):
        t0 = time.perf_counter()
        reader = SSEReader(include_usage=False)
        for i in range(0, len(body), size):
            reader.feed(body[i : i + size], 0)
        analysis = reader.close(0)
        dt = time.perf_counter() - t0
        assert not analysis.violations, analysis.violations
        print(f"sse reader, {label}: {n_events / dt:,.0f} events/s ({len(body) / dt / 1e6:.1f} MB/s)")


def bench_schema(n: int = 3_000) -> None:
    profile = load_profile()
    small = chat_request(
        "m",
        [system("Be brief."), user(image_part(data_uri(b"\x89PNG" * 10)), "What colour?")],
        max_tokens=16,
        profile=profile,
    )
    big = chat_request(
        "m", [user(image_part(data_uri(b"\0" * 15_000_000)), "What?")], max_tokens=16, profile=profile
    )
    for label, body, count in (("small request", small, n), ("request with a 20 MB data URI", big, 200)):
        t0 = time.perf_counter()
        for _ in range(count):
            assert problems("request", body, profile) == []
        dt = time.perf_counter() - t0
        print(f"request.json, {label}: {count / dt:,.0f} validations/s ({dt / count * 1e6:.0f} µs each)")


def _chat_stream(n_chunks: int, eol: str = "\n") -> bytes:
    """A stream like the load bench's: one-word chunks, include_usage, compact JSON as vLLM writes it."""
    head = {"id": "chatcmpl-7f3a", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": "meta-llama/Llama-3.2-11B-Vision-Instruct"}  # fmt: skip
    events = []
    for i in range(n_chunks):
        delta = {"role": "assistant", "content": "word"} if i == 0 else {"content": " word"}
        events.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    usage = {"prompt_tokens": 1601, "completion_tokens": n_chunks, "total_tokens": 1601 + n_chunks}
    events.append({**head, "choices": [], "usage": {**usage, "estimated_cost": 0.0001}})
    text = "".join(f"data: {json.dumps(e, separators=(',', ':'))}{eol}{eol}" for e in events)
    return (text + f"data: [DONE]{eol}{eol}").encode()


def _per_call_us(fn: Callable[[], object], repeat: int, rounds: int = 5) -> float:
    """CPU µs per call, the best of ``rounds`` (other processes share the cores)."""
    fn()  # warm: the schema cache fills on the first stream, as it does early in a load run
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - t0) / repeat * 1e6)
    return best


def bench_judge(n_chunks: int = 256, repeat: int = 20, rate: float = 300_000) -> None:
    profile = load_profile()
    request = {"model": "m", "messages": [{"role": "user", "content": "Describe."}], "max_tokens": n_chunks,
               "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    headers = {"content-type": "text/event-stream"}
    body = _chat_stream(n_chunks)
    crlf = _chat_stream(n_chunks, "\r\n")
    state = invariants.CrossState()

    def observe(raw: bytes) -> invariants.Observed:
        return invariants.Observed(request, 200, headers, raw, received_at=time.time(), request_key="case-1")

    def load_reader() -> None:
        reader = StreamReader()
        for i in range(0, len(body), 4096):
            reader.feed(body[i : i + 4096], 0)
        reader.close()

    assert invariants.judge(observe(body), profile, state) == []
    assert [f.check for f in invariants.judge(observe(crlf), profile)] == ["stream.framing"]
    rows = [
        ("load job's own reader (every request)", load_reader, repeat),
        ("judge, plainest framing", lambda: invariants.judge(observe(body), profile), repeat),
        ("judge + crossing state", lambda: invariants.judge(observe(body), profile, state), repeat),
        ("judge, CRLF framing (strict reader)", lambda: invariants.judge(observe(crlf), profile), 3),
    ]
    print(f"invariants on a stream of {n_chunks} one-word chunks ({len(body):,} bytes), CPU per stream:")
    cost = {}
    for label, fn, times in rows:
        cost[label] = us = _per_call_us(fn, times)
        print(f"  {label:40s} {us:9,.0f} µs  ({us / (n_chunks + 2):5.1f} µs per chunk)")
    per_chunk = cost["judge + crossing state"] / (n_chunks + 2)
    for sample in (0.001, 0.01, 1.0):
        share = per_chunk * rate * sample / 1e6
        print(f"  sampling {sample:6.1%} at {rate:,.0f} chunks/s costs {share:7.2%} of one core")
    print(f"  largest sample rate within 1 % of one core: {0.01 / (per_chunk * rate / 1e6):.2%}")
    answer = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * n_chunks},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1601, "completion_tokens": n_chunks, "total_tokens": 1601 + n_chunks,
                  "estimated_cost": 0.0001},
    }).encode()  # fmt: skip
    whole = invariants.Observed(
        {**request, "stream": False}, 200, {"content-type": "application/json"}, answer
    )
    us = _per_call_us(lambda: invariants.judge(whole, profile), 200)
    print(f"  {'judge, one unstreamed answer':40s} {us:9,.0f} µs")


if __name__ == "__main__":
    bench_reader()
    bench_schema()
    bench_judge()
