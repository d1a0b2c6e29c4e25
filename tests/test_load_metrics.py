"""Load metrics: definitions from records, histogram accuracy and merging, stats, the record file."""

from __future__ import annotations

import gzip
import random

import pytest
from hdrh.histogram import HdrHistogram

from eyechart.load.histograms import HIGHEST, Histogram
from eyechart.load.metrics import METRICS, itl_gaps
from eyechart.load.recordfile import RecordWriter, read_records
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats

MS = 1_000_000


def rec(i: int = 0, **kw: object) -> RequestRecord:
    base = 10**12 + i * 50 * MS
    fields: dict[str, object] = dict(
        request_id=f"r{i}", stage="measure", case="ocr", stream=True, transport="base64",
        t_sched=base, t_send=base + 2 * MS, t_head=base + 12 * MS, t_first=base + 102 * MS,
        t_end=base + 1102 * MS, status=200, content_chunks=11, prompt_tokens=500,
        completion_tokens=11, images=2, pixels=1000, image_bytes=4000,
    )  # fmt: skip
    fields.update(kw)
    return RequestRecord(**fields)  # type: ignore[arg-type]


def test_metric_definitions_follow_design() -> None:
    r = rec()
    assert METRICS["ttft"].derive(r) == 100 * MS  # type: ignore[misc]
    assert METRICS["ttft_sched"].derive(r) == 102 * MS  # type: ignore[misc]
    assert METRICS["schedule_lag"].derive(r) == 2 * MS  # type: ignore[misc]
    assert METRICS["ttfb"].derive(r) == 10 * MS  # type: ignore[misc]
    assert METRICS["e2e"].derive(r) == 1100 * MS  # type: ignore[misc]
    assert METRICS["tpot"].derive(r) == 100 * MS  # (1102-102) ms / (11-1) tokens  # type: ignore[misc]
    closed = rec(t_sched=None)
    assert METRICS["ttft_sched"].derive(closed) == METRICS["ttft"].derive(closed)  # type: ignore[misc]
    assert METRICS["schedule_lag"].derive(closed) is None  # type: ignore[misc]
    assert itl_gaps([0, 5, 5, 12]) == [5, 0, 7]
    assert all(m.definition and m.unit for m in METRICS.values())


