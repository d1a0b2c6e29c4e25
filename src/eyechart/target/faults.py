"""Fault injection: the misbehaviour the harness must survive and classify (off by default).

``--faults`` takes comma-separated ``name=value`` items; unknown names are a usage error::

    error_rate=0.1        10% of requests get a 500 error envelope (status: error_status=503 to change)
    disconnect=0.05       5% of streams (and whole answers) are cut mid-body: the connection drops
    stall=2s              a stream stops for 2 s before one of its tokens ...
    stall_rate=0.1        ... in this share of streams (default 0.1)
    malformed=0.02        2% of streams carry one chunk that is not valid JSON
    slow_headers=1s       response headers are held back 1 s ...
    slow_headers_rate=1   ... in this share of requests (default 1: every request)
    seed=7                the RNG seed (default 0), so a run is reproducible

Durations take ``ms`` or ``s`` suffixes (bare numbers are seconds). Each request draws its faults once,
from one seeded RNG, in arrival order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    error_status: int = 500
    disconnect: float = 0.0
    stall: float = 0.0
    stall_rate: float = 0.1
    malformed: float = 0.0
    slow_headers: float = 0.0
    slow_headers_rate: float = 1.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.disconnect or self.stall or self.malformed or self.slow_headers)


_RATES = {"error_rate", "disconnect", "stall_rate", "malformed", "slow_headers_rate"}
_DURATIONS = {"stall", "slow_headers"}
_INTS = {"error_status", "seed"}


def _duration(text: str) -> float:
    t = text.strip().lower()
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    if t.endswith("s"):
        return float(t[:-1])
    return float(t)


def parse_faults(spec: str | None) -> FaultConfig:
    """Parse ``--faults``; raise FaultSpecError with the offending item."""
    if not spec:
        return FaultConfig()
    values: dict[str, float | int] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep:
            raise FaultSpecError(f"fault {item!r} is not name=value")
        try:
            if name in _RATES:
                rate = float(raw)
                if not 0 <= rate <= 1:
                    raise ValueError("a rate is between 0 and 1")
                values[name] = rate
            elif name in _DURATIONS:
                seconds = _duration(raw)
                if seconds < 0:
                    raise ValueError("a duration is >= 0")
                values[name] = seconds
            elif name in _INTS:
                values[name] = int(raw)
            else:
                known = ", ".join(sorted(_RATES | _DURATIONS | _INTS))
                raise FaultSpecError(f"unknown fault {name!r}; known: {known}")
        except ValueError as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"fault {item!r}: {exc}") from None
    status = int(values.get("error_status", 500))
    if not 400 <= status <= 599:
        raise FaultSpecError("error_status must be a 4xx or 5xx status")
    return FaultConfig(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RequestFaults:
    """The faults one request gets (drawn once, when it arrives)."""

    error: bool = False
    disconnect_at: float | None = None  # fraction of the answer after which the connection drops
    stall_at: float | None = None  # fraction of the answer before which the stream stalls
    malformed_at: float | None = None  # fraction of the answer where a broken chunk goes
    slow_headers_s: float = 0.0

    def index(self, fraction: float | None, n_tokens: int) -> int | None:
        """The token index a fraction falls on, for an answer of ``n_tokens``."""
        if fraction is None:
            return None
        return min(int(fraction * n_tokens), max(0, n_tokens - 1))


NO_FAULTS = RequestFaults()


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def draw(self) -> RequestFaults:
        c = self.config
        if not c.active:
            return NO_FAULTS
        r = self._rng
        # Always draw the same number of values, so one fault's rate does not shift the others.
        e, d, df, s, sf, m, mf, h = (r.random() for _ in range(8))
        return RequestFaults(
            error=e < c.error_rate,
            disconnect_at=df if d < c.disconnect else None,
            stall_at=sf if c.stall and s < c.stall_rate else None,
            malformed_at=mf if m < c.malformed else None,
            slow_headers_s=c.slow_headers if c.slow_headers and h < c.slow_headers_rate else 0.0,
        )
