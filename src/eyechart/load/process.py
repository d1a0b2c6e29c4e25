"""The per-process state of a load run: what each Locust process sends, when, and what it measured.

One :class:`LoadSession` per process that runs users (built on Locust's ``test_start``): the workload's
request templates, the arrival schedule (open loop) or quota (closed loop), the mergeable stats, the
record writer and the saturation probe. Users ask it what to send and when, and hand back each record.

Every sent request ends as exactly one record. After the last stage (``--run-time``) nothing new is
sent and the requests in flight drain for up to ``--drain`` seconds; those still open then are written
as ``incomplete`` with what they had received so far. The session tracks each request from send to
record (``in_flight``); whoever takes it out of there first (the user finishing it, or the drain's end)
writes its one record.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
from geventhttpclient import HTTPClient

from eyechart import invariants
from eyechart.load import arrivals, connection, gates, probe
from eyechart.load.metrics import itl_gaps
from eyechart.load.recordfile import RecordWriter
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats
from eyechart.load.workloads import Deck, Template, build_templates, load_workload
from eyechart.profiles import load_profile
from eyechart.wire.discovery import resolve_model

log = logging.getLogger("eyechart.load")


EARLY_STOP_AFTER = 20  # the first N requests all failing with the same 4xx (not 429): stop sending


class LoadSession:
    """Everything one load process needs while users run; the user asks it what to send and when."""

    def __init__(
        self, environment: Any, run_dir: Path, index: int, processes: int, run_time_hint: float | None = None
    ) -> None:
        o = environment.parsed_options
        self.environment = environment
        self.index = index
        self.run_dir = run_dir
        host = (environment.host or "").rstrip("/")
        if not host:
            raise SystemExit(
                "eyechart: no --host given (the API base URL, e.g. http://127.0.0.1:8000/v1/openai)"
            )
        self.chat_url = host + "/chat/completions"
        self.chat_path = urlsplit(self.chat_url).path
        key = os.environ.get("EYECHART_API_KEY", "")
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.headers.update(user_headers())
        self.request_id_header: str | None = None if o.no_request_id else o.request_id_header
        self._tls = {"ca_bundle": o.ca_bundle or None, "insecure": bool(o.insecure)}
        self.workload = load_workload(o.workload)
        # no --model (plain `locust -f`): ask /models the way the run's requests go, gateway and TLS alike
        model = o.model or resolve_model(
            host,
            key or None,
            None,
            headers=user_headers(),
            ca_bundle=o.ca_bundle or None,
            insecure=bool(o.insecure),
        )
        url_for = None
        if self.workload.uses_url:
            base = (o.fixture_url or "").rstrip("/")
            if not base:
                raise SystemExit("eyechart: this workload sends image URLs: give --fixture-url")
            url_for = lambda name: f"{base}/img/{name}"  # noqa: E731
        self.templates: list[Template] = build_templates(
            self.workload, model, url_for=url_for, max_tokens_param=o.max_tokens_param
        )
        self.model = model
        self._rng = random.Random(arrivals.process_seed(o.seed, index))
        self.deck = Deck(self.templates, self._rng)
        # conformance under load: a sample of live responses judged by the invariant registry
        # (~1.6 ms of CPU per 256-chunk stream, hence a small default share; "100%" judges every one)
        self.check_share = min(1.0, max(0.0, parse_fraction(getattr(o, "check_sample", "0.5%"))))
        self._check_rng = random.Random(arrivals.process_seed(o.seed, index) + 1)
        self.tally = invariants.Tally()
        self._cross = invariants.CrossState()
        self._profile = load_profile() if self.check_share > 0 else None
        self._keys = {id(t): f"variant-{i}" for i, t in enumerate(self.templates)}
        self._requests = {id(t): json.loads(t.body) for t in self.templates} if self.check_share > 0 else {}
        self.t0 = time.monotonic_ns()
        self.warmup_end = self.t0 + int(o.warmup * 1e9)
        run_time = run_time_hint or getattr(o, "run_time", None) or 0
        # run_time: the stages (sending); Locust's own timer was given the drain on top (session.py)
        self.run_end = self.t0 + int(run_time * 1e9) if run_time else None
        self.drain_ns = int(float(getattr(o, "drain", 60.0)) * 1e9)
        self.request_timeout_s = float(getattr(o, "request_timeout", 120.0))
        self.in_flight: dict[str, tuple[RequestRecord, list[int]]] = {}
        self.sending_over = gevent.event.Event()
        self.drained = gevent.event.Event()
        self.on_drained: list[Any] = []  # callbacks once every request is accounted for
        self.measure_end = self.run_end - int(o.cooldown * 1e9) if self.run_end else None
        self.quota = int(arrivals.share(o.requests, processes, index)) if o.requests else None
        self.schedule: arrivals.Schedule | None = None
        self._open = o.rate > 0
        self._options = o
        self._processes = processes
        self._started = gevent.event.Event()
        if not self._open:
            self._started.set()
        self.issued = 0
        self.sent = 0
        self._first: list[tuple[str | None, int | None, str]] | None = []  # for the early stop
        self.stopped_early = ""
        self.done = 0
        self.errors = 0
        self.finished = False
        self._request_ids = 0
        # request ids are UUIDs (servers such as llama.cpp reject anything else): a random version-4
        # UUID per process whose last group counts requests, so ids stay unique and cost no syscall
        self._prefix = str(uuid.uuid4())[:24]
        self.stats = LoadStats(per_request_slos(o.slo))
        name = "requests.jsonl.gz" if processes == 1 else f"requests-part{index}.jsonl.gz"
        self.writer = RecordWriter(run_dir / name)
        # Everything built so far lives for the whole run: move it out of the collector's reach, so a
        # full collection during the load window walks only the run's own new objects (a full pass
        # over Locust, gevent and the templates costs tens of ms, and every stamp taken meanwhile is late).
        gc.collect()
        gc.freeze()
        self.probe = probe.SaturationProbe()
        self.probe.start()
        self._fire = environment.events.request.fire
        self._name = self.workload.name
        self.users_started = 0
        self._expected_users = int(getattr(environment.runner, "target_user_count", 0) or 0)
        if self._open:
            gevent.spawn_later(3.0, self.begin_schedule)  # never wait on spawning for long
        self._drainer = gevent.spawn(self._drain)

    def user_started(self) -> None:
        """Called by each user's on_start: the schedule starts when the last one is up."""
        self.users_started += 1
        if self._open and self._expected_users and self.users_started >= self._expected_users:
            self.begin_schedule()

    def begin_schedule(self) -> None:
        """Open loop starts once every user is spawned: spawning is not the target's queueing."""
        if self._started.is_set():
            return
        o, index, processes = self._options, self.index, self._processes
        now = time.monotonic_ns()
        self.warmup_end = max(self.warmup_end, now)
        if self.measure_end is not None:
            self.warmup_end = min(self.warmup_end, self.measure_end)
        self.schedule = arrivals.Schedule(
            now,
            arrivals.share(float(o.rate), processes, index),
            o.arrival,
            burstiness=o.burstiness,
            seed=arrivals.process_seed(o.seed, index),
            end_ns=self.run_end,
            limit=self.quota,
        )
        self._started.set()

    # -- asked by users ------------------------------------------------------------------------------
    def next_send(self) -> int | None:
        """Open loop: the next intended send time; closed loop: 0 (now). None: this process is done."""
        if self.sending_over.is_set():
            return None
        if self._open:
            self._started.wait()
            assert self.schedule is not None
            t = self.schedule.next()
            if t is None:  # every slot is handed out (idle users draw ahead): not yet all sent
                return None
            self.stats.offer(self.stage_of(t))
            if self.run_end is not None and time.monotonic_ns() >= self.run_end:
                self.sending_over.set()  # offered in the window, but the window is over: never sent
                return None
            return t
        if self.quota is not None and self.issued >= self.quota:
            return None
        if self.run_end is not None and time.monotonic_ns() >= self.run_end:
            self.sending_over.set()
            return None
        self.issued += 1
        return 0

    def new_client(self) -> HTTPClient:
        """One keep-alive connection to the target (a user's own; replaced when a request is cut off)."""
        return connection.new_client(
            self.chat_url,
            timeout_s=self.request_timeout_s,
            **self._tls,  # type: ignore[arg-type]
        )

    def pick(self) -> Template:
        return self.deck.next()

    def sample(self) -> bool:
        """Is the next request one whose whole answer the invariants judge (``--check-sample``)?"""
        share = self.check_share
        return share >= 1.0 or (share > 0.0 and self._check_rng.random() < share)

    def judge(self, template: Template, rec: RequestRecord, headers: dict[str, str], body: bytes) -> None:
        """Run the invariant registry on one sampled answer (whole: never a cut or timed-out one)."""
        if self._profile is None or rec.status is None or rec.incomplete:
            return
        if rec.error_class in ("connect", "timeout", "disconnect"):
            return
        observed = invariants.Observed(
            request=self._requests[id(template)],
            status=rec.status,
            headers=headers,
            body=body,
            received_at=time.time(),
            elapsed_s=((rec.t_end or rec.t_send) - rec.t_send) / 1e9,
            request_id=rec.request_id,
            request_key=self._keys.get(id(template)),
        )
        self.tally.add(invariants.examine(observed, self._profile, self._cross))

    def new_request_id(self) -> str:
        self._request_ids += 1
        return f"{self._prefix}{self._request_ids:012x}"

    def stage_of(self, t_ns: int) -> str:
        if t_ns < self.warmup_end:
            return "warmup"
        if self.measure_end is not None and t_ns >= self.measure_end:
            return "cooldown"
        return "measure"

    def track(self, rec: RequestRecord, chunk_times: list[int]) -> None:
        """A request is being sent: it stays here until it is recorded (``chunk_times`` fills as it
        streams, so a request cut off by the drain keeps what it received)."""
        self.in_flight[rec.request_id] = (rec, chunk_times)
        self.sent += 1
        if self.quota is not None and self.sent >= self.quota:
            self.sending_over.set()  # --requests: the last one is out

    def record(self, rec: RequestRecord, chunk_times: list[int]) -> None:
        if self.in_flight.pop(rec.request_id, None) is None:
            return  # already written as incomplete when the drain ended
        self._record(rec, chunk_times)
        if not self.in_flight and self.sending_over.is_set():
            self.drained.set()

    def _record(self, rec: RequestRecord, chunk_times: list[int]) -> None:
        self.stats.add(rec, itl_gaps(chunk_times) if len(chunk_times) > 1 else ())
        self.writer.write(rec)
        self.done += 1
        if rec.incomplete:
            return
        if self._first is not None:
            self._watch_first(rec)
        exc = None
        if rec.error_class is not None:
            self.errors += 1
            exc = RuntimeError(f"{rec.error_class}: {rec.error or ''}"[:200])
        if rec.t_first is not None:
            self._fire(
                request_type="TTFT",
                name=self._name,
                response_time=(rec.t_first - rec.t_send) / 1e6,
                response_length=rec.content_chunks,
                exception=None,
                context={},
            )
        self._fire(
            request_type="E2E",
            name=self._name,
            response_time=((rec.t_end or rec.t_send) - rec.t_send) / 1e6,
            response_length=rec.response_bytes,
            exception=exc,
            context={},
        )

    def _watch_first(self, rec: RequestRecord) -> None:
        """The same 4xx for each of the first requests is a mistake (key, model, path, request id
        header), not load: stop instead of hammering the server (429 is overload: measured, never this)."""
        assert self._first is not None
        self._first.append((rec.error_class, rec.status, f"[{rec.request_id}] {rec.error or ''}"[:200]))
        if len(self._first) < EARLY_STOP_AFTER:
            return
        first, self._first = self._first, None
        if all(cls == "4xx" for cls, _, _ in first) and len({status for _, status, _ in first}) == 1:
            self.stopped_early = (
                f"stopped early: the first {len(first)} requests all failed with HTTP {first[0][1]} "
                f"(first: {first[0][2]}); more would only repeat it"
            )
            log.error("eyechart: %s", self.stopped_early)
            self.sending_over.set()

    # -- lifecycle -----------------------------------------------------------------------------------
    def _drain(self) -> None:
        """After the last stage: wait for the requests in flight, up to ``--drain``; then the rest is
        ``incomplete`` and the process is done (``on_drained`` callbacks: quit or tell the master)."""
        if self.run_end is not None:
            self.sending_over.wait(max(0.0, (self.run_end - time.monotonic_ns()) / 1e9))
            self.sending_over.set()
        else:
            self.sending_over.wait()
        if self.schedule is not None and self.run_end is not None:  # slots of the window never sent
            while (t := self.schedule.next()) is not None:
                self.stats.offer(self.stage_of(t))
        if self.in_flight:
            self.drained.wait(self.drain_ns / 1e9)

        self.close_incomplete()
        self.drained.set()
        for callback in self.on_drained:
            callback()

    def close_incomplete(self) -> None:
        """Write every request still in flight as ``incomplete`` with its partial timings."""
        now = time.monotonic_ns()
        for rid in list(self.in_flight):
            rec, chunk_times = self.in_flight.pop(rid)
            rec.incomplete = True
            rec.t_end = now
            rec.content_chunks = len(chunk_times)
            if chunk_times:
                rec.t_first = chunk_times[0]
            self._record(rec, list(chunk_times))

    def report(self) -> dict[str, Any]:
        return {
            "stats": self.stats.serialize(),
            "probe": self.probe.snapshot(),
            "done": self.done,
            "errors": self.errors,
            "index": self.index,
            "info": self.info(),
            "final": self.finished,
            "clock_ns": time.monotonic_ns(),  # this host's clock: the master never compares its own with it
            "stopped_early": self.stopped_early,
            "invariants": self.tally.to_dict(),
        }

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "workload": self.workload.name,
            "templates": len(self.templates),
            "t0_ns": self.t0,
            "warmup_end_ns": self.warmup_end,
            "measure_end_ns": self.measure_end,
            "run_end_ns": self.run_end,
        }

    def finish(self) -> None:
        self._drainer.kill(block=False)
        self.sending_over.set()
        self.close_incomplete()  # stopped early (Ctrl-C, --run-time of plain Locust): still one record each
        self.probe.stop()
        self.writer.close()
        self.finished = True


def user_headers() -> dict[str, str]:
    """The run's ``--header`` values. They come by environment (``EYECHART_HEADERS``, a JSON object), never
    on a command line, because a gateway's api-key header is a secret too; summaries show them only as
    :func:`eyechart.wire.reproducer.shown_headers` does."""
    return dict(json.loads(os.environ.get("EYECHART_HEADERS") or "{}"))


def parse_fraction(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    t = str(text).strip()
    value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    return value


def per_request_slos(text: str) -> dict[str, float]:
    if not text:
        return {}
    return dict(gates.per_request_slos(gates.parse_slo(text)))
