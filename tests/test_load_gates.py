"""Gates: --slo parsing, pass/fail with the right exit codes, CI-based baseline comparison."""

from __future__ import annotations

import random

import pytest

from eyechart.load.baseline import (
    BaselineError,
    histogram_quantile_ci,
    quantile_ci_ranks,
    write_histograms,
)
from eyechart.load.gates import GateError, evaluate, parse_slo, per_request_slos
from eyechart.load.histograms import Histogram
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats

MS = 1_000_000


def test_parse_slo_units_and_kinds() -> None:
    slos = parse_slo(
        "ttft_p95<=2s, itl_p99<=80ms,error_rate<=1%,goodput>=95%,tpot_mean<500us,"
        "requests_per_s>=10,goodput>=3/s,e2e_max<=1500,completion_tokens_p50>=20"
    )
    got = {(s.name, s.op): (s.threshold, s.unit) for s in slos}
    assert got[("ttft_p95", "<=")] == (2000.0, "ms")
    assert got[("itl_p99", "<=")] == (80.0, "ms")
    assert got[("error_rate", "<=")] == (0.01, "fraction")
    assert got[("goodput", ">=")] == (0.95, "fraction")
    assert got[("goodput_per_s", ">=")] == (3.0, "/s")
    assert got[("tpot_mean", "<")] == pytest.approx((0.5, "ms"))
    assert got[("requests_per_s", ">=")] == (10.0, "/s")
    assert got[("e2e_max", "<=")] == (1500.0, "ms")  # a bare number is milliseconds
    assert per_request_slos(slos + parse_slo("ttft_p50<=1s")) == {
        "ttft": 1000.0,
        "itl": 80.0,
        "tpot": 0.5,
        "e2e": 1500.0,
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ttft_p95<=2 parsecs", "unit"),
        ("latency_p95<=2s", "unknown metric"),
        ("ttft_p42<=2s", "unknown metric"),
        ("error_rate<=5", "percentage"),
        ("goodput>=0.9", "share"),
        ("ttft_p95 2s", "expected"),
        ("requests_per_s>=5ms", "per second"),
        ("", "empty"),
    ],
)
def test_parse_slo_errors_are_clear(text: str, words: str) -> None:
    with pytest.raises(GateError, match=words) as info:
        parse_slo(text)
    assert isinstance(info.value, ValueError)


def crafted(**over: object) -> dict:
    """A minimal summary as LoadStats.summary would make it."""
    metric = {
        "unit": "ms",
        "count": 500,
        "mean": 100.0,
        "min": 50.0,
        "p50": 100.0,
        "p90": 150.0,
        "p95": 180.0,
        "p99": 250.0,
        "max": 400.0,
    }
    s: dict = {
        "run": {},
        "requests": {"total": 500, "ok": 495, "failed": 5, "by_stage": {}},
        "metrics": {m: dict(metric) for m in ("ttft", "itl", "tpot", "e2e", "ttft_sched", "ttfb")}
        | {"schedule_lag": {"count": 0}},
        "throughput": {
            "requests_per_s": 20.0,
            "output_tokens_per_s": 900.0,
            "total_tokens_per_s": 2000.0,
            "images_per_s": 30.0,
        },
        "goodput": {"requests_per_s": 19.0, "fraction": 0.95, "requests": 475},
        "errors": {"total": 5, "rate": 0.01, "by_class": {}},
    }
    for path, value in over.items():
        node = s
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return s


def test_gates_pass_and_fail_with_exit_codes() -> None:
    slos = parse_slo("ttft_p95<=200ms,error_rate<=1%,goodput>=95%")
    assert evaluate(crafted(), slos).exit_code == 0
    v = evaluate(crafted(metrics__ttft__p95=250.0), slos)
    assert v.exit_code == 1
    assert [r.name for r in v.results if not r.passed] == ["ttft_p95"]
    assert evaluate(crafted(errors__rate=0.02), slos).exit_code == 1
    # Too few samples makes the run invalid, and invalid outranks a breached SLO.
    v = evaluate(crafted(requests__ok=5, metrics__ttft__p95=250.0), slos)
    assert v.exit_code == 4
    assert evaluate(crafted(run={"harness_saturated": True}), slos).exit_code == 4
    lag = {"unit": "ms", "count": 500, "p99": 120.0}
    assert evaluate(crafted(metrics__schedule_lag=lag), slos, schedule_lag_budget_ms=50).exit_code == 4
    assert evaluate(crafted(metrics__schedule_lag=lag), slos, schedule_lag_budget_ms=200).exit_code == 0
    # A metric without samples cannot meet its SLO.
    assert evaluate(crafted(metrics__ttft__p95=None), slos).exit_code == 1


