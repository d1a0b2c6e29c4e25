"""The continuous-batching rules of the simulated engine, with no clock: admission, steps, completion.

The same rules run on the wall clock (``engine.Engine``, what clients see) and on a virtual clock
(``capacity.simulate``, what a capacity planner is checked against), so the two cannot drift apart.

* Admission, first come first served: a sequence runs when fewer than ``max_seqs`` run and its KV
  reservation (prompt + answer limit) fits in the free KV-cache tokens; otherwise it waits in a FIFO
  queue and nobody jumps it (head-of-line). A sequence larger than the whole cache runs alone rather
  than waiting forever. Reservations are whole at admission, so nothing is ever preempted.
* A step, as vLLM's V1 scheduler builds it: every running sequence past its prefill decodes one token,
  then prefill chunks fill the rest of the ``max_batched_tokens`` budget in admission order (chunked
  prefill). A sequence's images go through the vision encoder in the step that starts its prefill.
* Completion: a sequence whose prefill ends in a step emits its first token at the end of that step;
  each decode item emits one more token. A sequence ends (slot and KV freed, the queue pumped) when it
  has emitted its answer. Until the answer's length is known (the text is computed in a thread), a
  sequence past its prefill waits in the batch without decoding.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from eyechart.target.deployment import Deployment


class QueueFull(Exception):
    """More sequences waiting than ``--max-waiting`` allows (the app answers 429)."""


@dataclass(slots=True, eq=False)
class Sequence:
    request_id: str
    text_tokens: int  # prompt text tokens
    image_tokens: int  # prompt image tokens
    kv_reserve: int  # KV tokens held while running (prompt + answer limit)
    received_ns: int = field(default_factory=time.monotonic_ns)
    admitted_ns: int | None = None
    answer_tokens: int | None = None  # the answer's length, once known
    prefilled: int = 0
    generated: int = 0
    done: bool = False
    sink: Any = None  # where the driver delivers this sequence's tokens

    @property
    def prompt_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    @property
    def to_prefill(self) -> int:
        return max(1, self.prompt_tokens)  # even an empty prompt takes a forward pass


@dataclass(slots=True)
class Step:
    items: list[tuple[Sequence, int]]  # (sequence, tokens it processes in this step)
    duration_s: float


class Batcher:
    def __init__(self, deployment: Deployment, max_waiting: int | None = None) -> None:
        self.deployment = deployment
        self.max_waiting = max_waiting
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.kv_used = 0

    def _fits(self, seq: Sequence) -> bool:
        if len(self.running) >= self.deployment.max_seqs:
            return False
        return self.kv_used + seq.kv_reserve <= self.deployment.kv_tokens or not self.running

    def _admit(self, seq: Sequence, now_ns: int) -> None:
        self.running.append(seq)
        self.kv_used += seq.kv_reserve
        seq.admitted_ns = now_ns

    def _pump(self, now_ns: int) -> None:
        while self.waiting and self._fits(self.waiting[0]):
            self._admit(self.waiting.popleft(), now_ns)

    def add(self, seq: Sequence, now_ns: int) -> None:
        """Run ``seq`` now if it fits and nobody waits, else queue it; QueueFull past ``max_waiting``."""
        if not self.waiting and self._fits(seq):
            self._admit(seq, now_ns)
            return
        if self.max_waiting is not None and len(self.waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self.waiting)} requests already waiting for the engine")
        self.waiting.append(seq)

    def remove(self, seq: Sequence, now_ns: int) -> None:
        """Take ``seq`` out wherever it is (finished, or its client left); frees its slot and KV."""
        if seq.done:
            return
        seq.done = True
        if seq in self.running:
            self.running.remove(seq)
            self.kv_used -= seq.kv_reserve
            self._pump(now_ns)
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
            else:
                self._pump(now_ns)  # the head may have been what blocked the queue

    def set_answer(self, seq: Sequence, tokens: int, now_ns: int) -> bool:
        """The answer's length is known; True if that already ends the sequence (nothing left to emit)."""
        seq.answer_tokens = tokens
        if not seq.done and seq.prefilled >= seq.to_prefill and seq.generated >= tokens:
            self.remove(seq, now_ns)
            return True
        return False

    def plan(self) -> Step | None:
        """The next step: decodes first, then prefill chunks within the token budget; None when idle."""
        budget = self.deployment.max_batched_tokens
        items: list[tuple[Sequence, int]] = []
        kv_read = images = 0
        for s in self.running:
            if s.prefilled >= s.to_prefill and budget > 0:
                if s.answer_tokens is None or s.generated >= s.answer_tokens:
                    continue
                items.append((s, 1))
                budget -= 1
                kv_read += s.prompt_tokens + s.generated
        for s in self.running:
            if s.prefilled < s.to_prefill and budget > 0:
                n = min(budget, s.to_prefill - s.prefilled)
                if s.prefilled == 0:
                    images += s.image_tokens
                items.append((s, n))
                budget -= n
                kv_read += s.prefilled + n
        if not items:
            return None
        tokens = self.deployment.max_batched_tokens - budget
        return Step(items, self.deployment.step_s(tokens, kv_read, images))

    def complete(self, step: Step, now_ns: int) -> tuple[list[tuple[Sequence, int]], list[Sequence]]:
        """Apply a finished step: the tokens it emitted (sequence, index) and the sequences it ended."""
        emitted: list[tuple[Sequence, int]] = []
        ended: list[Sequence] = []
        for s, n in step.items:
            if s.done:
                continue  # its client left during the step
            if s.prefilled < s.to_prefill:
                s.prefilled += n
                if s.prefilled < s.to_prefill:
                    continue
            if s.answer_tokens is None:
                continue
            if s.generated < s.answer_tokens:
                emitted.append((s, s.generated))
                s.generated += 1
            if s.generated >= s.answer_tokens:
                ended.append(s)
        for s in ended:
            self.remove(s, now_ns)
        return emitted, ended
