"""Telling a busy target from a broken one, so a timeout is blamed on the right party.

A request that times out proves little by itself: a server that handles one request at a time may
still be working on an earlier check's request (a huge prompt), or it may never finish this kind of
request at all. After every timeout the session asks the target a cheap question (a chat request with
``max_tokens`` 1, not ``GET /models``, which a busy generation loop still answers):

- the probe stalls too: the target is **busy**. The check is :class:`NotJudged` (re-run once by the
  plugin after the probe answers again), and every later request first waits for the probe. A target
  whose probe never answers within ``patience_s`` has **stopped answering**: the rest is not judged at
  once, so the run ends in bounded time with that verdict.
- the probe answers promptly: the timeout is the target's own fault for this *kind* of request (an
  image URL it fetches forever, a stream it never ends). After :data:`FAMILY_LIMIT` such timeouts, the
  rest of that kind fails fast with the shared cause instead of each waiting its full deadline.

It also remembers which kinds of request worked in this run, so a 5xx, a cut stream or a timeout on a
kind that worked elsewhere is worth one re-run (a pass then is ``flaky``, not a feature gap).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from eyechart.conform.checks import CheckFailed
from eyechart.wire.exchange import Exchange

FAMILY_LIMIT = 2  # timeouts of one kind of request (while the probe answers) before the rest fail fast
UNSTABLE_ERRORS = ("timeout", "reset", "protocol")  # transport failures a flaky target shows


class NotJudged(Exception):
    """The check could not be judged: the target was busy, stopped answering, or the run ran out of time."""

    def __init__(self, message: str, exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange


def request_kind(method: str, url: str, body: Any) -> str:
    """What kind of request this is, as far as timeouts go: streamed or not, fetching an image URL or not."""
    if method != "POST" or not url.rstrip("/").endswith("/chat/completions"):
        return f"{method} {url.rsplit('/', 1)[-1] or url}"
    streamed = isinstance(body, dict) and body.get("stream") is True
    fetch = _fetches_url(body)
    return ("streamed chat" if streamed else "chat") + (" with an image URL" if fetch else "")


def exchange_kind(ex: Exchange) -> str:
    """:func:`request_kind` of a recorded exchange (from its request summary)."""
    try:
        body = json.loads(ex.request_body) if ex.request_body else None
    except ValueError:
        body = None
    return request_kind(ex.method, ex.url, body)


def _fetches_url(body: Any) -> bool:
    messages = body.get("messages") if isinstance(body, dict) else None
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else []:
            image = part.get("image_url") if isinstance(part, dict) else None
            url = image.get("url") if isinstance(image, dict) else None
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return True
    return False


def _answered(probe: Exchange) -> bool:
    """The probe got a whole answer (any status): headers alone, then silence, is still busy."""
    return probe.status is not None and probe.error_class != "timeout"


def _phase(ex: Exchange) -> str:
    if ex.status is None:
        return "got no response headers"
    if "text/event-stream" in ex.content_type:
        return "never ended its stream"
    return "never finished its body"


class Liveness:
    """The run's view of whether the target answers; see the module docstring.

    ``probe`` sends the cheap request and returns its exchange; ``deadline`` (monotonic seconds) is
    the end of ``--max-time``."""

    def __init__(
        self,
        probe: Callable[[], Exchange],
        *,
        patience_s: float,
        deadline: float | None = None,
        max_time_s: float | None = None,
    ) -> None:
        self.probe = probe
        self.patience_s = patience_s
        self.deadline = deadline
        self.max_time_s = max_time_s
        self.worked: set[str] = set()  # kinds of request that got a 2xx in this run
        self.timeouts: Counter[str] = Counter()  # kind -> timeouts while the probe answered
        self.broken: dict[str, str] = {}  # kind -> the shared cause its later requests fail with
        self.busy: str | None = None  # why the target counts as busy (a probe stalled)
        self.stopped: str | None = None  # the target stopped answering even the probe
        self.cut_short: str | None = None  # the run reached --max-time

    # ------------------------------------------------------------------ before and after a request

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def before(self, kind: str) -> None:
        """Raise instead of sending: the run is out of time, the target stopped answering or is busy
        (after waiting for it), or this kind of request is known never to finish."""
        left = self.remaining()
        if left is not None and left <= 0:
            self.cut_short = f"--max-time {self.max_time_s:g} s reached"
            raise NotJudged(f"not sent: the run reached its time limit ({self.cut_short})")
        if self.stopped:
            raise NotJudged(f"not sent: {self.stopped}")
        if self.busy and not self.wait_until_answering():
            raise NotJudged(f"not sent: {self.stopped}")
        if kind in self.broken:
            raise CheckFailed(
                f"not sent: {self.broken[kind]}", expected="an answer within the timeout", got="timeout"
            )

    def after(self, kind: str, ex: Exchange) -> None:
        """Learn from one exchange; a timeout while the probe stalls too raises :class:`NotJudged`."""
        if ex.status is not None and 200 <= ex.status < 300 and ex.error_class is None:
            self.worked.add(kind)
        if ex.error_class != "timeout":
            return
        left = self.remaining()
        if left is not None and left <= 0:
            self.cut_short = f"--max-time {self.max_time_s:g} s reached"
            raise NotJudged(f"{kind} request cut at the run's time limit ({self.cut_short})", ex)
        probe = self.probe()
        if not _answered(probe):
            self.busy = (
                f"a {kind} request timed out after {ex.elapsed_s:.0f} s and a cheap chat request "
                f"(max_tokens 1) got no answer in {probe.elapsed_s:.0f} s either"
            )
            raise NotJudged(
                f"not judged: the target is busy ({self.busy}); perhaps still working on an earlier request",
                ex,
            )
        self.timeouts[kind] += 1
        if self.timeouts[kind] >= FAMILY_LIMIT and kind not in self.broken:
            self.broken[kind] = (
                f"{self.timeouts[kind]} {kind} requests {_phase(ex)} within {ex.elapsed_s:.0f} s while the "
                f"target answered a cheap chat request in {probe.elapsed_s:.2f} s: it does not finish "
                f"this kind of request"
            )

    def wait_until_answering(self) -> bool:
        """Probe until the target answers (True) or ``patience_s`` passes (False: it stopped answering)."""
        if self.stopped:
            return False
        until = time.monotonic() + self.patience_s
        left = self.remaining()
        if left is not None:
            until = min(until, time.monotonic() + max(0.0, left))
        while True:
            probe = self.probe()
            if _answered(probe):
                self.busy = None
                return True
            if time.monotonic() >= until:
                break
            time.sleep(min(1.0, max(0.0, until - time.monotonic())))
        if left is not None and time.monotonic() >= (self.deadline or 0):
            self.cut_short = f"--max-time {self.max_time_s:g} s reached"
            self.stopped = f"the run reached its time limit while the target was busy ({self.busy})"
        else:
            self.stopped = (
                f"the target stopped answering: after {self.busy}, the probe got no answer for "
                f"{self.patience_s:.0f} s more"
            )
        return False

    def worth_rerun(self, ex: Exchange | None) -> bool:
        """A 5xx, a cut stream or a timeout on a kind of request that worked elsewhere in the run."""
        if ex is None or self.stopped or self.cut_short:
            return False
        unstable = (ex.status is not None and ex.status >= 500) or ex.error_class in UNSTABLE_ERRORS
        kind = exchange_kind(ex)
        return unstable and kind in self.worked and kind not in self.broken
