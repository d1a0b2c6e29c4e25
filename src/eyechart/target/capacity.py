"""The engine's ground-truth capacity for a workload, computed, not measured: what a planner must find.

``simulate`` runs the very batching rules the target serves with (``batching.Batcher``) on a virtual
clock: a deterministic discrete-event simulation, no wall clock, milliseconds of CPU per thousand
requests. On top of it:

* ``max_throughput``: completed requests per second with an endless queue (every slot busy, the
  saturation plateau a closed-loop load test with enough users measures);
* ``slo_rate``: the highest arrival rate (Poisson by default, like ``eyechart load --rate``) at which the
  chosen quantiles of TTFT, TPOT and end-to-end latency stay within the limits, found by bisection.

Both take the deployment as served, ``--speed`` included, so they compare directly with a run against
``eyechart serve`` at that speed. A workload is what every request looks like: prompt text tokens, image
tokens and answer tokens (a load test pins the answer with ``max_tokens`` + ``ignore_eos``). A mixed
workload is a list of them, taken in turn; ``workloads_of_trace`` reads that list off a ``--trace`` file,
so the truth for a real run's request mix (several images, several answer lengths) can be computed too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any, Literal

from eyechart.target.batching import Batcher, Sequence
from eyechart.target.deployment import Deployment

Arrival = Literal["poisson", "constant"]


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int  # text tokens of the prompt
    output_tokens: int  # tokens of every answer
    image_tokens: int = 0  # image tokens of the prompt

    def __post_init__(self) -> None:
        if self.output_tokens < 1 or self.prompt_tokens < 0 or self.image_tokens < 0:
            raise ValueError("a workload needs output_tokens >= 1 and no negative token counts")


Mix = Workload | Seq[Workload]
"""One request shape, or a mix: request ``i`` has shape ``mix[i % len(mix)]``."""


def _shapes(mix: Mix) -> list[Workload]:
    shapes = [mix] if isinstance(mix, Workload) else list(mix)
    if not shapes:
        raise ValueError("a mixed workload needs at least one request shape")
    return shapes


def workloads_of_trace(records: Iterable[Mapping[str, Any]]) -> list[Workload]:
    """The request shapes a target served, in the order it received them (``--trace`` records of
    answered requests): what ``simulate`` needs to compute the truth for that run's mix."""
    done = [r for r in records if r.get("type") == "request" and r.get("status") == 200]
    done.sort(key=lambda r: r.get("received_ns") or 0)
    return [
        Workload(
            prompt_tokens=int(r["prompt_tokens"]) - int(r.get("image_tokens") or 0),
            image_tokens=int(r.get("image_tokens") or 0),
            output_tokens=max(1, int(r.get("completion_tokens") or 1)),
        )
        for r in done
        if r.get("prompt_tokens") is not None
    ]


