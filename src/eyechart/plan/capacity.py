"""The planner: from a load run's points to the highest rate at which every SLO holds, with its uncertainty.

Why bracket and interpolate instead of taking the best passing point: sweep points are few (each costs a
measured window), so the answer lies between two of them. The plan names those two points and says how
wide the gap and the sampling error leave the answer, so a reader can tell a precise plan from a guess.
Everything here is pure (a summary in, a plan dict out): tests check it against curves with a known answer.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eyechart.load.baseline import CONFIDENCE, quantile_ci_ranks
from eyechart.load.gates import THROUGHPUT, Slo

PLAN_SCHEMA_ID = "eyechart/plan/1"
SUMMARY_SCHEMA_PREFIX = "eyechart/load-summary/"
_HOLDS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}  # fmt: skip
_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
_KNOTS = (("min", 0.0), ("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))

METHOD = (
    "Only valid points count, ordered by offered load (or users). For each SLO, the first point where it "
    "is breached and the last point before it where it holds bracket its limit (a breach within sampling "
    "error is passed over only when a higher load holds beyond sampling error); the limit is the "
    "arrival rate (requests sent per second in a point's window, what its latencies answer to; a run "
    "without that figure: its request rate) at "
    "which the SLO's observed value reaches its threshold, interpolated linearly between those two points "
    "(on a convex latency curve this errs low, on the safe side), and never above max_throughput_rps. "
    "max_goodput_rps is the lowest limit "
    "over the SLOs (limiting_slo); when no SLO is breached it is the highest rate measured, a lower bound "
    "unless the target saturated. max_goodput_rps_low/_high widen the bracket by sampling error: low is "
    "the last point before an SLO is breached at the pessimistic end of its 95 % interval, high the first "
    "point where one is breached even at the optimistic end (unknown when none is). A quantile's 95 % "
    "interval is the binomial order-statistic interval for the point's sample count, read off the "
    "point's own min/p50/p90/p95/p99/max, interpolated on the scale -ln(1 - p) where an exponential tail "
    "is straight (the max or min stands in where the "
    "count is too small to bound it); means, maxima and error or goodput shares are taken as observed. "
    "replicas = ceil(target_rps / (max_goodput_rps x (1 - headroom))), its range from the high/low "
    "bounds; cost per request is gpu_hour_cost x gpus_per_replica / (max_goodput_rps x (1 - headroom) x "
    "3600): one replica running at its planned load."
)


class NotALoadRun(ValueError):
    """The folder holds no load run summary (usage error, exit code 2)."""


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``summary.json``; raises ``NotALoadRun`` with a one-line reason."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise NotALoadRun(f"{run_dir} is not a folder (give a load run folder, e.g. reports/<time>-load)")
    if not path.is_file():
        raise NotALoadRun(f"{run_dir} is not a load run: it has no summary.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NotALoadRun(f"{path} is not readable JSON: {exc}") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or not isinstance(schema, str)
        or not schema.startswith(SUMMARY_SCHEMA_PREFIX)
    ):
        raise NotALoadRun(f"{path} is not a load run summary (schema {schema!r})")
    return doc


@dataclass(frozen=True)
class Point:
    """One measured load level: a sweep point, or a whole single-point run."""

    index: int  # position in the run's sweep.points (0 for a single run)
    offered_rps: float | None
    users: int | None
    rate: float  # arrival rate (sent/s in the window): the x axis of every SLO curve
    completed_rps: float  # what the target completed per second in the window
    sent: int
    valid: bool
    saturated: bool
    doc: Mapping[str, Any]
    past_knee: bool = False  # above the sweep's knee: latency has left its plateau, or the load outran it

    @property
    def load(self) -> float:
        if self.offered_rps is not None:
            return self.offered_rps
        if self.users is not None:
            return float(self.users)
        return self.rate

    @property
    def label(self) -> str:
        if self.offered_rps is not None:
            return f"{self.offered_rps:.4g} req/s offered"
        if self.users is not None:
            return f"{self.users} users"
        return f"{self.rate:.4g} req/s"

    def ref(self, slo: Slo | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "offered_rps": _r(self.offered_rps),
            "users": self.users,
            "sent_rps": _r(self.rate),
            "achieved_rps": _r(self.completed_rps),
        }
        if slo is not None:
            out["observed"] = _r(observe(slo, self.doc))
        return out


def points_of(summary: Mapping[str, Any]) -> tuple[str, list[Point], dict[str, Any] | None]:
    """(mode, points ordered by load, knee) from a sweep run, or the run itself as its one point."""
    sweep = summary.get("sweep")
    if isinstance(sweep, Mapping) and sweep.get("points"):
        knee = sweep.get("knee") if isinstance(sweep.get("knee"), Mapping) else None
        raw = [p for p in sweep["points"] if isinstance(p, Mapping)]
        points = [_point(i, p, {}) for i, p in enumerate(raw)]
        if knee:
            points = [_past_knee(p, knee) for p in points]
        mode = str(sweep.get("mode") or ("users" if points and points[0].users is not None else "rate"))
        return mode, sorted(points, key=lambda p: (p.load, p.rate)), dict(knee) if knee else None
    return "single", [_point(0, summary, summary.get("run") or {})], None


def _point(index: int, p: Mapping[str, Any], run: Mapping[str, Any]) -> Point:
    tp = p.get("throughput") or {}
    req = p.get("requests") or {}
    completed = _num(tp.get("requests_per_s"))
    achieved = _num(p.get("achieved_rps"))
    if achieved is not None:
        completed = achieved
    # The latencies a point measured answer to the rate requests arrived at, not to the rate they came
    # out: near saturation a window ends with its queue still filling, and plotting those latencies
    # at the completion rate would pull every SLO limit low (by 6-10 % on the image workload).
    sent = _num(p.get("sent_rps"))
    rate = sent if sent is not None else (completed or 0.0)
    valid = p.get("valid")
    if valid is None:  # a whole run: valid unless a validity gate failed
        gates = p.get("gates") or []
        valid = not any(g.get("kind") == "validity" and not g.get("passed") for g in gates)
        valid = valid and (p.get("verdict") or {}).get("exit_code") != 4
    offered = _num(p.get("offered_rps", run.get("rate")))
    users = p.get("users", run.get("users"))
    return Point(
        index=index,
        offered_rps=offered,
        users=int(users) if isinstance(users, int | float) and offered is None else None,
        rate=rate,
        completed_rps=completed if completed is not None else rate,
        sent=int(req.get("sent", req.get("total", 0)) or 0),
        valid=bool(valid),
        saturated=bool(p.get("saturated")),
        doc=p,
    )


def _past_knee(p: Point, knee: Mapping[str, Any]) -> Point:
    """Mark a point beyond the sweep's knee (it need not be saturated: latency may only have left its
    low-load plateau, as it does smoothly on an engine whose batches slow each step)."""
    beyond = False
    if isinstance(knee.get("index"), int):
        beyond = p.index > knee["index"]
    elif p.offered_rps is not None and _num(knee.get("offered_rps")) is not None:
        beyond = p.offered_rps > float(knee["offered_rps"])
    elif p.users is not None and _num(knee.get("users")) is not None:
        beyond = p.users > float(knee["users"])
    return Point(**{**p.__dict__, "past_knee": beyond}) if beyond else p


def observe(slo: Slo, doc: Mapping[str, Any]) -> float | None:
    """``Slo.observe`` that answers None (not judged) when the point lacks the metric."""
    try:
        v = slo.observe(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return float(v) if v is not None and math.isfinite(float(v)) else None


def interval(slo: Slo, doc: Mapping[str, Any]) -> tuple[float, float] | None:
    """The 95 % sampling interval of a quantile SLO's observed value at one point (others: the value).

    Where the sample count is too small for an order-statistic bound, the point's min or max stands in.
    """
    v = observe(slo, doc)
    if v is None:
        return None
    if slo.stat not in _QUANTILES:
        return (v, v)  # means, maxima, shares: no spread in the summary to judge them by
    m = doc["metrics"][slo.metric]
    n, q = int(m.get("count") or 0), _QUANTILES[slo.stat]
    lo_rank, hi_rank = quantile_ci_ranks(n, q, CONFIDENCE)
    lo = _quantile_at(m, (lo_rank - 0.5) / n if lo_rank else 0.0)
    hi = _quantile_at(m, (hi_rank - 0.5) / n if hi_rank else 1.0)
    return (min(v, lo if lo is not None else v), max(v, hi if hi is not None else v))


def too_few_for_quantile(slo: Slo, doc: Mapping[str, Any]) -> int | None:
    """The sample count when it cannot bound the SLO's quantile from above at 95 %, else None."""
    if slo.stat not in _QUANTILES:
        return None
    try:
        n = int(doc["metrics"][slo.metric].get("count") or 0)
    except (KeyError, TypeError, AttributeError):
        return None
    return n if n and quantile_ci_ranks(n, _QUANTILES[slo.stat], CONFIDENCE)[1] is None else None


