"""The planner against curves whose answer is known: max goodput, bracket, limiting SLO, range, costs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import jsonschema
import pytest
from plan_curves import itl_limit, mm1_point, mm1_sweep, sweep_summary, ttft_limit

from eyechart.load.gates import parse_slo
from eyechart.plan.capacity import interval, make_plan, parse_headroom

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "src/eyechart/report/schemas/plan.schema.json").read_text("utf-8")
)
RATES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 9.5, 10, 12]


def plan_of(summary: dict, slo: str, **kw: object) -> dict:
    plan = make_plan(summary, parse_slo(slo), **kw)  # type: ignore[arg-type]
    jsonschema.validate(json.loads(json.dumps(plan)), SCHEMA)
    return plan


def test_queue_curve_max_goodput_within_a_few_percent_and_on_the_safe_side() -> None:
    truth = ttft_limit(mu=10, base_ms=150, threshold_ms=1000)  # 6.48 req/s
    plan = plan_of(mm1_sweep(RATES), "ttft_p95<=1s")
    est = plan["max_goodput_rps"]
    assert est == pytest.approx(truth, rel=0.03)
    assert est <= truth  # linear interpolation of a convex curve errs low
    assert plan["max_goodput_rps_low"] <= truth <= plan["max_goodput_rps_high"]
    assert plan["limiting_slo"] == "ttft_p95<=1s"
    below, above = plan["bracket"]
    assert (below["offered_rps"], above["offered_rps"]) == (6, 7)
    assert below["observed"] <= 1000 < above["observed"]
    assert plan["max_throughput_rps"] == pytest.approx(10)
    assert not plan["max_goodput_is_lower_bound"]


def test_limiting_slo_is_the_one_that_binds_first() -> None:
    # ttft_p95<=2s holds up to 8.38 req/s; itl_p99<=40ms (20 + 3 ms per req/s) only up to 6.67.
    summary = mm1_sweep(RATES)
    plan = plan_of(summary, "ttft_p95<=2s,itl_p99<=40ms,error_rate<=1%")
    assert plan["limiting_slo"] == "itl_p99<=40ms"
    assert plan["max_goodput_rps"] == pytest.approx(itl_limit(20, 3, 40), rel=0.002)  # a straight line
    by = {s["slo"]: s for s in plan["slos"]}
    assert by["ttft_p95<=2s"]["limit_rps"] == pytest.approx(ttft_limit(10, 150, 2000), rel=0.03)
    assert by["error_rate<=1%"]["breached"] is False
    assert [e["offered_rps"] for e in plan["bracket"]] == [6, 7]
    # The order the SLOs are given in does not matter.
    again = plan_of(summary, "error_rate<=1%,itl_p99<=40ms,ttft_p95<=2s")
    assert again["limiting_slo"] == "itl_p99<=40ms"
    assert again["max_goodput_rps"] == plan["max_goodput_rps"]


def test_sampled_sweep_range_holds_the_truth() -> None:
    truth = ttft_limit(mu=10, base_ms=150, threshold_ms=1000)
    rng = random.Random(3)
    for _ in range(5):
        summary = sweep_summary([mm1_point(r, duration_s=120, rng=rng) for r in RATES])
        plan = plan_of(summary, "ttft_p95<=1s")
        assert plan["max_goodput_rps"] == pytest.approx(truth, rel=0.10)
        assert plan["max_goodput_rps_low"] <= truth <= plan["max_goodput_rps_high"]


def test_fewer_samples_leave_a_wider_range() -> None:
    short = plan_of(mm1_sweep(RATES, duration_s=20), "ttft_p95<=1s")
    long = plan_of(mm1_sweep(RATES, duration_s=600), "ttft_p95<=1s")
    width = lambda p: p["max_goodput_rps_high"] - p["max_goodput_rps_low"]  # noqa: E731
    assert width(long) < width(short)
    assert long["max_goodput_rps_low"] == 6 and long["max_goodput_rps_high"] == 7  # just the bracket


def test_quantile_interval_follows_the_sample_count() -> None:
    (slo,) = parse_slo("ttft_p95<=1s")
    few, many = mm1_point(4, duration_s=30), mm1_point(4, duration_s=3000)
    lo_few, hi_few = interval(slo, few)  # type: ignore[misc]
    lo_many, hi_many = interval(slo, many)  # type: ignore[misc]
    p95 = many["metrics"]["ttft"]["p95"]
    assert lo_few <= lo_many <= p95 <= hi_many <= hi_few
    assert hi_many - lo_many < 0.2 * (hi_few - lo_few)
    # 30 s at 4 req/s (120 samples) cannot bound a p99 from above: the point's max stands in.
    (p99,) = parse_slo("ttft_p99<=1s")
    assert interval(p99, few)[1] == few["metrics"]["ttft"]["max"]  # type: ignore[index]


def test_points_past_saturation_breach_as_expected_and_are_named() -> None:
    plan = plan_of(mm1_sweep(RATES), "ttft_p95<=1s")
    past = [p for p in plan["points"] if p["saturated"]]
    assert [p["offered_rps"] for p in past] == [10, 12]
    assert all(not p["slos"]["ttft_p95<=1s"]["holds"] for p in past)
    assert any("past saturation" in n and "expected" in n for n in plan["notes"])


def test_points_past_the_knee_are_marked_as_such_not_as_saturated() -> None:
    # an engine whose latency rises smoothly: the knee (latency off its plateau) comes before saturation
    summary = mm1_sweep(RATES)
    for p in summary["sweep"]["points"]:
        p["saturated"] = False
    summary["sweep"]["knee"] = {"offered_rps": 9.0}
    plan = plan_of(summary, "ttft_p95<=1s")
    assert [p["offered_rps"] for p in plan["points"] if p["past_knee"]] == [9.5, 10, 12]
    assert not any(p["saturated"] for p in plan["points"])
    assert not any("past saturation" in n for n in plan["notes"])


def test_no_slo_breached_on_a_saturating_sweep_plans_at_capacity() -> None:
    plan = plan_of(mm1_sweep(RATES), "error_rate<=5%")
    assert plan["limiting_slo"] is None
    assert plan["max_goodput_rps"] == pytest.approx(10)
    assert plan["max_goodput_rps_high"] == pytest.approx(10)
    assert not plan["max_goodput_is_lower_bound"]
    assert "capacity" in plan["conclusion"]
    assert plan["bracket"][1] is None


def test_no_slo_breached_below_saturation_is_a_lower_bound() -> None:
    plan = plan_of(mm1_sweep([1, 2, 4]), "ttft_p95<=10s,error_rate<=1%", target_rps=40)
    assert plan["max_goodput_rps"] == pytest.approx(4)
    assert plan["max_goodput_rps_high"] is None
    assert plan["max_goodput_is_lower_bound"]
    assert "at least" in plan["conclusion"] and "sweep higher" in plan["conclusion"]
    assert plan["replicas"] == math.ceil(40 / (4 * 0.8)) and plan["replicas_low"] is None


def test_breached_at_the_lowest_point_says_the_maximum_is_below_it() -> None:
    plan = plan_of(mm1_sweep([4, 6, 8]), "ttft_p95<=300ms", target_rps=10, gpu_hour_cost=2.0)
    assert plan["max_goodput_rps"] is None
    assert plan["max_goodput_rps_high"] == pytest.approx(4)
    assert plan["limiting_slo"] == "ttft_p95<=300ms"
    assert plan["bracket"][0] is None and plan["bracket"][1]["offered_rps"] == 4
    assert plan["replicas"] is None and plan["replicas_low"] == math.ceil(10 / (4 * 0.8))
    assert plan["cost_per_1k_requests"] is None
    assert "lowest load" in plan["conclusion"] and "lower rates" in plan["conclusion"]


def test_replicas_and_cost_arithmetic() -> None:
    # itl_p99 = 20 + 4 ms per req/s reaches 40 ms at exactly 5 req/s, between the points at 4 and 6.
    summary = sweep_summary([mm1_point(r, itl_b_ms=4, images=2.0) for r in (2, 4, 6, 8)])
    plan = plan_of(
        summary,
        "itl_p99<=40ms",
        target_rps=100,
        headroom=0.2,
        gpu_hour_cost=2.0,
        gpus_per_replica=2,
    )
    assert plan["max_goodput_rps"] == pytest.approx(5.0)
    assert plan["replicas"] == 25  # 100 / (5 x 0.8) exactly: no rounding up past it
    assert (plan["replicas_low"], plan["replicas_high"]) == (
        math.ceil(100 / (plan["max_goodput_rps_high"] * 0.8)),
        math.ceil(100 / (plan["max_goodput_rps_low"] * 0.8)),
    )
    per_1k = 2.0 * 2 / (5.0 * 0.8 * 3600) * 1000
    assert plan["cost_per_1k_requests"] == pytest.approx(per_1k, rel=1e-5)
    assert plan["images_per_request"] == pytest.approx(2.0)
    assert plan["cost_per_1k_images"] == pytest.approx(per_1k / 2, rel=1e-5)
    text_only = sweep_summary([mm1_point(r, itl_b_ms=4, images=0.0) for r in (2, 4, 6, 8)])
    plan = plan_of(text_only, "itl_p99<=40ms", gpu_hour_cost=2.0)
    assert plan["cost_per_1k_requests"] is not None and plan["cost_per_1k_images"] is None
    assert plan["replicas"] is None  # no --target-rps


@pytest.mark.parametrize(("text", "value"), [("20%", 0.2), ("0.25", 0.25), ("0", 0.0), (" 5 % ", 0.05)])
def test_headroom_accepts_percent_or_fraction(text: str, value: float) -> None:
    assert parse_headroom(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["100%", "-5%", "1.5", "lots", ""])
def test_headroom_rejects_what_leaves_no_capacity(text: str) -> None:
    with pytest.raises(ValueError, match="--headroom"):
        parse_headroom(text)


def _single(point: dict, rate: float) -> dict:
    return {
        "schema": "eyechart/load-summary/1",
        "run": {"rate": rate, "users": 256, "model": "m"},
        **{k: v for k, v in point.items() if k not in ("offered_rps", "users", "valid", "saturated")},
        "gates": [{"name": "valid.samples", "kind": "validity", "passed": True}],
        "verdict": {"exit_code": 0, "passed": True},
    }


def test_single_point_that_holds_gives_a_lower_bound() -> None:
    plan = plan_of(_single(mm1_point(4), 4), "ttft_p95<=1s", target_rps=20)
    assert plan["mode"] == "single"
    assert plan["max_goodput_rps"] == pytest.approx(4)
    assert plan["max_goodput_is_lower_bound"] and plan["max_goodput_rps_high"] is None
    assert plan["conclusion"].startswith("one point: every SLO holds at 4 req/s")
    assert "at least 4 req/s" in plan["conclusion"]
    assert plan["points"][0]["offered_rps"] == 4 and plan["points"][0]["users"] is None
    assert any("sweep" in n for n in plan["notes"])


def test_single_point_that_breaches_gives_an_upper_bound() -> None:
    plan = plan_of(_single(mm1_point(8), 8), "ttft_p95<=1s")
    assert plan["max_goodput_rps"] is None
    assert plan["max_goodput_rps_high"] == pytest.approx(8)
    assert plan["conclusion"] == (
        "one point: ttft_p95<=1s is breached at 8 req/s; the maximum under the SLOs is at most 8 req/s"
    )


def test_invalid_points_are_left_out() -> None:
    summary = mm1_sweep(RATES)
    bad = summary["sweep"]["points"][3]  # 4 req/s: pretend the generator saturated there
    bad["valid"] = False
    bad["metrics"]["ttft"]["p95"] = 99_999.0
    plan = plan_of(summary, "ttft_p95<=1s")
    assert plan["points_valid"] == len(RATES) - 1
    assert plan["max_goodput_rps"] == pytest.approx(ttft_limit(10, 150, 1000), rel=0.03)
    assert any("invalid" in n and "4 req/s" in n for n in plan["notes"])


def test_no_valid_point_gives_no_plan() -> None:
    summary = mm1_sweep([1, 2])
    for p in summary["sweep"]["points"]:
        p["valid"] = False
    plan = plan_of(summary, "ttft_p95<=1s", target_rps=5, gpu_hour_cost=1.0)
    assert plan["points_valid"] == 0 and plan["max_goodput_rps"] is None and plan["replicas"] is None
    assert plan["conclusion"].startswith("no valid point")


def test_a_significant_breach_counts_even_when_higher_loads_hold_again() -> None:
    summary = mm1_sweep(RATES)
    ttft = summary["sweep"]["points"][2]["metrics"]["ttft"]  # 3 req/s: every quantile 3x (a GC pause?)
    ttft.update({k: v * 3 for k, v in ttft.items() if k not in ("unit", "count")})
    plan = plan_of(summary, "ttft_p95<=1s")
    assert [e["offered_rps"] for e in plan["bracket"]] == [2, 3]
    assert plan["max_goodput_rps"] < 3
    assert any("holds again" in n and "first breach" in n for n in plan["notes"])


def test_a_breach_within_sampling_error_that_later_points_contradict_is_noise() -> None:
    summary = mm1_sweep(RATES, duration_s=20)
    ttft = summary["sweep"]["points"][1]["metrics"]["ttft"]  # 2 req/s, 40 samples: p95 just over
    ttft.update(p95=1010.0, p99=1200.0, max=1300.0)
    plan = plan_of(summary, "ttft_p95<=1s")
    assert [e["offered_rps"] for e in plan["bracket"]] == [6, 7]
    assert plan["max_goodput_rps_low"] <= 1  # the range still counts the blip
    assert any("breached at 2 req/s offered, but within sampling error" in n for n in plan["notes"])


def test_points_are_ordered_by_load_whatever_order_the_sweep_ran_them() -> None:
    summary = mm1_sweep(RATES)
    summary["sweep"]["points"].reverse()
    summary["sweep"]["knee"] = None
    plan = plan_of(summary, "ttft_p95<=1s")
    assert [e["offered_rps"] for e in plan["bracket"]] == [6, 7]
    assert [p["offered_rps"] for p in plan["points"]] == RATES


def test_closed_loop_sweep_by_users() -> None:
    points = []
    for users, rate in ((1, 2.0), (2, 4.0), (4, 6.0), (8, 8.0)):
        p = mm1_point(rate)
        p["offered_rps"], p["users"] = None, users
        points.append(p)
    summary = sweep_summary(points)
    summary["sweep"]["mode"] = "users"
    plan = plan_of(summary, "ttft_p95<=1s")
    assert plan["mode"] == "users"
    assert [e["users"] for e in plan["bracket"]] == [4, 8]
    assert 6 <= plan["max_goodput_rps"] <= 8


def test_throughput_floors_do_not_limit_the_rate() -> None:
    plan = plan_of(mm1_sweep(RATES), "requests_per_s>=5,ttft_p95<=1s")
    assert plan["limiting_slo"] == "ttft_p95<=1s"
    assert [s["slo"] for s in plan["slos"]] == ["ttft_p95<=1s"]
    assert any("requests_per_s>=5 is ignored" in n for n in plan["notes"])


def test_max_throughput_counts_the_auto_probe_and_a_sweep_plan_says_how_to_confirm_it() -> None:
    summary = mm1_sweep([1, 2, 3, 4, 5, 6])  # open-loop points that never reached the maximum
    summary["sweep"]["probe_throughput_rps"] = 9.7  # rate=auto's closed loop saturated the target
    summary["run"] = {"base_url": "http://gpu-box:8000/v1", "workload": "ocr-documents"}
    plan = plan_of(summary, "ttft_p95<=1s", headroom=0.2)
    assert plan["max_throughput_rps"] == pytest.approx(9.7)
    rate = plan["max_goodput_rps"] * 0.8
    cmd = plan["confirm_command"]
    assert cmd.startswith("eyechart load --base-url http://gpu-box:8000/v1 --workload ocr-documents")
    assert f"--rate {rate:.3g} " in cmd and '--slo "ttft_p95<=1s"' in cmd
    assert any(cmd in n for n in plan["notes"])
    summary["run"]["embedded"] = True  # the target eyechart started itself has no address to give
    assert "--base-url" not in plan_of(summary, "ttft_p95<=1s")["confirm_command"]
    assert plan_of(mm1_point(3.0), "ttft_p95<=1s")["confirm_command"] is None  # one run: nothing to confirm


def test_slo_limits_are_read_at_the_rate_requests_arrived_not_the_rate_they_came_out() -> None:
    # near saturation a short window ends with its queue still filling: it completed 10 % less than
    # was sent to it, but its latencies answer to what arrived
    truth = ttft_limit(mu=10, base_ms=150, threshold_ms=1000)
    summary = mm1_sweep(RATES)
    for p in summary["sweep"]["points"]:
        p["sent_rps"] = p["offered_rps"]
        p["achieved_rps"] = 0.9 * min(p["offered_rps"], 10)
    plan = plan_of(summary, "ttft_p95<=1s")
    assert plan["max_goodput_rps"] == pytest.approx(truth, rel=0.03)
    below, above = plan["bracket"]
    assert (below["sent_rps"], above["sent_rps"]) == (6, 7) and below["achieved_rps"] == pytest.approx(5.4)
    # past saturation the arrival rate outruns the target: goodput never exceeds what it completed
    loose = plan_of(summary, "ttft_p95<=100s")
    assert loose["max_goodput_rps"] <= loose["max_throughput_rps"] == pytest.approx(9.0)
