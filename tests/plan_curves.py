"""Synthetic load runs whose capacity answer is known in closed form (for the planner's tests and bench).

The target is an M/M/1 queue behind a fixed prefill time: TTFT = base + sojourn, and the sojourn time of
an M/M/1 queue at arrival rate λ and service rate μ is exponential with rate μ − λ, so its q-quantile is
base − ln(1 − q) / (μ − λ). ``ttft_p95 <= T`` therefore holds up to λ* = μ − ln 20 / (T − base) exactly.
ITL grows linearly with the rate served (a bigger decode batch per step): itl_p99 = a + b·min(λ, μ).
Past μ the queue grows through the window: TTFT takes the backlog, achieved throughput stays at μ.
"""

from __future__ import annotations

import math
import random
from typing import Any

QS = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def ttft_limit(mu: float, base_ms: float, threshold_ms: float, q: float = 0.95) -> float:
    """The true highest arrival rate with TTFT's q-quantile at or below ``threshold_ms``."""
    return mu + math.log(1 - q) / ((threshold_ms - base_ms) / 1000)


def itl_limit(a_ms: float, b_ms: float, threshold_ms: float) -> float:
    return (threshold_ms - a_ms) / b_ms


def _metric(unit: str, values: list[float] | None, exact: dict[str, float] | None, n: int) -> dict:
    if values is not None:
        v = sorted(values)
        n = len(v)

        def at(q: float) -> float:
            return v[min(n - 1, max(0, math.ceil(q * n) - 1))]

        return {"unit": unit, "count": n, "mean": sum(v) / n, "min": v[0],
                **{k: at(q) for k, q in QS.items()}, "max": v[-1]}  # fmt: skip
    assert exact is not None
    return {"unit": unit, "count": n, **exact}


def mm1_point(
    offered: float,
    *,
    mu: float = 10.0,
    base_ms: float = 150.0,
    itl_a_ms: float = 20.0,
    itl_b_ms: float = 3.0,
    duration_s: float = 60.0,
    images: float = 1.0,
    errors_past_saturation: float = 0.0,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """One sweep point at ``offered`` req/s; analytic quantiles, or sampled ones when ``rng`` is given."""
    achieved = min(offered, mu)
    completed = max(1, round(achieved * duration_s))
    saturated = offered >= mu
    sent = max(completed, round(offered * duration_s))
    failed = round(sent * errors_past_saturation) if saturated else 0
    backlog_ms = (offered - mu) / mu * duration_s * 1000 if saturated else 0.0
    slack = max(mu - offered, mu * 0.02)  # the queue's drain rate (floored at saturation)
    if rng is not None:
        ttft_values = [
            base_ms + rng.expovariate(slack) * 1000 + backlog_ms * rng.random() for _ in range(completed)
        ]
        ttft = _metric("ms", ttft_values, None, completed)
    else:

        def q_at(q: float) -> float:
            return base_ms - math.log(1 - q) / slack * 1000 + backlog_ms * q

        exact = {k: q_at(q) for k, q in QS.items()}
        exact |= {"mean": base_ms + 1000 / slack + backlog_ms / 2, "min": base_ms,
                  "max": q_at(1 - 1 / (completed + 1))}  # fmt: skip
        ttft = _metric("ms", None, exact, completed)
    itl_p99 = itl_a_ms + itl_b_ms * achieved
    itl = _metric("ms", None, {"mean": itl_p99 * 0.7, "min": itl_a_ms * 0.5, "p50": itl_p99 * 0.7,
                               "p90": itl_p99 * 0.9, "p95": itl_p99 * 0.95, "p99": itl_p99,
                               "max": itl_p99 * 1.3}, completed * 100)  # fmt: skip
    flat = {"mean": 1.0, "min": 1.0, "p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0}
    return {
        "offered_rps": offered,
        "users": None,
        "achieved_rps": achieved,
        "goodput_rps": achieved,
        "error_rate": failed / sent,
        "incomplete": sent - completed,
        "valid": True,
        "saturated": saturated,
        "duration_s": duration_s,
        "requests": {
            "offered": sent,
            "sent": sent,
            "completed": completed - failed,
            "failed": failed,
            "incomplete": sent - completed,
        },
        "metrics": {
            "ttft": ttft,
            "itl": itl,
            "tpot": dict(itl),
            "e2e": {**ttft, "p95": ttft["p95"] + 2000},
            "schedule_lag": _metric("ms", None, dict(flat), completed),
            "images": _metric("images", None, dict.fromkeys(flat, images), completed),
        },
        "throughput": {
            "requests_per_s": achieved,
            "output_tokens_per_s": achieved * 100,
            "total_tokens_per_s": achieved * 900,
            "images_per_s": achieved * images,
        },
        "errors": {"total": failed, "rate": failed / sent, "by_class": {"5xx": failed}},
        "goodput": {"requests_per_s": achieved, "fraction": 1.0},
    }


def sweep_summary(points: list[dict[str, Any]], *, knee: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sweep run's summary.json: the run's own fields plus ``sweep``."""
    top = dict(points[0])
    return {
        "schema": "eyechart/load-summary/2",
        "run": {"base_url": "http://127.0.0.1:8000/v1", "model": "sim-vlm", "workload": "captioning-mixed"},
        **{k: top[k] for k in ("duration_s", "requests", "metrics", "throughput", "errors", "goodput")},
        "gates": [],
        "sweep": {"mode": "rate", "points": points, "knee": knee},
    }


def mm1_sweep(rates: list[float], **kw: Any) -> dict[str, Any]:
    points = [mm1_point(r, **kw) for r in rates]
    below = [i for i, p in enumerate(points) if not p["saturated"]]
    knee = {"index": below[-1], "offered_rps": rates[below[-1]]} if below else None
    return sweep_summary(points, knee=knee)