def _quantile_at(m: Mapping[str, Any], p: float) -> float | None:
    """The value at quantile ``p``, interpolated between the point's known quantiles on the scale
    −ln(1 − p), where an exponential tail is a straight line (latency tails are about that shape;
    plain linear interpolation between p50 and p90 overstates the quantiles in between). The maximum
    sits at p = n / (n + 1), where the largest of n samples falls on average."""
    n = int(m.get("count") or 0)
    top = n / (n + 1) if n else 0.99
    knots = [
        (-math.log1p(-(top if k == "max" else min(q, top))), float(m[k]))
        for k, q in _KNOTS
        if _num(m.get(k)) is not None
    ]
    if not knots:
        return None
    t = -math.log1p(-min(p, top))
    if t <= knots[0][0]:
        return knots[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(knots):
        if t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
    return knots[-1][1]


@dataclass
class SloLimit:
    """Where one SLO stops holding along the sweep."""

    slo: Slo
    observed: list[float | None]
    intervals: list[tuple[float, float] | None]
    first_breach: int | None  # index into the valid points; None: holds at every one
    last_hold: int | None  # the last point before the first breach where it holds (the bracket's low end)
    estimate: float | None  # interpolated limit in req/s; None: breached already at the lowest point
    low: float
    high: float | None  # None: no point breaches it even at the optimistic end of its interval
    holds_again: list[int]  # points after the first breach where it holds again (noise or warm-up)
    blips: list[int]  # breaches before it within sampling error that later points contradict

    def holds(self, i: int) -> bool:
        v = self.observed[i]
        return v is not None and _HOLDS[self.slo.op](v, self.slo.threshold)


def analyse(slo: Slo, points: Sequence[Point]) -> SloLimit:
    xs = [p.rate for p in points]
    observed = [observe(slo, p.doc) for p in points]
    intervals = [interval(slo, p.doc) for p in points]
    upper_is_bad = slo.op in ("<=", "<")
    pess = [None if iv is None else iv[1] if upper_is_bad else iv[0] for iv in intervals]
    opti = [None if iv is None else iv[0] if upper_is_bad else iv[1] for iv in intervals]
    # A breach within sampling error that a higher load contradicts beyond sampling error (the SLO holds
    # there even at the pessimistic end) is noise, not the limit: latency does not fall as load rises.
    # Near the limit no point holds that clearly, so there the first breach stands (the safe side).
    noise = [
        v is not None and not _holds(slo, v) and _holds(slo, o) and any(_holds(slo, w) for w in pess[i:])
        for i, (v, o) in enumerate(zip(observed, opti, strict=True))
    ]
    k, below, estimate = _crossing(slo, xs, observed, skip=noise)
    k_pess, _, _ = _crossing(slo, xs, pess)
    k_opti, _, _ = _crossing(slo, xs, opti, optimistic=True)
    low = max(xs if k_pess is None else xs[:k_pess], default=0.0)
    high = xs[k_opti] if k_opti is not None else None
    holds_again = []
    if k is not None:
        holds_again = [i for i in range(k + 1, len(points)) if _holds(slo, observed[i])]
    blips = [i for i in range(len(points) if k is None else k) if noise[i]]
    return SloLimit(slo, observed, intervals, k, below, estimate, low, high, holds_again, blips)


def _holds(slo: Slo, v: float | None, optimistic: bool = False) -> bool:
    if v is None:
        return optimistic  # not judged: only the optimistic reading lets it pass
    return _HOLDS[slo.op](v, slo.threshold)


def _crossing(
    slo: Slo,
    xs: Sequence[float],
    values: Sequence[float | None],
    optimistic: bool = False,
    skip: Sequence[bool] = (),
) -> tuple[int | None, int | None, float | None]:
    """(first point where the SLO is breached, the last point before it where it holds, the rate where
    its value reaches the threshold between them); breaches flagged in ``skip`` do not count."""
    below = None
    for k, v in enumerate(values):
        if _holds(slo, v, optimistic):
            below = k
            continue
        if k < len(skip) and skip[k]:
            continue
        if below is None:
            return k, None, None
        a, xa, xb = values[below], xs[below], xs[k]
        if v is None or a is None or not math.isfinite(v) or v == a or xb <= xa:
            return k, below, xa  # nothing to interpolate on (or throughput fell): the last rate that held
        t = min(max((slo.threshold - a) / (v - a), 0.0), 1.0)
        return k, below, xa + t * (xb - xa)
    return None, below, None


def parse_headroom(text: str) -> float:
    """``20%`` or ``0.2`` → 0.2; raises ValueError with what is accepted."""
    s = text.strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"--headroom {text!r}: give a percentage (20%) or a fraction (0.2)") from None
    if not 0 <= value < 1:
        raise ValueError(f"--headroom {text!r}: must be at least 0% and below 100%")
    return value


