"""Sweeps: several load levels in one run, each an ordinary load run, and the knee between them.

A sweep is a layer above single runs: every point is a normal run (Locust child, gates, its own
``points/NN-<label>/`` folder with summary.json, records and report), run one after the other against one
started target, each drained before the next starts. This module chooses the points (a list, or ``auto``),
stops early when the target is clearly over-saturated or a cost cap is reached, finds the knee and writes
the sweep's own ``summary.json`` (``sweep.points[]`` + ``sweep.knee``), which ``eyechart plan`` reads.

``rate=auto``: a short closed-loop point (enough users to keep every slot busy) measures the maximum
throughput the target sustains; then open-loop points from a quarter of it to just past it, denser near
it, where the knee and SLO limits lie. With ``--max-rate`` the probe is an open-loop point at that rate
instead, so a production target never sees more than the cap.

Every point replays the same arrival draw (``--seed``) scaled to its rate: common random numbers, so
the differences between points come from the load, not from the draw, and the curve the planner
interpolates is smooth where its SLO crossings lie. (Drawing per point was tried and measured no more
accurate: on the image workload, 10 simulated sweeps each way put the planner within 10 % of the
truth about as often.)

Every point starts from an idle target, so each has a warmup (default 10 s) in which its queue fills
before the measured window, and a measured window long enough to offer twice the requests the
validity gate needs (``--min-requests``, default 20): a low-rate point with a dozen samples says
nothing about a p95 and fails that gate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from eyechart.exitcodes import ExitCode
from eyechart.load.recordfile import read_records

Mode = Literal["rate", "users"]

AUTO_FRACTIONS = (0.25, 0.5, 0.7, 0.8, 0.87, 0.93, 1.0, 1.15, 1.4)
"""``rate=auto``: open-loop points as shares of the measured maximum throughput, denser near it."""
KEEPS_UP = 0.95  # a point keeps up when it completes this share of what it sent (or offered), in-flight aside
PLATEAU = (
    1.5  # latency has left its low-load plateau when e2e p50 exceeds this multiple of the lowest point's
)
CLEARLY_OVER = 0.8  # a point completing under this share of its offered load is clearly over-saturated
EXPLODED = 3.0  # with not keeping up: latency this many times the lowest point's is clearly past it
PROBE_USERS = 64  # rate=auto's closed-loop probe, unless --users says otherwise
POINT_SAMPLES = 40  # a rate point's measured window offers at least this many requests (2x --min-requests)
POINT_DURATION_S = 30.0  # a point's measured window unless --duration says otherwise
POINT_WARMUP_S = 10.0  # a point's warmup unless --warmup says otherwise

KNEE_DEFINITION = (
    f"The knee is the highest-load valid point, below the first saturated one, that keeps up (completes at "
    f"least {KEEPS_UP:.0%} of the requests it sent per second, counting as done the requests a stable "
    f"target still has in flight at the window's end, sent x the lowest point's e2e p50 by Little's law; "
    f"for a users sweep: its throughput still "
    f"grows with users) and whose e2e p50 has not left its low-load plateau (at most {PLATEAU:g}x the "
    f"lowest point's). A point is saturated when it does not keep up and no higher load kept up at a "
    f"higher completion rate. Points past the knee are expected to "
    f"breach SLOs: they bound the maximum from above and do not fail the run. rate=auto measures the "
    f"maximum throughput with a closed-loop point first, then offers "
    f"{', '.join(f'{f:g}' for f in AUTO_FRACTIONS)} of it, and stops early once a point is clearly "
    f"over-saturated (only at or above the measured maximum): it completes under {CLEARLY_OVER:.0%} of "
    f"what it sent, or it and the one before "
    f"did not keep up, or it did not keep up and its e2e p50 is over {EXPLODED:g}x the lowest point's."
)
_METRICS = ("ttft", "ttft_sched", "itl", "tpot", "e2e", "schedule_lag")


class SweepError(ValueError):
    """A --sweep that cannot be run (usage error)."""


@dataclass(frozen=True)
class SweepSpec:
    mode: Mode
    values: tuple[float, ...] | None  # None: rate=auto

    @property
    def text(self) -> str:
        vals = "auto" if self.values is None else ",".join(f"{v:g}" for v in self.values)
        return f"{self.mode}={vals}"


def parse_sweep(text: str) -> SweepSpec:
    """``rate=auto``, ``rate=1,2,4,8`` or ``users=1,2,4,8``."""
    name, _, rest = text.partition("=")
    mode: Mode = "users" if name.strip() == "users" else "rate"
    if name.strip() not in ("rate", "users") or not rest.strip():
        raise SweepError(f"--sweep {text!r}: give rate=auto, rate=1,2,4 or users=1,2,4")
    if rest.strip() == "auto":
        if mode != "rate":
            raise SweepError("--sweep users=auto is not supported: give users=1,2,4,8 or rate=auto")
        return SweepSpec("rate", None)
    try:
        values = tuple(sorted({float(v) for v in rest.split(",") if v.strip()}))
    except ValueError:
        raise SweepError(f"--sweep {text!r}: values must be numbers, e.g. {mode}=1,2,4") from None
    if not values or values[0] <= 0 or not all(math.isfinite(v) for v in values):
        raise SweepError(f"--sweep {text!r}: values must be positive")
    if mode == "users" and any(v != int(v) for v in values):
        raise SweepError(f"--sweep {text!r}: users must be whole numbers")
    return SweepSpec(mode, values)


@dataclass(frozen=True)
class Caps:
    """Safety limits for a production target: none of them is ever exceeded by a point that starts."""

    max_rate: float | None = None  # no offered rate above this; users sweeps stop once achieved passes it
    max_requests: int | None = None  # requests sent by the whole sweep
    max_tokens_total: int | None = (
        None  # prompt + completion tokens of the whole sweep (checked between points)
    )


@dataclass(frozen=True)
class PointLoad:
    """What one point runs: open loop at ``rate`` or closed loop with ``users``; ``requests`` caps it."""

    label: str
    rate: float | None = None
    users: int | None = None
    requests: int | None = None
    duration_s: float | None = None  # the measured window (None: the run's own --duration/--requests)
    probe: bool = False  # rate=auto's saturation probe: measured, but not a sweep point


RunPoint = Callable[[PointLoad, Path, str], int]
"""(load, point folder, progress prefix) -> the point's exit code; the point writes its summary.json there."""


