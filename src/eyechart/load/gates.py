"""Gates: SLOs from ``--slo``, the baseline comparison, and the run's own validity → one exit code.

SLO syntax, comma separated: ``<metric>_<stat> <op> <value>[unit]`` or a run metric::

    ttft_p95<=2s, itl_p99<=80ms, e2e_mean<5s, tpot_p50<=40ms   latency: p50 p90 p95 p99 mean max min;
                                                              units us µs ms s (a bare number is ms)
    error_rate<=1%          failed / sent requests of the measure stage (a % or a fraction 0..1);
                            without one, error_rate<=5% applies (DEFAULT_ERROR_SLO)
    goodput>=95%            share of measured requests meeting every per-request SLO (or 5/s: a rate)
    requests_per_s>=10      also output_tokens_per_s, total_tokens_per_s, images_per_s (bare or /s)
    completion_tokens_p50>=100                                count metrics: bare numbers

Latency SLOs on ttft, ttft_sched, e2e, tpot and itl also act per request for goodput (itl: the request's
largest gap); when a metric has several, the tightest threshold applies.

Exit code precedence: 4 (invalid run) > 1 (SLO breached) > 3 (regression) > 0. An invalid run's numbers
mean nothing, so no other verdict is reported as the cause; a breached SLO is an absolute failure and
outranks a relative one. Validity gates: enough completed requests (a run in which none succeeds is
invalid and says why: its top error class and first example), the harness not saturated (the runner
sets ``run_info["harness_saturated"]``), and in open loop the p99 schedule lag within budget.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eyechart.exitcodes import ExitCode
from eyechart.load import baseline as baseline_mod
from eyechart.load.histograms import Histogram
from eyechart.load.metrics import COUNT_METRICS, LATENCY_METRICS
from eyechart.load.stats import PER_REQUEST_SLO_METRICS

STATS = ("p50", "p90", "p95", "p99", "mean", "max", "min")
THROUGHPUT = ("requests_per_s", "output_tokens_per_s", "total_tokens_per_s", "images_per_s")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}  # fmt: skip
_TIME_UNITS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "": 1.0}
_SLO_RE = re.compile(r"^\s*([a-z_][a-z0-9_]*?)\s*(<=|>=|<|>|=<|=>|==|=)\s*([-+0-9.eE]+)\s*([a-zµ%/]*)\s*$")

GateKind = Literal["slo", "baseline", "validity"]
DEFAULT_ERROR_SLO = "error_rate<=5%"
INCOMPLETE_WARN = 0.05  # more incomplete requests than this share of those sent: a warning


class GateError(ValueError):
    """A bad ``--slo`` or gate option (usage error, exit code 2)."""


@dataclass(frozen=True)
class Slo:
    text: str  # as the user wrote it
    metric: str  # ttft, itl, ..., error_rate, goodput, requests_per_s, ...
    stat: str | None  # p95, mean, ... for histogram metrics; None for run metrics
    op: str
    threshold: float  # summary units: ms, fraction (0..1), per second, or a count
    unit: str  # the unit of ``threshold``

    @property
    def name(self) -> str:
        if self.metric == "goodput" and self.unit == "/s":
            return "goodput_per_s"
        return f"{self.metric}_{self.stat}" if self.stat else self.metric

    def observe(self, summary: Mapping[str, Any]) -> float | None:
        if self.stat:
            value = summary["metrics"][self.metric].get(self.stat)
            return None if value is None else float(value)
        if self.metric == "error_rate":
            return float(summary["errors"]["rate"])
        if self.metric == "goodput":
            g = summary["goodput"]
            return float(g["requests_per_s"] if self.unit == "/s" else g["fraction"])
        return float(summary["throughput"][self.metric])


@dataclass
class GateResult:
    name: str
    kind: GateKind
    threshold: str  # human-readable, e.g. "<= 2000 ms"
    observed: float | str | None
    passed: bool
    detail: str = ""


@dataclass
class GateVerdict:
    results: list[GateResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = {r.kind for r in self.results if not r.passed}
        if "validity" in failed:
            return int(ExitCode.INVALID_RUN)
        if "slo" in failed:
            return int(ExitCode.FAILED)
        if "baseline" in failed:
            return int(ExitCode.REGRESSION)
        return int(ExitCode.OK)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def as_list(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.results]


def parse_slo(text: str) -> list[Slo]:
    """Parse ``--slo``; raises ``GateError`` with the offending part and what is accepted."""
    slos: list[Slo] = []
    for part in (p for p in text.split(",") if p.strip()):
        slos.append(_parse_one(part.strip()))
    if not slos:
        raise GateError("--slo is empty; example: --slo 'ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%'")
    return slos


def _parse_one(part: str) -> Slo:
    m = _SLO_RE.match(part)
    if not m:
        raise GateError(f"cannot read SLO {part!r}: expected <metric><op><value>[unit], e.g. ttft_p95<=2s")
    name, op, raw, unit = m.groups()
    op = {"=<": "<=", "=>": ">="}.get(op, op)
    if op not in _OPS:
        raise GateError(f"SLO {part!r}: use one of <= < >= > (not {op})")
    try:
        value = float(raw)
    except ValueError:
        raise GateError(f"SLO {part!r}: {raw!r} is not a number") from None
    if name == "error_rate":
        return Slo(part, name, None, op, _fraction(part, value, unit), "fraction")
    if name == "goodput":
        if unit == "%":
            return Slo(part, name, None, op, value / 100, "fraction")
        if unit in ("/s", "rps"):
            return Slo(part, name, None, op, value, "/s")
        raise GateError(f"SLO {part!r}: give goodput as a share (95%) or a rate (5/s)")
    if name in THROUGHPUT:
        if unit not in ("", "/s"):
            raise GateError(f"SLO {part!r}: {name} is per second; write a bare number or /s")
        return Slo(part, name, None, op, value, "/s")
    metric, _, stat = name.rpartition("_")
    if metric in LATENCY_METRICS and stat in STATS:
        if unit not in _TIME_UNITS:
            raise GateError(f"SLO {part!r}: unknown time unit {unit!r}; use us, ms or s")
        return Slo(part, metric, stat, op, value * _TIME_UNITS[unit], "ms")
    if metric in COUNT_METRICS and stat in STATS:
        if unit not in ("",):
            raise GateError(f"SLO {part!r}: {metric} is a count; write a bare number")
        return Slo(part, metric, stat, op, value, "")
    known = [f"{m}_<{'|'.join(STATS)}>" for m in LATENCY_METRICS + COUNT_METRICS]
    raise GateError(
        f"SLO {part!r}: unknown metric {name!r}; known: error_rate, goodput, {', '.join(THROUGHPUT)}, "
        + ", ".join(known)
    )


def _fraction(part: str, value: float, unit: str) -> float:
    if unit == "%":
        return value / 100
    if unit == "" and 0 <= value <= 1:
        return value
    raise GateError(f"SLO {part!r}: a rate is a percentage (1%) or a fraction between 0 and 1")


def with_default_error_gate(slos: list[Slo]) -> list[Slo]:
    """``slos`` plus ``error_rate<=5%`` unless one of them already judges ``error_rate``."""
    if any(s.metric == "error_rate" for s in slos):
        return slos
    return [*slos, _parse_one(DEFAULT_ERROR_SLO)]


def warnings(summary: Mapping[str, Any]) -> list[str]:
    """What a reader must know but does not fail the run: many incomplete requests."""
    out = []
    req = summary["requests"]
    sent, incomplete = int(req.get("sent", req["total"])), int(req.get("incomplete", 0))
    if sent and incomplete / sent > INCOMPLETE_WARN:
        out.append(
            f"{incomplete} of {sent} requests ({incomplete / sent:.0%}) were still open when the drain "
            "ended (incomplete): the latency quantiles describe only the completed ones; see 'censored'"
        )
    return out


def per_request_slos(slos: list[Slo]) -> dict[str, float]:
    """Per-request thresholds (ms) for goodput: latency upper bounds, the tightest per metric."""
    out: dict[str, float] = {}
    for s in slos:
        if s.stat and s.metric in PER_REQUEST_SLO_METRICS and s.op in ("<=", "<"):
            out[s.metric] = min(out.get(s.metric, s.threshold), s.threshold)
    return out


def evaluate(
    summary: Mapping[str, Any],
    slos: list[Slo],
    *,
    baseline_dir: Path | None = None,
    max_regression: float = 0.10,
    histograms: Mapping[str, Histogram] | None = None,
    throughput_series: list[dict[str, float]] | None = None,
    min_requests: int = 20,
    schedule_lag_budget_ms: float = 50.0,
) -> GateVerdict:
    """Judge a run. ``histograms`` (``LoadStats.hists``) are needed for the baseline comparison.

    ``throughput_series`` defaults to ``summary["throughput_series"]`` when present.
    Raises ``GateError``/``BaselineError`` (both ValueError: exit code 2) for unusable options.
    """
    if not 0 <= max_regression < 1:
        raise GateError(f"--max-regression must be between 0% and 100%, got {max_regression:g}")
    verdict = GateVerdict()
    verdict.results.extend(_validity(summary, min_requests, schedule_lag_budget_ms))
    for slo in slos:
        observed = slo.observe(summary)
        thr = f"{slo.op} {_fmt(slo.threshold, slo.unit)}"
        if observed is None:
            verdict.results.append(GateResult(slo.name, "slo", thr, None, False, "no samples to judge"))
            continue
        ok = _OPS[slo.op](observed, slo.threshold)
        verdict.results.append(
            GateResult(slo.name, "slo", thr, observed, ok, f"{slo.text}: observed {_fmt(observed, slo.unit)}")
        )
    if baseline_dir is not None:
        if histograms is None:
            raise GateError("a baseline comparison needs the run's histograms")
        base = baseline_mod.load_baseline(Path(baseline_dir))
        series = throughput_series if throughput_series is not None else summary.get("throughput_series", [])
        extra = [
            (s.metric, float(s.stat[1:]))
            for s in slos
            if s.stat and s.stat.startswith("p") and s.metric in baseline_mod.COMPARED_LATENCIES
        ]
        for c in baseline_mod.compare(histograms, series, base, max_regression, extra):
            observed_ci = f"[{c.candidate_ci[0]:.4g}, {c.candidate_ci[1]:.4g}]" if c.candidate_ci else None
            side = "≤ baseline high" if c.direction == "lower_is_better" else "≥ baseline low"
            verdict.results.append(
                GateResult(
                    f"baseline.{c.name}",
                    "baseline",
                    f"{side} ± {max_regression:.0%}",
                    observed_ci,
                    not c.regressed,
                    c.detail,
                )
            )
    return verdict


def _validity(summary: Mapping[str, Any], min_requests: int, lag_budget_ms: float) -> list[GateResult]:
    out = []
    req = summary["requests"]
    n = int(req.get("completed", req["ok"]))
    sent = int(req.get("sent", req["total"]))
    detail = f"{n} completed of {sent} sent in the measure stage"
    if sent and not n:
        detail = "no request succeeded: " + _top_error(summary)
    out.append(
        GateResult(
            "valid.samples",
            "validity",
            f">= {min_requests} completed requests",
            n,
            n >= min_requests,
            detail,
        )
    )
    run = summary.get("run", {})
    saturated = bool(run.get("harness_saturated"))
    out.append(
        GateResult(
            "valid.harness",
            "validity",
            "generator not saturated",
            "saturated" if saturated else "ok",
            not saturated,
            str(run.get("harness_saturation_detail", "")) or "CPU and event-loop lag within budget",
        )
    )
    lag = summary["metrics"].get("schedule_lag", {})
    if lag.get("count"):
        budget = float(run.get("schedule_lag_budget_ms", lag_budget_ms))
        p99 = float(lag["p99"])
        out.append(
            GateResult(
                "valid.schedule_lag",
                "validity",
                f"p99 <= {budget:g} ms",
                p99,
                p99 <= budget,
                f"open-loop sends late by p99 {p99:.3g} ms (budget {budget:g} ms)",
            )
        )
    return out


def _top_error(summary: Mapping[str, Any]) -> str:
    """The most frequent error class with its count and first example."""
    errors = summary.get("errors", {})
    by_class = {k: v for k, v in errors.get("by_class", {}).items() if v}
    if not by_class:
        return "no error recorded either (every request incomplete?)"
    top = max(by_class, key=lambda k: by_class[k])
    examples = errors.get("examples", {}).get(top) or ["(no example kept)"]
    return f"{by_class[top]} x {top}, first: {examples[0]}"


def _fmt(value: float, unit: str) -> str:
    if unit == "fraction":
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:.4g} ms"
    return f"{value:.4g}{unit}"
