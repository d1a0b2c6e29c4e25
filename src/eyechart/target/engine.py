"""The simulated GPU: who runs now (admission) and when each token comes out (timing).

Two seams, so a later engine can grow into continuous batching without touching the HTTP layer:

* ``Scheduler.admit`` / ``release``: FCFS admission under ``max_seqs`` running sequences and a KV-cache
  capacity in tokens. A sequence that does not fit waits in a FIFO queue (head-of-line: nobody jumps
  it), so overload shows up as queue wait in TTFT and as ``waiting`` in /metrics.
* ``Scheduler.step_s``: the length of one decode step for the current batch; it grows with the number
  of running sequences (``ModelProfile.step_s``). Today every sequence keeps its own timeline and asks
  for the step length at each token; a step loop with a prefill budget per step would replace
  ``Engine.run`` and keep the same interface.

``Engine.run`` yields the answer's pieces at the moments the latency model says: the first after the
queue wait plus the prefill time, each next one a decode step later. The real work of reading the
images (``pieces`` is awaited, computed in a thread by the caller) overlaps the simulated queue wait and
prefill, so it only shows in the client's TTFT when it takes longer than both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, field

from eyechart.target.models import ModelProfile


class QueueFull(Exception):
    """More sequences waiting than ``--max-waiting`` allows (the app answers 429)."""


@dataclass(slots=True)
class Sequence:
    request_id: str
    text_tokens: int  # prompt text tokens
    image_tokens: int  # prompt image tokens
    kv_reserve: int  # KV tokens held while running (prompt + expected answer)
    received_ns: int = field(default_factory=time.monotonic_ns)
    admitted_ns: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.text_tokens + self.image_tokens


class Scheduler:
    """FCFS admission under a sequence count and a KV-token capacity."""

    def __init__(self, profile: ModelProfile, max_waiting: int | None = None) -> None:
        self.profile = profile
        self.max_waiting = max_waiting
        self.running = 0
        self.kv_used = 0
        self._waiting: deque[tuple[Sequence, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, seq: Sequence) -> bool:
        if self.running >= self.profile.max_seqs:
            return False
        # A sequence larger than the whole cache still runs alone, rather than waiting forever.
        return self.kv_used + seq.kv_reserve <= self.profile.kv_tokens or self.running == 0

    def _take(self, seq: Sequence) -> None:
        self.running += 1
        self.kv_used += seq.kv_reserve
        seq.admitted_ns = time.monotonic_ns()

    def enqueue(self, seq: Sequence) -> Lease:
        """Take a slot now or join the FIFO queue; raise QueueFull if the queue is at its limit.

        Synchronous on purpose: the caller learns about a full queue before it sends any header.
        """
        if not self._waiting and self._fits(seq):
            self._take(seq)
            return Lease(self, seq, None)
        if self.max_waiting is not None and len(self._waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self._waiting)} requests already waiting for the engine")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((seq, fut))
        return Lease(self, seq, fut)

    def _withdraw(self, seq: Sequence, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove((seq, fut))
        self._pump()

    def release(self, seq: Sequence) -> None:
        self.running -= 1
        self.kv_used -= seq.kv_reserve
        self._pump()

    def _pump(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            seq, fut = self._waiting.popleft()
            if fut.cancelled():
                continue
            self._take(seq)
            fut.set_result(None)

    def step_s(self) -> float:
        """One decode step for the batch running now."""
        return self.profile.step_s(self.running)


class Lease:
    """A sequence's place in the engine: waiting, running, or done. ``close`` is idempotent."""

    def __init__(self, scheduler: Scheduler, seq: Sequence, fut: asyncio.Future[None] | None) -> None:
        self.scheduler = scheduler
        self.seq = seq
        self._fut = fut
        self._closed = False

    async def wait(self) -> None:
        if self._fut is not None:
            await asyncio.shield(self._fut)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fut is None or (self._fut.done() and not self._fut.cancelled()):
            self.scheduler.release(self.seq)
        else:
            self._fut.cancel()
            self.scheduler._withdraw(self.seq, self._fut)


@dataclass(slots=True)
class Token:
    index: int
    text: str


class Engine:
    def __init__(self, profile: ModelProfile, max_waiting: int | None = None) -> None:
        self.profile = profile
        self.scheduler = Scheduler(profile, max_waiting)

    def enqueue(self, seq: Sequence) -> Lease:
        return self.scheduler.enqueue(seq)

    async def run(self, lease: Lease, pieces: Awaitable[list[str]]) -> AsyncGenerator[Token, None]:
        """Wait for admission, then yield each piece of the answer when the simulated GPU makes it.

        The slot is released when the iterator finishes or is closed (client gone), never later.
        """
        seq = lease.seq
        try:
            await lease.wait()
            if self.profile.zero_latency:
                for i, text in enumerate(await pieces):
                    yield Token(i, text)
                return
            assert seq.admitted_ns is not None
            deadline = seq.admitted_ns / 1e9 + self.profile.prefill_s(seq.text_tokens, seq.image_tokens)
            answer = await pieces
            # Analysis slower than queue + prefill delays the first token; the rest follow it, not
            # the schedule it missed.
            deadline = max(deadline, time.monotonic())
            for i, text in enumerate(answer):
                if i:
                    deadline += self.scheduler.step_s()
                delay = deadline - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield Token(i, text)
        finally:
            lease.close()
