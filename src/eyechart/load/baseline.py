"""Baseline comparison with confidence intervals, not single medians.

A baseline is a previous run folder: its ``summary.json`` and ``histograms.json`` (the encoded HDR
histograms plus the per-second measure-stage throughput, written by ``report.load.write_reports``).

How a regression is judged (95 % confidence, distribution-free):

* For a quantile q of a latency metric (``ttft``, ``itl``, ``tpot``, ``e2e`` at p50 and p95, and any
  quantile an SLO names) each run gets a confidence interval from its own histogram by the
  order-statistic (binomial) method: with n samples, the interval is [X(l), X(u)] where l and u are the
  ranks with P(Bin(n, q) < l) ≤ 2.5 % and P(Bin(n, q) ≥ u) ≤ 2.5 % (exact binomial up to 20,000
  samples, the normal approximation above). X(l) is read as the lowest value of its histogram bucket and
  X(u) as the highest, so the interval also covers the histogram's own error.
* Latency regresses when the candidate's lower bound exceeds the baseline's upper bound by more than
  ``max_regression``: ``cand_lo > base_hi × (1 + max_regression)``.
* Throughput (requests/s, output tokens/s) uses the same interval for the median of the per-second rates
  of the measure stage, and regresses the other way round: ``cand_hi < base_lo × (1 − max_regression)``.
* A metric without enough samples for a bounded interval in either run is reported, not judged.

Samples within one request (its ITLs) are not independent, so intervals are narrower than the truth;
the ``max_regression`` margin is what absorbs that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eyechart.load.histograms import ERROR_BOUND, Histogram

HISTOGRAMS_FILE = "histograms.json"
SUMMARY_FILE = "summary.json"
CONFIDENCE = 0.95
COMPARED_LATENCIES = ("ttft", "itl", "tpot", "e2e")
COMPARED_QUANTILES = (50.0, 95.0)
COMPARED_THROUGHPUT = ("requests_per_s", "output_tokens_per_s")
_EXACT_UP_TO = 20_000


class BaselineError(ValueError):
    """The baseline folder cannot be used (usage error, exit code 2)."""


@dataclass(frozen=True)
class Comparison:
    name: str  # e.g. "ttft_p95", "throughput.requests_per_s"
    direction: Literal["lower_is_better", "higher_is_better"]
    unit: str
    candidate_ci: tuple[float, float] | None
    baseline_ci: tuple[float, float] | None
    limit: float | None  # the value the candidate's bound was compared with
    regressed: bool
    detail: str


@dataclass
class BaselineRun:
    summary: dict[str, Any]
    hists: dict[str, Histogram]
    throughput_series: list[dict[str, float]]


def write_histograms(
    path: Path, hists: Mapping[str, Histogram], throughput_series: Sequence[Mapping[str, float]]
) -> None:
    doc = {
        "version": 1,
        "error_bound": ERROR_BOUND,
        "units": "latency histograms in microseconds; count histograms as counted",
        "histograms": {name: h.to_dict() for name, h in hists.items()},
        "throughput_series": list(throughput_series),
    }
    path.write_text(json.dumps(doc), encoding="utf-8")


def load_baseline(run_dir: Path) -> BaselineRun:
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        doc = json.loads((run_dir / HISTOGRAMS_FILE).read_text(encoding="utf-8"))
        hists = {name: Histogram.from_dict(d) for name, d in doc["histograms"].items()}
        series = list(doc.get("throughput_series", []))
    except FileNotFoundError as exc:
        raise BaselineError(
            f"baseline {run_dir} is not a load run folder: {exc.filename} is missing"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BaselineError(f"baseline {run_dir} is unreadable: {exc}") from None
    return BaselineRun(summary, hists, series)


def _binom_cdf_table(n: int, q: float) -> list[float]:
    """P(B ≤ k) for k = 0..n, B ~ Bin(n, q), computed in log space (no overflow)."""
    if q <= 0 or q >= 1:
        raise ValueError("quantile must be inside (0, 1)")
    lq, l1q = math.log(q), math.log1p(-q)
    cdf, acc = [], 0.0
    log_pmf = n * l1q
    for k in range(n + 1):
        acc += math.exp(log_pmf)
        cdf.append(min(acc, 1.0))
        if k < n:
            log_pmf += math.log(n - k) - math.log(k + 1) + lq - l1q
    return cdf


def quantile_ci_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) with X(l) ≤ ξ_q ≤ X(u) at ``confidence``; None where no rank is far enough."""
    if n <= 0:
        return None, None
    alpha = (1 - confidence) / 2
    if n <= _EXACT_UP_TO:
        cdf = _binom_cdf_table(n, q)
        # P(X(l) > ξ) = P(B ≤ l−1): largest l with cdf[l−1] ≤ α.
        lower = None
        for k in range(n):
            if cdf[k] <= alpha:
                lower = k + 1
            else:
                break
        # P(X(u) < ξ) = P(B ≥ u) = 1 − cdf[u−1]: smallest u with that ≤ α.
        upper = next((u for u in range(1, n + 1) if 1 - cdf[u - 1] <= alpha), None)
        return lower, upper
    z = _z(confidence)
    half = z * math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(n * q - half), math.ceil(n * q + half) + 1
    return (lo if lo >= 1 else None), (hi if hi <= n else None)


