"""When requests are meant to be sent: closed loop or an open-loop schedule of intended send times.

Separated from HTTP and from presentation on purpose (GuideLLM's scheduler split): this module knows
nothing about Locust or sockets, so the arrival processes are tested on their own.

Open loop never hides queueing. The schedule is a fixed sequence of intended send times ``t_sched``
drawn in advance from the arrival process; a user takes the next one, sleeps until it and sends. If
every user is busy, the next intended time is taken late and the request goes out late: the difference
``t_send - t_sched`` is the *schedule lag*, recorded per request and reported — a late send is never
silently re-timed (that is coordinated omission). With N load processes each one runs the same process
at rate R/N with its own seed, which for Poisson is exactly a split Poisson process of rate R.

Poisson with a known end (a ``--duration`` run) places exactly ``rate x span`` arrivals, as a Poisson
process given its count does: at independent uniform times, handed out in order. Inside the run the
arrivals are as bursty as Poisson's; over the run the offered rate is the one asked for. Drawn gap by
gap instead, a 40 s point at 2 req/s offers 80 +- 9 requests, and seed 0 happens to offer 20 % under
the rate for its first 40 gaps: every sweep point, which replays one draw, would sit 20 % under its
label and the sweep would never reach the load it set out to measure.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

Arrival = Literal["constant", "poisson", "gamma"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson", "gamma")


class ArrivalError(ValueError):
    """An arrival setting that cannot produce a schedule (exit code 2)."""


@dataclass(frozen=True)
class LoadModel:
    """How load is offered: ``users`` concurrent loops (closed) or ``rate`` requests/s (open)."""

    users: int | None = None  # closed loop: N users, each sends the next request as soon as one ends
    rate: float | None = None  # open loop: requests per second over the whole run (all processes)
    arrival: Arrival = "poisson"
    burstiness: float = 1.0  # gamma only: coefficient of variation of the gaps (1 = Poisson, >1 burstier)
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.users is None) == (self.rate is None):
            raise ArrivalError("give either --users N (closed loop) or --rate R (open loop), not both")
        if self.users is not None and self.users < 1:
            raise ArrivalError(f"--users must be at least 1, got {self.users}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ArrivalError(f"--rate must be a positive number of requests/s, got {self.rate}")
        if self.arrival not in ARRIVALS:
            raise ArrivalError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if not (self.burstiness > 0 and math.isfinite(self.burstiness)):
            raise ArrivalError(f"--burstiness must be positive, got {self.burstiness}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


class Schedule:
    """Intended send times (``time.monotonic_ns`` values) of one process's share of an open-loop run.

    ``next()`` hands out the next intended time to whichever user asks first (gevent users are
    cooperative, so the call is atomic). It returns ``None`` once ``end_ns`` or ``limit`` is reached.
    """

    def __init__(
        self,
        start_ns: int,
        rate: float,
        arrival: Arrival = "poisson",
        *,
        burstiness: float = 1.0,
        seed: int = 0,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> None:
        if not rate > 0:
            raise ArrivalError(f"rate must be positive, got {rate}")
        self._rng = random.Random(seed)
        self._mean_ns = 1e9 / rate
        self._arrival = arrival
        self._cv = burstiness
        self._t = float(start_ns)
        self._end_ns = end_ns
        self._limit = limit
        self.issued = 0
        # gamma with shape k and scale θ has mean kθ and CV 1/sqrt(k)
        self._shape = 1.0 / (burstiness * burstiness)
        self._scale = self._mean_ns / self._shape
        # Poisson with a known end: exactly this many arrivals, at sorted uniform times (see above).
        self._left: int | None = None
        if arrival == "poisson" and end_ns is not None:
            self._left = max(0, round(rate * (end_ns - start_ns) / 1e9))
            self._span = float(end_ns - start_ns)
            self._start = float(start_ns)
            self._u = 0.0  # the last arrival's place in [0, 1)
            self._t = self._uniform_next()
        # Poisson and gamma start with a random phase; constant starts at start_ns.
        elif arrival != "constant":
            self._t += self._gap()

    def _uniform_next(self) -> float:
        """The next of ``_left`` sorted uniform times: the smallest of m uniforms on [u, 1) is
        1 - (1 - u) x V^(1/m), V uniform on (0, 1]; drawn one by one, in O(1) memory."""
        if not self._left:
            return math.inf
        self._u = 1.0 - (1.0 - self._u) * (1.0 - self._rng.random()) ** (1.0 / self._left)
        self._left -= 1
        return self._start + self._u * self._span

    def _gap(self) -> float:
        if self._arrival == "constant":
            return self._mean_ns
        if self._arrival == "poisson":
            return self._rng.expovariate(1.0) * self._mean_ns
        return self._rng.gammavariate(self._shape, self._scale)

    def next(self) -> int | None:
        if self._limit is not None and self.issued >= self._limit:
            return None
        if self._t == math.inf:
            return None
        t = int(self._t)
        if self._end_ns is not None and t >= self._end_ns:
            return None
        self.issued += 1
        self._t = self._uniform_next() if self._left is not None else self._t + self._gap()
        return t


def share(total: float | int, processes: int, index: int) -> float:
    """This process's share of a rate or a request count split over ``processes`` load processes."""
    if isinstance(total, int):
        base, extra = divmod(total, processes)
        return base + (1 if index < extra else 0)
    return total / processes


def process_seed(seed: int, index: int) -> int:
    """Distinct, reproducible seeds per process so N processes do not send in lockstep."""
    return seed * 1_000_003 + index