@dataclass(frozen=True)
class Slo:
    """Latency limits in seconds (None: not limited), each judged at ``quantile``."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    quantile: float = 0.95


@dataclass
class SimResult:
    ttft_s: list[float] = field(default_factory=list)
    tpot_s: list[float] = field(default_factory=list)  # (e2e - ttft) / (tokens - 1), answers of 2+ tokens
    e2e_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)  # completion times, in order
    duration_s: float = 0.0

    def quantile(self, name: str, q: float) -> float:
        values: list[float] = sorted(getattr(self, f"{name}_s"))
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    def throughput_rps(self) -> float:
        return completion_rate(self.end_s)


def completion_rate(ends_s: Seq[float], gap_s: float = 0.0, head: float = 0.25, tail: float = 0.15) -> float:
    """Completions per second in the steady state: between the ``head`` and ``1 - tail`` shares of the
    completions, away from the ramp-up and the drain.

    A saturated engine serving identical requests completes them in waves (a batch admitted together
    ends together), so a window cut at arbitrary instants miscounts by up to a wave. Here completions
    less than ``gap_s`` apart form one wave, and the window runs from the end of one wave to the end
    of another: whole cycles only. ``gap_s`` 0 suits the simulation (a wave ends at one instant); for
    a real server's timestamps, half a decode step separates waves from the spread within one.
    """
    waves: list[tuple[float, int]] = []  # (end time, completions)
    for e in sorted(ends_s):
        if waves and e - waves[-1][0] <= gap_s:
            waves[-1] = (e, waves[-1][1] + 1)
        else:
            waves.append((e, 1))
    total = len(ends_s)
    seen, first, last = 0, None, None
    for k, (_, n) in enumerate(waves):
        seen += n
        if first is None and seen > head * total:
            first = k
        if last is None and seen >= (1 - tail) * total:
            last = k
    if first is None or last is None or last <= first:
        return 0.0
    done = sum(n for _, n in waves[first + 1 : last + 1])
    return done / (waves[last][0] - waves[first][0])


def arrival_gaps(n: int, arrival: Arrival, seed: int) -> list[float]:
    """Gaps between ``n`` arrivals at one request per second; divide by a rate to get that rate."""
    if arrival == "constant":
        return [1.0] * n
    rng = random.Random(seed)
    return [rng.expovariate(1.0) for _ in range(n)]


def simulate(
    deployment: Deployment,
    workload: Mix,
    *,
    rate: float | None,
    requests: int = 1000,
    arrival: Arrival = "poisson",
    seed: int = 0,
    gaps: Seq[float] | None = None,
) -> SimResult:
    """Serve ``requests`` requests arriving at ``rate`` per second (None: all at once, a backlog)."""
    if deployment.zero_latency:
        raise ValueError("a zero-latency target has no capacity limit to compute")
    shapes = _shapes(workload)
    batcher = Batcher(deployment)
    unit = list(gaps) if gaps is not None else arrival_gaps(requests, arrival, seed)
    arrivals: list[float] = []
    t = 0.0
    for i in range(requests):
        if rate is not None:
            t += unit[i] / rate
        arrivals.append(t)
    born: dict[int, float] = {}
    first: dict[int, float] = {}
    out = SimResult()
    now = 0.0
    nxt = 0
    while len(out.end_s) < requests:
        while nxt < requests and arrivals[nxt] <= now:
            w = shapes[nxt % len(shapes)]
            reserve = w.prompt_tokens + w.image_tokens + w.output_tokens
            s = Sequence(str(nxt), w.prompt_tokens, w.image_tokens, reserve, received_ns=nxt)
            s.answer_tokens = w.output_tokens
            born[id(s)] = arrivals[nxt]
            batcher.add(s, 0)
            nxt += 1
        step = batcher.plan()
        if step is None:
            now = arrivals[nxt]  # idle until the next arrival
            continue
        now += step.duration_s
        emitted, ended = batcher.complete(step, 0)
        for s, i in emitted:
            if i == 0:
                first[id(s)] = now
        for s in ended:
            t0, t1 = born.pop(id(s)), first.pop(id(s))
            out.ttft_s.append(t1 - t0)
            out.e2e_s.append(now - t0)
            n = s.answer_tokens or 1
            if n > 1:
                out.tpot_s.append((now - t1) / (n - 1))
            out.end_s.append(now)
    out.duration_s = now
    return out


def max_throughput(deployment: Deployment, workload: Mix, *, requests: int | None = None) -> float:
    """Completed requests per second at saturation: every slot (or the KV cache) busy, a queue always
    waiting. Measured in the simulation's steady state, away from the ramp-up and the drain."""
    n = requests or max(400, 12 * min(deployment.max_seqs, _kv_fit(deployment, workload)))
    return simulate(deployment, workload, rate=None, requests=n).throughput_rps()


def _kv_fit(deployment: Deployment, workload: Mix) -> int:
    shapes = _shapes(workload)
    per = sum(w.prompt_tokens + w.image_tokens + w.output_tokens for w in shapes) / len(shapes)
    return max(1, int(deployment.kv_tokens // max(1.0, per)))


def meets(result: SimResult, slo: Slo) -> bool:
    limits = (("ttft", slo.ttft_s), ("tpot", slo.tpot_s), ("e2e", slo.e2e_s))
    return all(limit is None or result.quantile(name, slo.quantile) <= limit for name, limit in limits)


def slo_rate(
    deployment: Deployment,
    workload: Mix,
    slo: Slo,
    *,
    requests: int = 2000,
    arrival: Arrival = "poisson",
    seed: int = 0,
    tolerance: float = 0.01,
) -> float:
    """The highest arrival rate (requests/s) whose simulated latencies meet ``slo``; 0 if none does.

    Bisection between 0 and the saturation throughput, every trial on the same arrival pattern scaled
    to its rate, so the answer is deterministic for a seed. The horizon matters near saturation, where
    the queue grows slowly: ``requests`` arrivals judge what a load run of that many requests would
    see, and a longer horizon can only lower the answer.
    """
    ceiling = max_throughput(deployment, workload)
    gaps = arrival_gaps(requests, arrival, seed)

    def ok(rate: float) -> bool:
        return meets(simulate(deployment, workload, rate=rate, requests=requests, gaps=gaps), slo)

    if ok(ceiling):
        return ceiling
    lo, hi = 0.0, ceiling
    while hi - lo > tolerance * ceiling:
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