def _stats(rng: random.Random, scale: float, n: int = 1500) -> LoadStats:
    s = LoadStats()
    t0 = 10**12
    for i in range(n):
        ttft = int(rng.lognormvariate(0, 0.3) * 200 * MS * scale)
        itl = [int(rng.lognormvariate(0, 0.2) * 20 * MS * scale) for _ in range(20)]
        t_send = t0 + i * 20 * MS  # 50 requests/s over 30 s
        r = RequestRecord(
            f"r{i}",
            "measure",
            "c",
            True,
            "base64",
            None,
            t_send,
            t_first=t_send + ttft,
            t_end=t_send + ttft + sum(itl),
            completion_tokens=21,
            content_chunks=21,
        )
        s.add(r, itl)
    return s


def _save(tmp_path, name: str, stats: LoadStats):
    import json

    d = tmp_path / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(stats.summary({})))
    write_histograms(d / "histograms.json", stats.hists, stats.throughput_series())
    return d


def test_baseline_flags_a_real_shift_and_not_noise(tmp_path) -> None:
    rng = random.Random(11)
    base = _save(tmp_path, "base", _stats(rng, 1.0))
    same = _stats(rng, 1.0)  # the same distribution, other draws: noise only
    slower = _stats(rng, 1.3)  # 30 % slower
    for cand, expected in ((same, 0), (slower, 3)):
        summary = cand.summary({})
        v = evaluate(summary, [], baseline_dir=base, max_regression=0.10, histograms=cand.hists)
        names = {r.name for r in v.results if r.kind == "baseline"}
        assert {"baseline.ttft_p50", "baseline.itl_p95", "baseline.throughput.requests_per_s"} <= names
        assert v.exit_code == expected, [r.detail for r in v.results if not r.passed]
    v = evaluate(slower.summary({}), [], baseline_dir=base, max_regression=0.10, histograms=slower.hists)
    assert {r.name for r in v.results if not r.passed} >= {"baseline.ttft_p50", "baseline.itl_p50"}
    # An SLO breach outranks a regression.
    v = evaluate(slower.summary({}), parse_slo("ttft_p50<=1ms"), baseline_dir=base, histograms=slower.hists)
    assert v.exit_code == 1


def test_baseline_dir_must_be_a_run(tmp_path) -> None:
    with pytest.raises(BaselineError, match="missing"):
        evaluate(crafted(), [], baseline_dir=tmp_path, histograms={})


def test_quantile_ci_covers_the_true_quantile() -> None:
    # Coverage check of the order-statistic interval: ~95 % of intervals hold the true median.
    rng = random.Random(5)
    hits = 0
    for _ in range(200):
        h = Histogram()
        h.record_many([int(rng.expovariate(1 / 10_000)) for _ in range(200)])
        ci = histogram_quantile_ci(h, 0.5)
        assert ci is not None
        hits += ci[0] <= 6931 <= ci[1]  # median of Exp(mean 10 000) = 10 000 · ln 2
    assert 180 <= hits <= 200
    assert quantile_ci_ranks(5, 0.5) == (None, None)  # too few samples for a 95 % interval
    lo, hi = quantile_ci_ranks(1_000_000, 0.99)
    assert lo is not None and hi is not None and lo < 990_000 < hi


def test_lag_with_an_idle_generator_is_host_noise_and_saturation_needs_cpu_too() -> None:
    from eyechart.load import probe

    def snap(cpu: float, lag_p99: float) -> dict[str, dict[str, float]]:
        return {"process-0": {"cpu_s": cpu * 10, "wall_s": 10.0, "lag_samples": 500, "lag_p50_ms": 0.3,
                              "lag_p99_ms": lag_p99, "lag_max_ms": lag_p99 * 2}}  # fmt: skip

    noisy = probe.verdict(snap(0.04, 25.0), ttft_p50_ms=200.0)  # a busy host, the generator idle
    assert noisy["valid"] and "host noise" in noisy["warnings"][0]
    assert noisy["uncertainty"]["loop_lag_p99_ms"] == 25.0
    saturated = probe.verdict(snap(0.95, 25.0), ttft_p50_ms=200.0)
    assert not saturated["valid"] and "saturated" in saturated["reasons"][0]
    # 5 % of a 1 s TTFT is 50 ms: 25 ms of lag is within what the measurement can carry
    assert probe.verdict(snap(0.95, 25.0), ttft_p50_ms=1000.0)["valid"]
    # an explicit budget is a budget
    explicit = probe.verdict(snap(0.04, 25.0), max_lag_ms=10.0, ttft_p50_ms=200.0)
    assert not explicit["valid"] and "--max-loop-lag-ms" in explicit["reasons"][0]
    quiet = probe.verdict(snap(0.04, 3.0), ttft_p50_ms=200.0)
    assert quiet["valid"] and not quiet["warnings"]