@dataclass
class Sweep:
    spec: SweepSpec
    caps: Caps = field(default_factory=Caps)
    probe_users: int = PROBE_USERS
    duration_s: float | None = POINT_DURATION_S  # per point, stretched for low rates (None: --requests)
    point_samples: int = POINT_SAMPLES
    points: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_throughput_rps: float | None = None
    requests_used: int = 0
    tokens_used: int = 0
    stopped: bool = False  # Ctrl-C: the point under way writes its partial report, no further point runs

    def stop(self) -> None:
        self.stopped = True

    def run(self, run_dir: Path, run_point: RunPoint) -> None:
        """Run every point (or until a stop rule) and collect them in ``points``."""
        folder = run_dir / "points"
        if self.spec.values is not None:
            loads = self._listed()
        else:
            probe = replace(self._probe_load(), requests=self.remaining_requests())
            code = run_point(probe, folder / f"00-{probe.label}", "probe (max throughput) · ")
            doc = read_point(folder / f"00-{probe.label}")
            tp = make_point(probe, doc, code, "", _records(folder / f"00-{probe.label}"))["achieved_rps"]
            if not doc or not tp or code in (ExitCode.USAGE, ExitCode.INVALID_RUN):
                self.notes.append(
                    f"the max-throughput probe gave no valid measurement (exit {code}): no sweep points run"
                )
                return
            self._spend(doc)
            self.max_throughput_rps = tp
            loads = self._auto_loads(tp)
        n = len(loads)
        for i, load in enumerate(loads):
            if self._capped(load):
                break
            load = replace(load, requests=self.remaining_requests())
            name = f"{i + 1:02d}-{load.label}"
            prefix = f"point {i + 1}/{n} {load.label} ({n - i - 1} left after this) · "
            code = run_point(load, folder / name, prefix)
            doc = read_point(folder / name)
            self._spend(doc or {})
            self.points.append(make_point(load, doc, code, f"points/{name}", _records(folder / name)))
            judge(self.points, self.spec.mode)
            why = self._over()
            if why and i + 1 < n:
                self.notes.append(f"stopped after {load.label}: {why}; {n - i - 1} higher point(s) skipped")
                break
        judge(self.points, self.spec.mode)

    def _listed(self) -> list[PointLoad]:
        assert self.spec.values is not None
        if self.spec.mode == "users":
            return [PointLoad(f"users-{int(v)}", users=int(v)) for v in self.spec.values]
        rates = list(self.spec.values)
        cap = self.caps.max_rate
        if cap is not None and any(r > cap for r in rates):
            dropped = [r for r in rates if r > cap]
            self.notes.append(f"--max-rate {cap:g}: rates {', '.join(f'{r:g}' for r in dropped)} not run")
            rates = [r for r in rates if r <= cap]
        return [self._rate_point(r) for r in rates]

    def _rate_point(self, rate: float) -> PointLoad:
        """An open-loop point whose window is long enough to offer ``point_samples`` requests."""
        if self.duration_s is None:
            return PointLoad(f"rate-{rate:g}", rate=rate)
        window = max(self.duration_s, self.point_samples / rate)
        return PointLoad(f"rate-{rate:g}", rate=rate, duration_s=window)

    def _probe_load(self) -> PointLoad:
        if self.caps.max_rate is not None:
            return PointLoad(f"probe-rate-{self.caps.max_rate:g}", rate=self.caps.max_rate, probe=True)
        return PointLoad(f"probe-users-{self.probe_users}", users=self.probe_users, probe=True)

    def _auto_loads(self, max_tp: float) -> list[PointLoad]:
        rates = [float(f"{f * max_tp:.3g}") for f in AUTO_FRACTIONS]
        cap = self.caps.max_rate
        if cap is not None:
            rates = sorted({min(r, cap) for r in rates})
        return [self._rate_point(r) for r in rates if r > 0]

    def _capped(self, load: PointLoad) -> bool:
        """Stop before a point that would pass a cost cap; a point's requests are capped to what is left."""
        if self.stopped:
            self.notes.append(f"interrupted: stopped before {load.label}; the sweep is partial")
            return True
        c = self.caps
        if c.max_requests is not None and self.requests_used >= c.max_requests:
            self.notes.append(f"--max-requests {c.max_requests} reached: stopped before {load.label}")
            return True
        if c.max_tokens_total is not None and self.points:
            last = self.points[-1]
            per_point = last.get("tokens", 0)
            if self.tokens_used + per_point > c.max_tokens_total:
                self.notes.append(
                    f"--max-tokens-total {c.max_tokens_total}: {self.tokens_used} used, the next point would "
                    f"take about {per_point}: stopped before {load.label}"
                )
                return True
        last = self.points[-1] if self.points else {}
        if (
            c.max_rate is not None
            and self.spec.mode == "users"
            and (last.get("achieved_rps") or 0) > c.max_rate
        ):
            self.notes.append(f"--max-rate {c.max_rate:g} passed by the last point: stopped")
            return True
        return False

    def remaining_requests(self) -> int | None:
        if self.caps.max_requests is None:
            return None
        return max(1, self.caps.max_requests - self.requests_used)

    def _spend(self, doc: Mapping[str, Any]) -> None:
        req = doc.get("requests") or {}
        every = req.get("totals") or req  # warmup and cooldown requests cost as much as measured ones
        self.requests_used += int(every.get("sent", req.get("total", 0)) or 0)
        self.tokens_used += _tokens(doc)

    def _over(self) -> str:
        """rate=auto's early stop: why the last point is clearly over-saturated ('' if it is not)."""
        if self.spec.values is not None or not self.points:
            return ""
        p = self.points[-1]
        if not p["valid"] or p.get("offered_rps") is None:
            return ""
        if self.max_throughput_rps and p["offered_rps"] < self.max_throughput_rps:
            return ""  # below the probed maximum lie the SLO limits: a noisy shortfall there stops nothing
        sent = min(p.get("sent_rps") or p["offered_rps"], p["offered_rps"])
        if (p.get("achieved_rps") or 0) < CLEARLY_OVER * sent:
            return f"it completed under {CLEARLY_OVER:.0%} of the requests it sent per second"
        if len(self.points) > 1 and p["saturated"] and self.points[-2]["saturated"]:
            return "two points in a row did not keep up"
        base, e2e = _e2e_p50(self.points[0]), _e2e_p50(p)
        if p["saturated"] and base and e2e and e2e > EXPLODED * base:
            return f"it did not keep up and its e2e p50 is over {EXPLODED:g}x the lowest point's"
        return ""

    def document(self) -> dict[str, Any]:
        knee = find_knee(self.points)
        return {
            "mode": self.spec.mode,
            "spec": self.spec.text,
            "points": self.points,
            "knee": knee,
            "probe_throughput_rps": self.max_throughput_rps,  # rate=auto's closed-loop probe (else None)
            "max_throughput_rps": self.max_throughput_rps
            if self.max_throughput_rps is not None
            else max((p.get("achieved_rps") or 0 for p in self.points), default=None),
            "caps": {k: v for k, v in vars(self.caps).items() if v is not None},
            "requests_sent": self.requests_used,
            "tokens_total": self.tokens_used,
            "notes": self.notes,
            "definition": KNEE_DEFINITION,
        }