def make_plan(
    summary: Mapping[str, Any],
    slos: Sequence[Slo],
    *,
    target_rps: float | None = None,
    headroom: float = 0.2,
    gpu_hour_cost: float | None = None,
    gpus_per_replica: int = 1,
) -> dict[str, Any]:
    """The plan document (what ``plan.json`` holds) for a load run's summary."""
    mode, all_points, knee = points_of(summary)
    points = [p for p in all_points if p.valid]
    planning = [s for s in slos if not _is_floor(s)]
    notes = [
        f"{s.text} is ignored: a throughput floor judges one run, it does not limit the rate"
        for s in slos
        if _is_floor(s)
    ]
    invalid = [p for p in all_points if not p.valid]
    if invalid:
        notes.append(
            f"{len(invalid)} invalid point(s) left out ({', '.join(p.label for p in invalid)}): "
            "their numbers mean nothing"
        )
    limits = [analyse(s, points) for s in planning]
    max_throughput = max((p.completed_rps for p in points), default=None)
    probed = _num((summary.get("sweep") or {}).get("probe_throughput_rps"))
    if probed is not None and points:  # rate=auto's closed-loop probe: the target saturated on purpose
        max_throughput = max(max_throughput or 0.0, probed)
    saturated_reached = any(p.saturated for p in points)

    binding = [lim for lim in limits if lim.first_breach is not None]
    limiting = min(binding, key=_limit_key, default=None)
    estimate: float | None
    if not points:
        estimate, low, high = None, 0.0, None
    else:
        # No SLO breached: the highest rate measured, a lower bound unless the target saturated there.
        estimate = limiting.estimate if limiting is not None else max(p.rate for p in points)
        if estimate is not None and max_throughput is not None:
            estimate = min(estimate, max_throughput)  # no goodput beyond what the target completes
        low = min([lim.low for lim in limits] + ([estimate] if estimate is not None else []))
        high = _min_known([lim.high for lim in limits])
        if high is None and saturated_reached:
            high = max(estimate or 0.0, max_throughput or 0.0)
        if high is not None and estimate is not None:
            high = max(high, estimate)
        if high is not None and max_throughput is not None:
            high = min(high, max(max_throughput, estimate or 0.0))

    bracket: list[dict[str, Any] | None] | None = None
    if limiting is not None and limiting.first_breach is not None:
        bracket = _bracket(limiting, points)
    elif points:
        bracket = [max(points, key=lambda p: p.rate).ref(), None]

    plan: dict[str, Any] = {
        "schema": PLAN_SCHEMA_ID,
        "run": _run_info(summary),
        "mode": mode,
        "slo": [s.text for s in slos],
        "points_total": len(all_points),
        "points_valid": len(points),
        "max_throughput_rps": _r(max_throughput),
        "max_goodput_rps": _r(estimate),
        "max_goodput_rps_low": _r(low),
        "max_goodput_rps_high": _r(high),
        "max_goodput_is_lower_bound": bool(points) and limiting is None and not saturated_reached,
        "limiting_slo": limiting.slo.text if limiting is not None else None,
        "bracket": bracket,
        "knee": knee,
        "confidence": CONFIDENCE,
        "method": METHOD,
    }
    plan.update(_capacity(plan, points, target_rps, headroom, gpu_hour_cost, gpus_per_replica))
    plan["slos"] = [_slo_doc(lim, points) for lim in limits]
    plan["points"] = [_point_doc(p, limits, points) for p in all_points]
    notes += _notes(limits, points, mode)
    plan["conclusion"] = _conclusion(plan, points, limiting, mode, saturated_reached)
    plan["confirm_command"] = _confirm_command(summary, slos, plan, headroom) if mode != "single" else None
    if plan["confirm_command"]:
        notes.append(
            "sweep points are short and each starts from an idle target, so near the limit a tail SLO "
            "(p95, p99) can look better than it will in hours of traffic: confirm the planned "
            f"per-replica rate with one long run: {plan['confirm_command']}"
        )
    plan["notes"] = notes
    return plan


