"""Saturation watch: is the load generator itself the bottleneck?

A generator that runs out of CPU or whose event loop is blocked reads responses late, and its own
queueing would be reported as the server's latency. Two measures, per load process:

- **event-loop lag**: a greenlet asks to sleep ``interval`` and records how much later it woke up.
  Every timestamp the users take is late by about that much when the loop is busy.
- **CPU**: process CPU time (``time.process_time``) over wall time during the load window; one gevent
  process cannot use more than one core.

Lag alone cannot tell the generator's own saturation from a busy host (another process taking the
core for a while), and on a shared machine honest runs show 10-30 ms lag p99 with the generator at 3-5 %
of a core. So the lag is reported as the run's *timing uncertainty* (every stamp may be late by about
that much), and the run is invalid (exit code 4) only when the generator itself saturates: CPU above
``max_cpu`` (default 0.9 of its core) *and* lag p99 above max(10 ms, 5 % of the TTFT p50), or when
``--max-loop-lag-ms`` is given explicitly and the lag p99 (judged once there are 100 samples = 2 s)
exceeds it. Lag over that bound with a mostly idle generator is host noise: a warning that says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_LAG_MS = 10.0
MIN_SAMPLES = 100  # 2 s of probing: fewer samples make a p99 meaningless
DEFAULT_MAX_CPU = 0.9
LAG_SHARE_OF_TTFT = 0.05
INTERVAL_S = 0.02


@dataclass
class SaturationProbe:
    """Run :meth:`start` inside a gevent process; :meth:`snapshot` is JSON-able and mergeable."""

    interval_s: float = INTERVAL_S
    lag_counts: dict[int, int] = field(default_factory=dict)  # lag in 0.1 ms units -> count (bounded)
    lag_max_ms: float = 0.0
    _greenlet: Any = None
    _cpu0: float = 0.0
    _wall0: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def start(self) -> None:
        import gevent  # only inside Locust: `eyechart load` reads this module's budgets without gevent

        self._cpu0 = time.process_time()
        self._wall0 = time.monotonic()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        import gevent  # see start()

        interval = self.interval_s
        counts = self.lag_counts
        while True:
            t0 = time.monotonic()
            gevent.sleep(interval)
            lag = max(0.0, (time.monotonic() - t0 - interval) * 1000.0)
            key = min(int(lag * 10), 100_000)
            counts[key] = counts.get(key, 0) + 1
            if lag > self.lag_max_ms:
                self.lag_max_ms = lag

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
            self.cpu_s = time.process_time() - self._cpu0
            self.wall_s = time.monotonic() - self._wall0

    def snapshot(self) -> dict[str, Any]:
        cpu_s = self.cpu_s if self._greenlet is None else time.process_time() - self._cpu0
        wall_s = self.wall_s if self._greenlet is None else time.monotonic() - self._wall0
        n = sum(self.lag_counts.values())
        return {
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "lag_samples": n,
            "lag_p50_ms": _pct(self.lag_counts, n, 50),
            "lag_p99_ms": _pct(self.lag_counts, n, 99),
            "lag_max_ms": round(self.lag_max_ms, 3),
        }


def _pct(counts: Mapping[int, int], n: int, p: float) -> float:
    """Percentile of the 0.1 ms lag buckets (upper bucket edge, so never understated)."""
    if not n:
        return 0.0
    rank = n * p / 100.0
    seen = 0
    for key in sorted(counts):
        seen += counts[key]
        if seen >= rank:
            return (key + 1) / 10.0
    return (max(counts) + 1) / 10.0


def verdict(
    snapshots: Mapping[str, Mapping[str, Any]],
    max_lag_ms: float | None = None,
    max_cpu: float = DEFAULT_MAX_CPU,
    ttft_p50_ms: float | None = None,
) -> dict[str, Any]:
    """Judge every load process's snapshot (see the module docstring): ``valid`` False with reasons
    when a generator saturated; ``warnings`` for host noise; ``uncertainty`` the worst process's lag."""
    bound = max(DEFAULT_MAX_LAG_MS, LAG_SHARE_OF_TTFT * (ttft_p50_ms or 0.0))
    reasons: list[str] = []
    warnings: list[str] = []
    per: dict[str, Any] = {}
    for name, s in snapshots.items():
        cpu = s["cpu_s"] / s["wall_s"] if s.get("wall_s") else 0.0
        per[name] = {**s, "cpu_fraction": round(cpu, 4)}
        judged = s.get("lag_samples", 0) >= MIN_SAMPLES
        p99 = float(s.get("lag_p99_ms") or 0.0)
        if max_lag_ms is not None and judged and p99 > max_lag_ms:
            reasons.append(f"{name}: event-loop lag p99 {p99:.1f} ms over --max-loop-lag-ms {max_lag_ms:g}")
        elif cpu > max_cpu and judged and p99 > bound:
            reasons.append(
                f"{name}: the generator saturated: CPU {cpu:.0%} of its core (over {max_cpu:.0%}) with "
                f"event-loop lag p99 {p99:.1f} ms (over {bound:.3g} ms)"
            )
        elif judged and p99 > bound:
            warnings.append(
                f"{name}: event-loop lag p99 {p99:.1f} ms with the generator at {cpu:.0%} of a core: host "
                "noise (another process took the CPU), not saturation; timings may be late by about that much"
            )
    worst = max(snapshots.values(), key=lambda s: float(s.get("lag_p99_ms") or 0.0), default={})
    return {
        "valid": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "uncertainty": {
            "loop_lag_p50_ms": worst.get("lag_p50_ms"),
            "loop_lag_p99_ms": worst.get("lag_p99_ms"),
            "loop_lag_max_ms": worst.get("lag_max_ms"),
            "note": "the generator's own delay: any timestamp may be late by about this much",
        },
        "budget": {"max_lag_p99_ms": max_lag_ms, "saturation_lag_bound_ms": bound, "max_cpu": max_cpu},
        "processes": per,
    }
