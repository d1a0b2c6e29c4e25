"""The simulated GPU on the wall clock: the batching rules (``batching``) driven by a step loop.

One asyncio task runs steps back to back while there is work: it plans a step, sleeps until the
step's simulated duration has passed, then hands every emitted token to its sequence's consumer
(``Engine.run``). Steps keep an absolute schedule: a late wake-up (a busy event loop, a coarse timer at
high ``--speed``) is made up by the following steps rather than pushing every later step back, unless
the loop falls more than ``MAX_LAG_S`` behind (the host is the bottleneck; the schedule restarts from
now). With no work the loop sleeps until a request arrives or an answer's length becomes known.

The answer's text is computed in a thread by the caller (``pieces``), overlapping the queue wait and
the prefill; a sequence whose text is late holds its place in the batch without decoding, so slow
image analysis shows in its TTFT only when it takes longer than both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass

from eyechart.target.batching import Batcher, QueueFull, Sequence
from eyechart.target.deployment import Deployment

__all__ = ["Engine", "Lease", "QueueFull", "Sequence", "Token"]

MAX_LAG_S = 0.5

log = logging.getLogger("eyechart.target")


@dataclass(slots=True)
class Token:
    index: int
    text: str


class Lease:
    """A sequence's place in the engine. ``close`` (idempotent) takes it out and frees what it held."""

    def __init__(self, engine: Engine, seq: Sequence) -> None:
        self.engine = engine
        self.seq = seq

    def close(self) -> None:
        self.engine._remove(self.seq)


class Engine:
    def __init__(self, deployment: Deployment, max_waiting: int | None = None) -> None:
        self.deployment = deployment
        self.batcher = Batcher(deployment, max_waiting)
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        return len(self.batcher.running)

    @property
    def waiting(self) -> int:
        return len(self.batcher.waiting)

    @property
    def kv_used(self) -> int:
        return self.batcher.kv_used

    @property
    def kv_usage(self) -> float:
        """Share of the KV cache reserved, 0..1 (what vLLM's ``kv_cache_usage_perc`` reports)."""
        return min(1.0, self.batcher.kv_used / self.deployment.kv_tokens)

    def enqueue(self, seq: Sequence) -> Lease:
        """Admit or queue ``seq``; raise QueueFull if the queue is at its limit.

        Synchronous on purpose: the caller learns about a full queue before it sends any header.
        """
        self.batcher.add(seq, time.monotonic_ns())
        seq.sink = asyncio.Queue()
        self._kick()
        return Lease(self, seq)

    def _remove(self, seq: Sequence) -> None:
        if not seq.done:
            self.batcher.remove(seq, time.monotonic_ns())
            self._kick()

    def _kick(self) -> None:
        if self.deployment.zero_latency:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._loop_task is None or self._loop_task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # shutting down: nothing left to run
                return
            self._loop_task = loop.create_task(self._step_loop())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()

    async def run(self, lease: Lease, pieces: Awaitable[list[str]]) -> AsyncGenerator[Token, None]:
        """Yield each piece of the answer when the simulated GPU makes it.

        The slot is released when the iterator finishes or is closed (client gone), never later.
        """
        seq = lease.seq
        try:
            texts = await pieces
            if self.deployment.zero_latency:
                for i, text in enumerate(texts):
                    yield Token(i, text)
                return
            if self.batcher.set_answer(seq, len(texts), time.monotonic_ns()):
                return
            self._kick()
            sink: asyncio.Queue[int | Exception | None] = seq.sink
            while (index := await sink.get()) is not None:
                if isinstance(index, Exception):
                    raise index
                yield Token(index, texts[index])
        finally:
            lease.close()

    async def _step_loop(self) -> None:
        """Steps until cancelled; if a step fails, every sequence in the engine fails with it (a 500 or
        an error event for its client), never waits for tokens that will not come."""
        try:
            await self._steps()
        except Exception as exc:
            log.error("the engine's step loop failed", exc_info=exc)
            failed = RuntimeError("the simulated engine failed")
            for s in [*self.batcher.running, *self.batcher.waiting]:
                s.sink.put_nowait(failed)
                self.batcher.remove(s, time.monotonic_ns())

    async def _steps(self) -> None:
        assert self._wake is not None
        anchor = time.monotonic()
        while True:
            step = self.batcher.plan()
            if step is None:
                self._wake.clear()
                await self._wake.wait()
                anchor = time.monotonic()
                continue
            end = anchor + step.duration_s
            delay = end - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            anchor = end if now - end < MAX_LAG_S else now
            emitted, ended = self.batcher.complete(step, time.monotonic_ns())
            for s, i in emitted:
                s.sink.put_nowait(i)
            for s in ended:
                s.sink.put_nowait(None)
