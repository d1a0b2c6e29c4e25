"""Planner accuracy against the analytic truth, at several sweep point spacings and point lengths.

Run: ``PYTHONPATH=src:tests .venv/bin/python bench/bench_plan.py``. The synthetic target is an M/M/1 queue
behind a fixed prefill (tests/plan_curves.py): TTFT p95 <= T holds up to λ* = μ − ln 20 / (T − base)
exactly. For each spacing the sweep is measured ``TRIALS`` times with sampled latencies (one draw per
completed request), and the bench prints the median and worst error of max_goodput_rps against λ*, how
often the stated [low, high] range holds λ*, the range's median width relative to λ*, and how many
trials gave no estimate (the SLO breached already at the lowest point, by sampling noise). The same
sweep with exact quantiles ("exact") shows the interpolation's own bias, free of sampling noise.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from plan_curves import mm1_point, sweep_summary, ttft_limit

from eyechart.load.gates import parse_slo
from eyechart.plan.capacity import make_plan

MU, BASE_MS = 10.0, 150.0
THRESHOLDS_MS = (600.0, 1000.0, 3000.0)
TRIALS = 40


def spacings() -> dict[str, list[float]]:
    return {
        "4 linear 10-120%": [MU * f for f in (0.1, 0.45, 0.8, 1.2)],
        "6 linear 10-120%": [MU * (0.1 + 0.22 * i) for i in range(6)],
        "10 linear 10-120%": [MU * (0.1 + 0.1222 * i) for i in range(10)],
        "20 linear 10-120%": [MU * (0.1 + 0.0579 * i) for i in range(20)],
        "doubling 1,2,4,8,16": [1.0, 2.0, 4.0, 8.0, 16.0],
        "auto-like (dense near max)": [1.0, 3.0, 5.0, 6.5, 7.5, 8.25, 8.75, 9.25, 9.6, 10.5, 12.0],
    }


def run(rates: list[float], threshold: float, duration: float, rng: random.Random | None) -> dict:
    summary = sweep_summary(
        [mm1_point(r, mu=MU, base_ms=BASE_MS, duration_s=duration, rng=rng) for r in rates]
    )
    return make_plan(summary, parse_slo(f"ttft_p95<={threshold:g}ms"))


def main() -> None:
    t0 = time.perf_counter()
    print(f"M/M/1 target, mu = {MU:g} req/s, prefill {BASE_MS:g} ms; SLO ttft_p95 <= T; {TRIALS} trials each")
    header = (
        f"{'spacing':<28}{'T ms':>6}{'truth':>7}{'exact':>8}{'median err':>12}{'worst err':>11}"
        f"{'no est.':>9}{'in range':>10}{'range width':>13}"
    )
    for duration in (30.0, 120.0):
        print(f"\npoints of {duration:g} s each (about {duration * MU * 0.5:.0f} requests at half load)")
        print(header)
        for name, rates in spacings().items():
            for thr in THRESHOLDS_MS:
                truth = ttft_limit(MU, BASE_MS, thr)
                exact = run(rates, thr, duration, None)["max_goodput_rps"]
                errs, inside, widths, none = [], 0, [], 0
                rng = random.Random(7)
                for _ in range(TRIALS):
                    plan = run(rates, thr, duration, rng)
                    est, lo, hi = (
                        plan["max_goodput_rps"],
                        plan["max_goodput_rps_low"],
                        plan["max_goodput_rps_high"],
                    )
                    inside += lo <= truth <= (hi if hi is not None else float("inf"))
                    if est is None:  # breached already at the lowest point (by sampling noise)
                        none += 1
                    else:
                        errs.append(est / truth - 1)
                    if hi is not None:
                        widths.append((hi - lo) / truth)
                exact_err = f"{exact / truth - 1:+.1%}" if exact is not None else "none"
                worst = max(errs, key=abs) if errs else math.nan
                median = statistics.median(errs) if errs else math.nan
                width = f"{statistics.median(widths):.0%}" if widths else "open"
                print(
                    f"{name:<28}{thr:>6.0f}{truth:>7.2f}{exact_err:>8}{median:>+12.1%}"
                    f"{worst:>+11.1%}{none:>9}{inside / TRIALS:>10.0%}{width:>13}"
                )
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
