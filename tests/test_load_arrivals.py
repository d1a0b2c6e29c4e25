"""Arrival processes: rates, burstiness, reproducibility, and that intended times are never re-timed."""

from __future__ import annotations

import itertools
import statistics

import pytest

from eyechart.load.arrivals import ArrivalError, LoadModel, Schedule, share
from eyechart.load.chunks import StreamReader


def _gaps(arrival: str, rate: float, n: int, **kw: float) -> list[float]:
    s = Schedule(0, rate, arrival, seed=3, **kw)  # type: ignore[arg-type]
    times = [s.next() for _ in range(n)]
    return [(b - a) / 1e9 for a, b in itertools.pairwise(times)]  # type: ignore[operator]


def test_constant_is_exact() -> None:
    gaps = _gaps("constant", 20.0, 100)
    assert max(gaps) - min(gaps) < 1e-9 and gaps[0] == pytest.approx(0.05)


@pytest.mark.parametrize(("arrival", "cv"), [("poisson", 1.0), ("gamma", 3.0), ("gamma", 0.5)])
def test_random_arrivals_have_rate_and_burstiness(arrival: str, cv: float) -> None:
    gaps = _gaps(arrival, 50.0, 20000, burstiness=cv)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.02, rel=0.06)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, rel=0.1)


def test_schedule_is_seeded_and_ends() -> None:
    a = Schedule(0, 10.0, "poisson", seed=7, end_ns=2_000_000_000)
    b = Schedule(0, 10.0, "poisson", seed=7, end_ns=2_000_000_000)
    ta, tb = list(iter(a.next, None)), list(iter(b.next, None))
    assert ta == tb and all(t < 2_000_000_000 for t in ta) and 5 < len(ta) < 40
    limited = Schedule(0, 1000.0, "constant", limit=5)
    assert len(list(iter(limited.next, None))) == 5


def test_taking_times_late_does_not_shift_them() -> None:
    """A user asking late gets the same intended time: the lateness becomes schedule lag."""
    s = Schedule(1_000, 100.0, "constant")
    assert [s.next() for _ in range(3)] == [1_000, 10_001_000, 20_001_000]


def test_share_and_model_errors() -> None:
    assert [share(10, 3, i) for i in range(3)] == [4, 3, 3]
    assert share(9.0, 3, 0) == 3.0
    with pytest.raises(ArrivalError):
        LoadModel(users=4, rate=2.0)
    with pytest.raises(ArrivalError):
        LoadModel(rate=-1.0)
    with pytest.raises(ArrivalError):
        LoadModel(users=0)
    assert LoadModel(rate=2.0).open_loop and not LoadModel(users=2).open_loop


def _read(*parts: bytes) -> StreamReader:
    r = StreamReader()
    for i, p in enumerate(parts):
        r.feed(p, i + 1)
    r.close()
    return r


def test_role_only_first_chunk_is_not_the_first_token() -> None:
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    tok = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
    r = _read(role, tok + tok, usage + b"data: [DONE]\n\n")
    assert r.chunk_times == [2, 2] and r.completion_tokens == 2 and r.prompt_tokens == 5
    assert r.error_class is None


def test_reader_framing_and_protocol_errors() -> None:
    # CRLF split across reads, a comment, spaced JSON, data without the optional space
    r = _read(
        b": keep-alive\r", b'data:{"choices": [{"delta": {"content": "a"}}]}\r\n\r\n', b"data: [DONE]\r\r"
    )
    assert r.chunk_times == [2] and r.error_class is None and r.completion_tokens is None
    assert _read(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n').error_class == "no_done"
    bad = _read(b'data: {"choices":[{"delta":{"content":"a"}}]\n\ndata: [DONE]\n\n')
    assert bad.error_class == "malformed" and "JSON" in (bad.error or "")
    err = _read(b'data: {"error":{"message":"boom"}}\n\n')
    assert err.error_class == "malformed" and "boom" in (err.error or "")
    assert _read(b"data: [DONE]\n\ndata: {}\n\n").error_class == "malformed"
    # the connection closed mid-event: a disconnect, not the half event's bad JSON
    cut = StreamReader()
    cut.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choi', 1)
    cut.close(complete=False)
    assert cut.error_class == "disconnect" and cut.chunk_times == [1]


def test_content_outside_the_fast_path_is_still_counted_once() -> None:
    """JSON with whitespace around it misses the byte-level fast path; the full parse must count it."""
    padded = b'data: {"choices":[{"delta":{"content":"a"}}]} \n\n'
    with_usage = (
        b'data: {"choices":[{"delta":{"content":"b"}}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    )
    r = _read(padded, with_usage, b"data: [DONE]\n\n")
    assert r.chunk_times == [1, 2] and r.completion_tokens == 2 and r.error_class is None


def test_poisson_over_a_known_span_offers_exactly_its_rate_and_stays_bursty() -> None:
    for seed in range(5):  # 2 req/s for 40 s: 80 requests, whatever the draw
        s = Schedule(0, 2.0, "poisson", seed=seed, end_ns=40_000_000_000)
        times = list(iter(s.next, None))
        assert len(times) == 80 and times == sorted(times) and times[0] >= 0 and times[-1] < 40e9
    s = Schedule(5_000, 50.0, "poisson", seed=3, end_ns=5_000 + 400_000_000_000)
    times = list(iter(s.next, None))
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
    assert len(times) == 20000 and statistics.fmean(gaps) == pytest.approx(0.02, rel=0.01)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential
    first_half = sum(1 for t in times if t < 5_000 + 200e9)
    assert abs(first_half - 10000) < 4 * 71  # binomial(20000, 1/2): uniform over the span
    limited = Schedule(0, 2.0, "poisson", seed=1, end_ns=40_000_000_000, limit=7)
    assert len(list(iter(limited.next, None))) == 7