def _confirm_command(
    summary: Mapping[str, Any], slos: Sequence[Slo], plan: Mapping[str, Any], headroom: float
) -> str | None:
    """One long open-loop run at the planned per-replica rate, under the same SLOs."""
    if not plan.get("max_goodput_rps"):
        return None
    run = summary.get("run") or {}
    rate = plan["max_goodput_rps"] * (1 - headroom)
    target = (
        "" if run.get("embedded") else f" --base-url {run.get('base_url')}" if run.get("base_url") else ""
    )
    workload = f" --workload {run['workload']}" if run.get("workload") else ""
    slo = ",".join(s.text for s in slos)
    return (
        f"eyechart load{target}{workload} --rate {rate:.3g} --arrival poisson --warmup 1m --duration 10m "
        f'--slo "{slo}"'
    )


def _is_floor(s: Slo) -> bool:
    return s.metric in THROUGHPUT or s.name == "goodput_per_s"


def _limit_key(lim: SloLimit) -> tuple[float, float]:
    # Breached at the lowest point (no estimate) binds hardest; ties go to the earlier breach.
    return (lim.estimate if lim.estimate is not None else -1.0, float(lim.first_breach or 0))


def _min_known(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _capacity(
    plan: Mapping[str, Any],
    points: Sequence[Point],
    target_rps: float | None,
    headroom: float,
    gpu_hour_cost: float | None,
    gpus_per_replica: int,
) -> dict[str, Any]:
    est, low, high = plan["max_goodput_rps"], plan["max_goodput_rps_low"], plan["max_goodput_rps_high"]
    usable = 1 - headroom

    def replicas(rate: float | None) -> int | None:
        if target_rps is None or not rate:
            return None
        return max(1, math.ceil(target_rps / (rate * usable) - 1e-9))

    images = _images_per_request(points)
    per_1k = None
    if gpu_hour_cost is not None and est:
        per_1k = gpu_hour_cost * gpus_per_replica / (est * usable * 3600) * 1000
    return {
        "target_rps": target_rps,
        "headroom": headroom,
        "replicas": replicas(est),
        "replicas_low": replicas(high),
        "replicas_high": replicas(low),
        "gpu_hour_cost": gpu_hour_cost,
        "gpus_per_replica": gpus_per_replica,
        "images_per_request": _r(images),
        "cost_per_1k_requests": _r(per_1k),
        "cost_per_1k_images": _r(per_1k / images) if per_1k is not None and images else None,
    }


def _images_per_request(points: Sequence[Point]) -> float | None:
    total = weight = 0.0
    for p in points:
        m = (p.doc.get("metrics") or {}).get("images") or {}
        tp = p.doc.get("throughput") or {}
        if _num(m.get("mean")) is not None and m.get("count"):
            per = float(m["mean"])
        elif _num(tp.get("images_per_s")) is not None and _num(tp.get("requests_per_s")):
            per = float(tp["images_per_s"]) / float(tp["requests_per_s"])
        else:
            continue
        w = max(p.completed_rps, 1e-9)
        total, weight = total + per * w, weight + w
    return total / weight if weight else None


def _run_info(summary: Mapping[str, Any]) -> dict[str, Any]:
    run = summary.get("run") or {}
    keep = ("target", "base_url", "model", "workload", "load_model", "arrival", "started_at")
    return {k: run[k] for k in keep if isinstance(run.get(k), str | int | float)}


def _slo_doc(lim: SloLimit, points: Sequence[Point]) -> dict[str, Any]:
    k = lim.first_breach
    return {
        "slo": lim.slo.text,
        "name": lim.slo.name,
        "op": lim.slo.op,
        "threshold": lim.slo.threshold,
        "unit": lim.slo.unit,
        "limit_rps": _r(lim.estimate),
        "limit_rps_low": _r(lim.low),
        "limit_rps_high": _r(lim.high),
        "breached": k is not None,
        "bracket": None if k is None else _bracket(lim, points),
    }


def _bracket(lim: SloLimit, points: Sequence[Point]) -> list[dict[str, Any] | None]:
    """[last point where the SLO holds, first point where it is breached]."""
    assert lim.first_breach is not None
    below = None if lim.last_hold is None else points[lim.last_hold].ref(lim.slo)
    return [below, points[lim.first_breach].ref(lim.slo)]


def _point_doc(p: Point, limits: Sequence[SloLimit], valid: Sequence[Point]) -> dict[str, Any]:
    i = next((j for j, q in enumerate(valid) if q is p), None)
    slos: dict[str, dict[str, Any]] = {}
    for lim in limits:
        if i is None:
            v = observe(lim.slo, p.doc)
            slos[lim.slo.text] = {"observed": _r(v), "interval": None, "holds": _holds(lim.slo, v)}
            continue
        iv = lim.intervals[i]
        slos[lim.slo.text] = {
            "observed": _r(lim.observed[i]),
            "interval": None if iv is None else [_r(iv[0]), _r(iv[1])],
            "holds": lim.holds(i),
        }
    return {
        **p.ref(),
        "completed_rps": _r(p.completed_rps),
        "sent": p.sent,
        "valid": p.valid,
        "saturated": p.saturated,
        "past_knee": p.past_knee,
        "slos": slos,
    }


def _notes(limits: Sequence[SloLimit], points: Sequence[Point], mode: str) -> list[str]:
    notes = []
    past = [p for p in points if p.saturated]
    if past:
        breached = [p for p in past if any(lim.observed and not lim.holds(points.index(p)) for lim in limits)]
        notes.append(
            f"{len(past)} point(s) past saturation ({', '.join(p.label for p in past)})"
            + (f"; {len(breached)} breach an SLO" if breached else "")
            + ": an over-saturated target is expected to breach its SLOs; these points bound the maximum "
            "from above and never fail the plan"
        )
    for lim in limits:
        if lim.holds_again:
            again = ", ".join(points[i].label for i in lim.holds_again)
            notes.append(
                f"{lim.slo.text} holds again at {again} after its first breach at "
                f"{points[lim.first_breach or 0].label}: noise at these sample counts or a warm-up "
                "effect; the plan uses the first breach"
            )
        if lim.blips:
            blips = ", ".join(points[i].label for i in lim.blips)
            notes.append(
                f"{lim.slo.text} is breached at {blips}, but within sampling error and it holds again at "
                "higher load: taken as noise, not the limit (the low end of the range still counts it)"
            )
        few = [n for p in points if (n := too_few_for_quantile(lim.slo, p.doc)) is not None]
        if few:
            notes.append(
                f"{lim.slo.text}: {len(few)} point(s) have too few samples (as few as {min(few)}) to bound "
                f"{lim.slo.stat} from above at {CONFIDENCE:.0%} confidence; their largest value stands in, "
                "so the low end of the range is optimistic there; longer points narrow it"
            )
        if lim.slo.metric in ("error_rate", "goodput") and lim.slo.unit == "fraction" and points:
            allowed = lim.slo.threshold if lim.slo.metric == "error_rate" else 1 - lim.slo.threshold
            need = math.ceil(3 / allowed) if allowed > 0 else None
            n = min(p.sent for p in points)
            if need is not None and n < need:
                notes.append(
                    f"{lim.slo.text}: a point with {n} requests cannot show this at {CONFIDENCE:.0%} "
                    f"confidence even with no failures (about {need} are needed: the rule of three); "
                    "it is judged as observed"
                )
    if mode == "single" and points:
        notes.append(
            "one point cannot show where the SLOs stop holding: a sweep (eyechart load --sweep rate=auto) "
            "finds the maximum"
        )
    return notes


def _conclusion(
    plan: Mapping[str, Any],
    points: Sequence[Point],
    limiting: SloLimit | None,
    mode: str,
    saturated: bool,
) -> str:
    if not points:
        return "no valid point: this run cannot carry a plan (see the notes)"
    est, low, high = plan["max_goodput_rps"], plan["max_goodput_rps_low"], plan["max_goodput_rps_high"]
    lowest = points[0]
    if mode == "single":
        if limiting is None and saturated:
            return (
                f"one point: every SLO holds at {_rps(lowest.rate)} and the target was saturated there: "
                "that is about its maximum"
            )
        if limiting is None:
            return (
                f"one point: every SLO holds at {_rps(lowest.rate)}; the maximum is at least "
                f"{_rps(lowest.rate)}"
            )
        return (
            f"one point: {limiting.slo.text} is breached at {_rps(lowest.rate)}; the maximum under the "
            f"SLOs is at most {_rps(lowest.rate)}"
        )
    if limiting is not None and est is None:
        return (
            f"{limiting.slo.text} is breached already at the lowest load measured ({lowest.label}, "
            f"{_rps(lowest.rate)}): the maximum under the SLOs is below that; sweep lower rates"
        )
    span = f"between {_rps(low)} and {_rps(high)}" if high is not None else f"at least {_rps(low)}"
    if limiting is not None:
        return f"max goodput ≈ {_rps(est)} ({span}), limited by {limiting.slo.text}"
    if saturated:
        return (
            f"every SLO holds up to the target's maximum throughput: max goodput ≈ {_rps(est)} ({span}); "
            "capacity, not latency, is the limit"
        )
    return (
        f"every SLO holds up to {_rps(est)}, the highest load measured: the maximum is at least that; "
        "sweep higher rates to find it"
    )


def _rps(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g} req/s"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _r(x: float | None) -> float | None:
    """Six significant digits: plan.json stays readable; the inputs carry no more precision."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")