def test_histogram_matches_hdr_and_merge_is_exact() -> None:
    rnd = random.Random(3)
    values = [int(rnd.lognormvariate(8, 2)) for _ in range(20_000)] + [0, 1, HIGHEST + 5]
    ref = HdrHistogram(1, HIGHEST, 3)
    for v in values:
        ref.record_value(min(v, HIGHEST))
    whole, a, b = Histogram(), Histogram(), Histogram()
    whole.record_many(values)
    a.record_many(values[: len(values) // 2])
    b.record_many(values[len(values) // 2 :])
    # Ship both halves as JSON-able dicts, as Locust workers do, and merge on the "master".
    merged = Histogram.from_dict(a.to_dict())
    merged.merge(Histogram.from_dict(b.to_dict()))
    ps = [50, 90, 99, 99.9]
    assert merged.count == whole.count == len(values)
    assert merged.percentiles(ps) == whole.percentiles(ps)
    assert [whole.percentiles([p])[p] for p in ps] == [ref.get_value_at_percentile(p) for p in ps]
    # Stated bound: within max(1 unit, 0.1 %) of the exact order statistic.
    ordered = sorted(min(v, HIGHEST) for v in values)
    for p in ps:
        exact = ordered[max(1, int(p / 100 * len(values) + 0.5)) - 1]
        assert abs(merged.percentiles([p])[p] - exact) <= max(1, exact * 0.001)
    assert merged.mean() == pytest.approx(sum(min(v, HIGHEST) for v in values) / len(values))


def test_histogram_divisor_keeps_microseconds() -> None:
    h = Histogram(divisor=1000)
    h.record_many([1_500, 2_000_000, 999])  # ns
    assert h.count == 3 and h.max() == 2000 and h.min() == 0


def _feed(stats: LoadStats, n: int, stage: str = "measure", offset: int = 0) -> None:
    for i in range(n):
        r = rec(i + offset, stage=stage)
        stats.add(r, [10 * MS] * 9 + [(i % 5 + 1) * 10 * MS])


def test_stats_count_only_measure_stage_and_merge_like_one() -> None:
    one = LoadStats({"ttft": 150, "itl": 35})
    _feed(one, 5, stage="warmup")
    _feed(one, 40, offset=5)
    one.add(rec(99, t_first=None, t_end=None, status=503, error_class="5xx", error="<b>overloaded</b>"), [])
    a, b = LoadStats({"ttft": 150, "itl": 35}), LoadStats({"ttft": 150, "itl": 35})
    _feed(a, 5, stage="warmup")
    _feed(a, 20, offset=5)
    _feed(b, 20, offset=25)
    b.add(rec(99, t_first=None, t_end=None, status=503, error_class="5xx", error="<b>overloaded</b>"), [])
    master = LoadStats({"ttft": 150, "itl": 35})
    master.merge_serialized(a.serialize())
    master.merge_serialized(b.serialize())
    for s in (one, master):
        summ = s.summary({"target": "http://127.0.0.1:1", "api_key": "sk-secret", "duration_s": 10})
        assert summ["requests"]["total"] == 41 and summ["requests"]["ok"] == 40
        assert summ["requests"]["by_stage"]["warmup"]["requests"] == 5
        assert summ["metrics"]["ttft"]["count"] == 40
        assert summ["metrics"]["ttft"]["p50"] == pytest.approx(100, rel=1e-3)
        assert summ["metrics"]["itl"]["count"] == 400
        assert summ["errors"]["by_class"]["5xx"] == 1
        assert summ["errors"]["rate"] == pytest.approx(1 / 41)
        # Goodput: the request's largest ITL must be <= 35 ms: i % 5 in (0, 1, 2) -> 24 of 40 requests.
        assert summ["goodput"]["requests"] == 24
        assert "api_key" not in summ["run"] and "sk-secret" not in str(summ)
    assert one.summary({})["metrics"] == master.summary({})["metrics"]


def test_tokens_estimated_when_usage_missing() -> None:
    s = LoadStats()
    s.add(rec(completion_tokens=None, content_chunks=21), [])
    summ = s.summary({})
    assert summ["tokens_estimated"] == {"requests": 1, "any": True}
    assert summ["metrics"]["tpot"]["p50"] == pytest.approx(50, rel=1e-3)  # 1000 ms / 20


def test_memory_stays_bounded() -> None:
    s = LoadStats(reservoir_size=50, series_cap=100)
    for i in range(2000):  # 2000 requests 50 ms apart: 100 s of series
        s.add(rec(i), [MS] * 3)
    assert len(s.reservoir) == 50 and s.reservoir_seen == 2000
    assert len(s.series) <= 100 and s.series_res_s >= 2
    assert sum(b[0] for b in s.series.values()) == 2000


def test_record_file_roundtrip_and_idempotent_close(tmp_path) -> None:
    path = tmp_path / "requests.jsonl.gz"
    w = RecordWriter(path, buffer_records=7)
    for i in range(20):
        w.write(rec(i, error="ünïcode \u2028 line"))
    w.close()
    w.close()
    rows = list(read_records(path))
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(20)]
    assert rows[3]["t_first"] - rows[3]["t_send"] == 100 * MS and rows[0]["error"] == "ünïcode \u2028 line"
    with pytest.raises(ValueError):
        w.write(rec())


def test_record_file_cut_short_yields_complete_lines(tmp_path) -> None:
    path = tmp_path / "requests.jsonl.gz"
    with RecordWriter(path) as w:
        for i in range(200):
            w.write(rec(i))
    data = path.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    rows = list(read_records(cut))
    assert 0 < len(rows) < 200
    with gzip.open(path, "rt") as f:
        assert sum(1 for _ in f) == 200