def read_point(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / "summary.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _achieved(doc: Mapping[str, Any]) -> float | None:
    return _num((doc.get("throughput") or {}).get("requests_per_s"))


def _tokens(doc: Mapping[str, Any]) -> int:
    tp, d = doc.get("throughput") or {}, doc.get("duration_s") or 0
    return int((tp.get("total_tokens_per_s") or 0) * d)


def completion_rate(
    records: Iterable[Mapping[str, Any]], duration_s: float, closed_loop: bool
) -> float | None:
    """Requests completed per second inside the measured window once the pipeline is full.

    A summary's request counts follow the requests *sent* in the window (each drained to its end), so
    past saturation they still match the offered load. What the target sustains is how many it
    finishes per second while the load is on: completions (of any stage) in [fill end, window end],
    divided by that span. The window starts at the first measured send (the schedule's start) and
    lasts ``duration_s``. The pipeline is full ("fill end") a typical end-to-end latency (e2e p50)
    after the run's first send for an open loop; for a closed loop, whose users all start at once and
    queue behind each other, at its first completion. A warmup longer than that leaves the whole
    window in.
    """
    sends: list[int] = []
    measured: list[int] = []
    ends: list[int] = []
    e2e: list[int] = []
    for r in records:
        sent = int(r.get("t_sched") or r["t_send"])
        sends.append(sent)
        if r.get("stage") == "measure":
            measured.append(sent)
        if r.get("error_class") is None and r.get("t_end") is not None:
            ends.append(int(r["t_end"]))
            e2e.append(ends[-1] - sent)
    if not measured or not ends or duration_s <= 0:
        return None
    start = min(measured)
    fill = min(ends) if closed_loop else min(sends) + sorted(e2e)[len(e2e) // 2]
    lo, hi = max(start, fill), start + int(duration_s * 1e9)
    if hi <= lo:
        return None
    return sum(1 for e in ends if lo <= e <= hi) / ((hi - lo) / 1e9)


def _records(folder: Path) -> list[dict[str, Any]]:
    try:
        return list(read_records(folder / "requests.jsonl.gz"))
    except (OSError, ValueError, EOFError):
        return []


def make_point(load: PointLoad, doc: Mapping[str, Any] | None, code: int, folder: str,
               records: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """One entry of ``sweep.points``: the figures the knee, the report and the planner read."""
    doc = doc or {}
    req = doc.get("requests") or {}
    errors = doc.get("errors") or {}
    total = int(req.get("total", 0) or 0)
    sent = int(req.get("sent", total) or 0)
    duration = float(doc.get("duration_s") or 0.0)
    by_class = errors.get("by_class") or {}
    valid = bool(doc) and code not in (ExitCode.USAGE, ExitCode.INVALID_RUN)
    tp = doc.get("throughput") or {}
    achieved = completion_rate(records, duration, closed_loop=load.rate is None) if records else None
    if achieved is None:
        achieved = _achieved(doc)
    return {
        "label": load.label,
        "dir": folder,
        "offered_rps": load.rate,
        "users": load.users,
        "achieved_rps": achieved,
        "sent_rps": sent / duration if duration > 0 else None,  # the arrivals actually sent
        "goodput_rps": _goodput(doc, achieved),
        "error_rate": errors.get("rate"),
        "overload_rate": (by_class.get("429", 0) / total) if total else 0.0,
        "incomplete": int(req.get("incomplete", 0) or 0),
        "valid": valid,
        "saturated": False,  # set by judge()
        "exit_code": int(code),
        "duration_s": duration,
        "tokens": _tokens(doc),
        "metrics": {
            m: (doc.get("metrics") or {}).get(m) for m in _METRICS if (doc.get("metrics") or {}).get(m)
        },
        "requests": req,
        # what the planner reads as the point's completed rate: completions inside the window (the
        # run's own figure counts every request sent in it, drained to its end, so it follows the load)
        "throughput": {
            **tp,
            "requests_per_s": achieved,
            "requests_per_s_sent_in_window": tp.get("requests_per_s"),
        },
        "errors": {k: v for k, v in errors.items() if k != "examples"},
        "goodput": doc.get("goodput") or {},
        "gates": doc.get("gates") or [],
    }


def _goodput(doc: Mapping[str, Any], achieved: float | None) -> float | None:
    """Requests per second meeting every per-request SLO, on the same footing as ``achieved_rps``: the
    completion rate times the share of the window's requests that met them (the run's own figure
    divides those requests by the window, so past saturation it would exceed what was completed)."""
    good = _num((doc.get("goodput") or {}).get("requests_per_s"))
    sent = _num((doc.get("throughput") or {}).get("requests_per_s"))
    if good is None or achieved is None or not sent:
        return good
    return achieved * min(1.0, good / sent)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _keeps_up(p: Mapping[str, Any], previous: Sequence[Mapping[str, Any]]) -> bool:
    achieved = float(p.get("achieved_rps") or 0.0)
    if p.get("offered_rps") is not None:
        sent = float(min(p.get("sent_rps") or p["offered_rps"], p["offered_rps"]))
        # A stable target also ends a window with some requests in flight: by Little's law about
        # sent x (its low-load e2e) of them, which a short window must not read as falling behind.
        base = next((v for q in [*previous, p] if q["valid"] and (v := _e2e_p50(q)) is not None), None)
        window = p.get("duration_s") or 0.0
        in_flight = sent * (base or 0.0) / 1000 / window if window > 0 else 0.0
        return achieved + in_flight >= KEEPS_UP * sent
    # users: throughput still grows (by at least a third of the users' growth) over the best lower point
    lower = [q for q in previous if q["valid"] and q.get("users")]
    if not lower:
        return True
    best = max(lower, key=lambda q: q.get("achieved_rps") or 0.0)
    grow = (p.get("users") or 1) / (best.get("users") or 1)
    return achieved >= float(best.get("achieved_rps") or 0.0) * (1 + (grow - 1) / 3)


def judge(points: list[dict[str, Any]], mode: Mode) -> None:
    """Mark each point saturated or not (in place): not keeping up with its load, unless a higher load
    kept up at a higher completion rate (then the target was not saturated there: a window of bursty
    completions, e.g. big multi-image prefills finishing together, fell short by chance)."""
    keeps = [bool(p["valid"] and _keeps_up(p, points[:i])) for i, p in enumerate(points)]
    for i, p in enumerate(points):
        later = [q for q, k in zip(points[i + 1 :], keeps[i + 1 :], strict=True) if k]
        done = p.get("achieved_rps") or 0.0
        p["saturated"] = bool(
            p["valid"] and not keeps[i] and not any((q.get("achieved_rps") or 0.0) > done for q in later)
        )


def _e2e_p50(p: Mapping[str, Any]) -> float | None:
    v = ((p.get("metrics") or {}).get("e2e") or {}).get("p50")
    return float(v) if isinstance(v, int | float) else None


def find_knee(points: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The knee (see ``KNEE_DEFINITION``), with ``index`` its position in ``points``; None if none."""
    valid = [(i, p) for i, p in enumerate(points) if p["valid"]]
    if not valid:
        return None
    base = next((v for _, p in valid if (v := _e2e_p50(p)) is not None), None)
    knee = None
    for i, p in valid:
        if p["saturated"]:
            break
        e2e = _e2e_p50(p)
        if base is not None and e2e is not None and e2e > PLATEAU * base:
            break
        knee = i
    if knee is None:
        return None
    p = points[knee]
    return {
        "index": knee,
        "label": p["label"],
        "offered_rps": p.get("offered_rps"),
        "users": p.get("users"),
        "achieved_rps": p.get("achieved_rps"),
    }


def exit_code(points: Sequence[Mapping[str, Any]], knee: Mapping[str, Any] | None) -> int:
    """The sweep's verdict: the points at or below the knee (all of them if there is none) must be valid
    and pass their gates; points past the knee are expected to breach SLOs and do not count."""
    if not points:
        return int(ExitCode.INVALID_RUN)
    judged = points[: knee["index"] + 1] if knee else points[:1]
    if any(not p["valid"] for p in judged):
        return int(ExitCode.INVALID_RUN)
    codes = [int(p["exit_code"]) for p in judged]
    return max(codes, key=lambda c: (c != 0, c))


def sweep_summary(sweep: Sweep, run_dir: Path, run: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep run's top-level ``summary.json`` (same schema family as a single run's)."""
    doc = sweep.document()
    first = next((read_point(run_dir / p["dir"]) for p in sweep.points), None) or {}
    code = exit_code(sweep.points, doc["knee"])
    return {
        "schema": first.get("schema", "eyechart/load-summary/1"),
        "run": {**(first.get("run") or {}), **run, "rate": None, "users": None, "sweep": sweep.spec.text},
        "sweep": doc,
        "histogram_error_bound": first.get("histogram_error_bound"),
        "definitions": first.get("definitions", {}),
        "verdict": {"exit_code": code},
    }
