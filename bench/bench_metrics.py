"""Cost of recording on the generator's hot path: histograms, LoadStats.add, the record file.

Run: ``.venv/bin/python bench/bench_metrics.py``. Prints ns per recorded value and µs per request with
256 ITLs, and the implied ceiling in chunks/s on one core for the recording part alone (the budget for
150,000 chunks/s total is ~6.7 µs per chunk, HTTP and SSE parsing included).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from hdrh.histogram import HdrHistogram

from eyechart.load.histograms import HIGHEST, Histogram
from eyechart.load.recordfile import RecordWriter
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats

CHUNKS = 256


def _itls(rng: random.Random, same_read: bool) -> list[int]:
    if same_read:  # a whole stream arrives in a few reads: most gaps are a few µs and repeat
        return [rng.choice((1_000, 2_000, 3_000, 40_000_000)) for _ in range(CHUNKS - 1)]
    return [int(rng.gauss(20e6, 4e6)) for _ in range(CHUNKS - 1)]


def _record(i: int, t0: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"r{i}", stage="measure", case="ocr", stream=True, transport="base64",
        t_sched=t0, t_send=t0 + 1_000, t_head=t0 + 2_000_000, t_first=t0 + 200_000_000,
        t_end=t0 + 5_000_000_000, status=200, content_chunks=CHUNKS, prompt_tokens=900,
        completion_tokens=CHUNKS, images=2, pixels=2_000_000, image_bytes=300_000, wire_bytes=400_000,
    )  # fmt: skip


def main() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(9, 1.5)) for _ in range(200_000)]

    h = HdrHistogram(1, HIGHEST, 3)
    t = time.perf_counter()
    for v in values[:50_000]:
        h.record_value(v)
    print(f"HdrHistogram.record_value:            {(time.perf_counter() - t) / 50_000 * 1e9:8.0f} ns/value")

    ours = Histogram()
    t = time.perf_counter()
    for i in range(0, len(values), CHUNKS):
        ours.record_many(values[i : i + CHUNKS])
    ours.flush()
    print(
        f"Histogram.record_many (256/call):     {(time.perf_counter() - t) / len(values) * 1e9:8.0f} ns/value"
    )

    for same_read in (False, True):
        itls = [_itls(rng, same_read) for _ in range(200)]
        stats = LoadStats({"ttft": 2000, "itl": 80, "e2e": 10_000})
        n = 4000
        recs = [_record(i, 10**12 + i * 10**7) for i in range(n)]
        t = time.perf_counter()
        for i, rec in enumerate(recs):
            stats.add(rec, itls[i % 200])
        stats.hists["itl"].flush()
        per_req = (time.perf_counter() - t) / n
        label = "ITLs in few reads" if same_read else "ITLs spread      "
        print(
            f"LoadStats.add, 256 ITLs, {label}: {per_req * 1e6:8.1f} µs/request = "
            f"{per_req / CHUNKS * 1e9:5.0f} ns/chunk"
        )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl.gz"
        w = RecordWriter(path)
        n = 20_000
        t = time.perf_counter()
        for i in range(n):
            w.write(recs[i % len(recs)])
        w.close()
        per = (time.perf_counter() - t) / n
        size = path.stat().st_size
        print(f"RecordWriter.write (gzip level 1):    {per * 1e6:8.1f} µs/request ({size / n:.0f} B/record)")

    t = time.perf_counter()
    d = stats.serialize()
    ser = time.perf_counter() - t
    t = time.perf_counter()
    merged = LoadStats()
    merged.merge_serialized(d)
    mer = time.perf_counter() - t
    t = time.perf_counter()
    stats.summary({"target": "bench"})
    summ = time.perf_counter() - t
    print(f"serialize {ser * 1e3:.1f} ms, merge_serialized {mer * 1e3:.1f} ms, summary {summ * 1e3:.1f} ms")
    total = per_req + per
    print(
        f"recording ceiling on one core (stats + record file): {CHUNKS / total:,.0f} chunks/s "
        f"({total / CHUNKS * 1e9:.0f} ns per chunk)"
    )


if __name__ == "__main__":
    main()
