"""How fast the strict SSE reader parses, and how fast request.json validates (one core, printed).

    .venv/bin/python bench/bench_sse.py

A load test reads every event of every stream through ``SSEReader``; the reference target validates
every incoming request with ``schemas.problems("request", ...)``. Both must stay far from being the
bottleneck: compare events/s with the target's token rate and validations/s with its request rate.
"""

from __future__ import annotations

import json
import time

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


if __name__ == "__main__":
    bench_reader()
    bench_schema()