def _z(confidence: float) -> float:
    # Inverse normal CDF by bisection on erf (no SciPy needed).
    target = 1 - (1 - confidence) / 2
    a, b = 0.0, 10.0
    for _ in range(80):
        mid = (a + b) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            a = mid
        else:
            b = mid
    return (a + b) / 2


def histogram_quantile_ci(h: Histogram, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """CI for the q-quantile (0 < q < 1) in the histogram's unit, or None when unbounded."""
    lower, upper = quantile_ci_ranks(h.count, q, confidence)
    if lower is None or upper is None:
        return None
    return h.value_at_rank(lower, upper=False), h.value_at_rank(upper, upper=True)


def sample_quantile_ci(
    values: Sequence[float], q: float, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    ordered = sorted(values)
    lower, upper = quantile_ci_ranks(len(ordered), q, confidence)
    if lower is None or upper is None:
        return None
    return ordered[lower - 1], ordered[upper - 1]


def compare(
    cand_hists: Mapping[str, Histogram],
    cand_series: Sequence[Mapping[str, float]],
    baseline: BaselineRun,
    max_regression: float,
    extra_quantiles: Sequence[tuple[str, float]] = (),
) -> list[Comparison]:
    """Every comparison the module docstring lists, each with its verdict and the two intervals."""
    out: list[Comparison] = []
    wanted = [(m, q) for m in COMPARED_LATENCIES for q in COMPARED_QUANTILES]
    wanted += [mq for mq in extra_quantiles if mq not in wanted]
    for metric, pct in wanted:
        name = f"{metric}_p{pct:g}"
        ch, bh = cand_hists.get(metric), baseline.hists.get(metric)
        if ch is None or bh is None or not ch.count or not bh.count:
            continue
        c = histogram_quantile_ci(ch, pct / 100)
        b = histogram_quantile_ci(bh, pct / 100)
        cms = (c[0] / 1000, c[1] / 1000) if c else None
        bms = (b[0] / 1000, b[1] / 1000) if b else None
        out.append(_judge(name, "lower_is_better", "ms", cms, bms, max_regression))
    for metric in COMPARED_THROUGHPUT:
        cv = [s[metric] for s in cand_series if metric in s]
        bv = [s[metric] for s in baseline.throughput_series if metric in s]
        c2 = sample_quantile_ci(cv, 0.5) if cv else None
        b2 = sample_quantile_ci(bv, 0.5) if bv else None
        if not cv and not bv:
            continue
        out.append(_judge(f"throughput.{metric}", "higher_is_better", "/s", c2, b2, max_regression))
    return out


def _judge(
    name: str,
    direction: Literal["lower_is_better", "higher_is_better"],
    unit: str,
    c: tuple[float, float] | None,
    b: tuple[float, float] | None,
    max_regression: float,
) -> Comparison:
    if c is None or b is None:
        which = "candidate" if c is None else "baseline"
        return Comparison(
            name,
            direction,
            unit,
            c,
            b,
            None,
            False,
            f"not judged: too few samples in the {which} for a 95% interval",
        )
    ci = f"candidate 95% CI [{c[0]:.4g}, {c[1]:.4g}]{unit}, baseline [{b[0]:.4g}, {b[1]:.4g}]{unit}"
    if direction == "lower_is_better":
        limit = b[1] * (1 + max_regression)
        regressed = c[0] > limit
        sign = ">" if regressed else "≤"
        rule = f"candidate low {c[0]:.4g} {sign} baseline high × {1 + max_regression:g} = {limit:.4g}"
    else:
        limit = b[0] * (1 - max_regression)
        regressed = c[1] < limit
        sign = "<" if regressed else "≥"
        rule = f"candidate high {c[1]:.4g} {sign} baseline low × {1 - max_regression:g} = {limit:.4g}"
    return Comparison(name, direction, unit, c, b, limit, regressed, f"{ci}; {rule}")
