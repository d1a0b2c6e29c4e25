"""The per-process side of a load run inside Locust, wired through Locust's own events.

``install(events)`` (called by ``loadtests/locustfile.py``) registers eyechart's command-line options
(``init_command_line_parser``) and hooks: ``test_start`` builds a :class:`LoadSession` in each process
that runs users (workload templates, arrival schedule, stats, record writer, saturation probe);
``report_to_master``/``worker_report`` ship each worker's mergeable stats to the master; ``test_stop``
on the master (or the single local process) merges them, judges the gates and writes the reports;
``quitting`` sets Locust's exit code to eyechart's (DESIGN.md "Exit codes"). Nothing in Locust is
patched. The API key comes only from ``EYECHART_API_KEY`` so it is never on a command line.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eyechart import __version__
from eyechart.exitcodes import ExitCode
from eyechart.load import arrivals, probe
from eyechart.load.metrics import itl_gaps
from eyechart.load.records import RequestRecord
from eyechart.load.workloads import Template, build_templates, load_workload

log = logging.getLogger("eyechart.load")
_RUN_MESSAGE = "eyechart_run"
_FINISH_MESSAGE = "eyechart_finish"


def add_arguments(parser: Any) -> None:
    """eyechart's options on Locust's parser (they also appear in the web UI)."""
    g = parser.add_argument_group("eyechart", "eyechart load options (API key: $EYECHART_API_KEY)")
    g.add_argument("--workload", default="captioning-mixed", help="workload name or .toml file")
    g.add_argument("--model", default="", help="model id (default: the only one /models lists)")
    g.add_argument("--rate", type=float, default=0.0, help="open loop: requests/s (0: closed loop)")
    g.add_argument("--arrival", default="poisson", choices=list(arrivals.ARRIVALS), help="open-loop process")
    g.add_argument("--burstiness", type=float, default=1.0, help="gamma arrivals: CV of the gaps")
    g.add_argument("--warmup", type=float, default=0.0, help="seconds excluded from stats at the start")
    g.add_argument("--cooldown", type=float, default=0.0, help="seconds excluded from stats at the end")
    g.add_argument("--requests", type=int, default=0, help="stop after this many requests (0: by time)")
    g.add_argument("--seed", type=int, default=0, help="seed of arrivals and request choice")
    g.add_argument("--slo", default="", help='e.g. "ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%%"')
    g.add_argument("--baseline", default="", help="run folder to compare with")
    g.add_argument("--max-regression", default="10%", help="allowed regression against --baseline")
    g.add_argument("--report-dir", default="reports", help="where run folders are made")
    g.add_argument("--run-dir", default="", help="exact run folder (default: <report-dir>/<time>-load)")
    g.add_argument("--fixture-url", default="", help="base URL of a running fixture server (URL transport)")
    g.add_argument(
        "--max-loop-lag-ms", type=float, default=probe.DEFAULT_MAX_LAG_MS, help="saturation budget"
    )
    g.add_argument("--max-cpu", type=float, default=probe.DEFAULT_MAX_CPU, help="saturation budget (cores)")
    g.add_argument("--min-requests", type=int, default=20, help="fewer measured requests: invalid run")
    g.add_argument("--max-tokens-param", default="max_tokens", help="max_tokens or max_completion_tokens")


class LoadSession:
    """Everything one load process needs while users run; the user asks it what to send and when."""

    def __init__(self, environment: Any, run_dir: Path, index: int, processes: int) -> None:
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
        self.workload = load_workload(o.workload)
        model = o.model or discover_model(host, key)
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
        self.t0 = time.monotonic_ns()
        self.warmup_end = self.t0 + int(o.warmup * 1e9)
        run_time = getattr(o, "run_time", None) or STATE.run_time or 0
        self.run_end = self.t0 + int(run_time * 1e9) if run_time else None
        self.measure_end = self.run_end - int(o.cooldown * 1e9) if self.run_end else None
        self.quota = int(arrivals.share(o.requests, processes, index)) if o.requests else None
        self.schedule: arrivals.Schedule | None = None
        self._open = o.rate > 0
        self._options = o
        self._processes = processes
        import gevent.event

        self._started = gevent.event.Event()
        if not self._open:
            self._started.set()
        self.issued = 0
        self.done = 0
        self.errors = 0
        self.finished = False
        self._request_ids = 0
        self._prefix = f"ec-{uuid.uuid4().hex[:8]}-{index}-"
        from eyechart.load.stats import LoadStats

        self.stats = LoadStats(_per_request_slos(o.slo))
        from eyechart.load.recordfile import RecordWriter

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
            import gevent

            gevent.spawn_later(3.0, self.begin_schedule)  # never wait on spawning for long

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
        if self._open:
            self._started.wait()
            assert self.schedule is not None
            return self.schedule.next()
        if self.quota is not None and self.issued >= self.quota:
            return None
        if self.run_end is not None and time.monotonic_ns() >= self.run_end:
            return None
        self.issued += 1
        return 0

    def pick(self) -> Template:
        return self._rng.choice(self.templates)

    def new_request_id(self) -> str:
        self._request_ids += 1
        return f"{self._prefix}{self._request_ids}"

    def stage_of(self, t_ns: int) -> str:
        if t_ns < self.warmup_end:
            return "warmup"
        if self.measure_end is not None and t_ns >= self.measure_end:
            return "cooldown"
        return "measure"

    def record(self, rec: RequestRecord, chunk_times: list[int]) -> None:
        self.stats.add(rec, itl_gaps(chunk_times) if len(chunk_times) > 1 else ())
        self.writer.write(rec)
        self.done += 1
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

    # -- lifecycle -----------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {
            "stats": self.stats.serialize(),
            "probe": self.probe.snapshot(),
            "done": self.done,
            "errors": self.errors,
            "index": self.index,
            "info": self.info(),
            "final": self.finished,
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
        self.probe.stop()
        self.writer.close()
        self.finished = True


def parse_fraction(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    t = str(text).strip()
    value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    return value


def _per_request_slos(text: str) -> dict[str, float]:
    if not text:
        return {}
    from eyechart.load import gates

    return dict(gates.per_request_slos(gates.parse_slo(text)))


def discover_model(base_url: str, api_key: str, timeout: float = 10.0) -> str:
    """The only model ``/models`` lists; anything else is a configuration error (exit 2)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ModelError(f"target {base_url} is unreachable: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise ModelError(f"{base_url}/models answered HTTP {r.status_code}; give --model")
    try:
        ids = [m["id"] for m in r.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{base_url}/models did not return a model list; give --model") from None
    if len(ids) != 1:
        raise ModelError(f"{base_url}/models lists {len(ids)} models ({', '.join(ids[:5])}); give --model")
    return str(ids[0])


class ModelError(RuntimeError):
    """No single model to use (exit code 2)."""


# -- wiring into Locust -----------------------------------------------------------------------------


class _State:
    session: LoadSession | None = None
    run_dir: Path | None = None
    worker_reports: dict[str, dict[str, Any]] = {}  # noqa: RUF012
    exit_code: int | None = None
    finalized = False
    progress_greenlet: Any = None
    processes: int = 1
    run_time: float | None = None  # workers learn the master's --run-time from eyechart's message
    started_wall: str = ""


STATE = _State()


def current_session() -> LoadSession | None:
    return STATE.session


def _role(environment: Any) -> str:
    from locust.runners import MasterRunner, WorkerRunner

    if isinstance(environment.runner, MasterRunner):
        return "master"
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    return "local"


def _new_run_dir(options: Any) -> Path:
    if options.run_dir:
        path = Path(options.run_dir)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(options.report_dir) / f"{stamp}-load"
    path.mkdir(parents=True, exist_ok=True)
    return path


def install(events: Any) -> None:
    """Register eyechart's options and hooks on Locust's ``events`` (from the locustfile)."""

    @events.init_command_line_parser.add_listener
    def _(parser: Any) -> None:
        add_arguments(parser)

    @events.init.add_listener
    def _(environment: Any, **_kw: Any) -> None:
        runner = environment.runner
        if runner is None:
            return
        role = _role(environment)
        if role == "worker":

            def on_run(msg: Any = None, **_kw: Any) -> None:
                STATE.run_dir = Path(msg.data["run_dir"])
                STATE.processes = int(msg.data["processes"])
                STATE.run_time = msg.data.get("run_time")

            runner.register_message(_RUN_MESSAGE, on_run)

            def on_finish(msg: Any = None, **_kw: Any) -> None:
                # The master is about to merge: stop our users (gracefully) so test_stop closes the
                # record file; the next periodic report carries final=True.
                import gevent

                gevent.spawn(runner.stop)

            runner.register_message(_FINISH_MESSAGE, on_finish)
        if role == "master":

            @events.worker_report.add_listener
            def _(client_id: str, data: dict[str, Any]) -> None:
                if "eyechart" in data:
                    STATE.worker_reports[client_id] = data["eyechart"]

    @events.report_to_master.add_listener
    def _(client_id: str, data: dict[str, Any]) -> None:
        if STATE.session is not None:
            data["eyechart"] = STATE.session.report()

    @events.test_start.add_listener
    def _(environment: Any, **_kw: Any) -> None:
        role = _role(environment)
        o = environment.parsed_options
        STATE.started_wall = datetime.now(UTC).isoformat(timespec="seconds")
        if role in ("master", "local"):
            STATE.run_dir = _new_run_dir(o)
            STATE.finalized = False
            if role == "master":
                environment.runner.send_message(
                    _RUN_MESSAGE,
                    {
                        "run_dir": str(STATE.run_dir.resolve()),
                        "processes": environment.runner.worker_count,
                        "run_time": getattr(o, "run_time", None),
                    },
                )
            import gevent

            STATE.progress_greenlet = gevent.spawn(_progress_loop, environment)
        if role in ("worker", "local"):
            index = getattr(environment.runner, "worker_index", 0) if role == "worker" else 0
            processes = max(1, STATE.processes) if role == "worker" else 1
            run_dir = STATE.run_dir or _new_run_dir(o)
            try:
                STATE.session = LoadSession(environment, run_dir, max(0, index), processes)
            except Exception as exc:
                log.error("eyechart: cannot start the load run: %s", exc)
                STATE.exit_code = int(ExitCode.USAGE)
                environment.process_exit_code = int(ExitCode.USAGE)
                import gevent

                gevent.spawn_later(0.1, environment.runner.quit)
                raise

    @events.spawning_complete.add_listener
    def _(user_count: int = 0, **_kw: Any) -> None:
        if STATE.session is not None:
            STATE.session.begin_schedule()

    @events.test_stop.add_listener
    def _(environment: Any, **_kw: Any) -> None:
        role = _role(environment)
        if STATE.session is not None and role in ("worker", "local"):
            STATE.session.finish()
            if role == "worker":  # the master needs the final numbers; report_to_master follows stop
                return
        if role == "master":
            # Locust's quit() fires test_stop before it tells workers anything: ask them to stop now
            environment.runner.send_message(_FINISH_MESSAGE)
            _wait_for_final_reports(environment)
        if role in ("master", "local"):
            _finalize(environment)

    @events.quitting.add_listener
    def _(environment: Any, **_kw: Any) -> None:
        role = _role(environment)
        if role in ("master", "local") and not STATE.finalized and STATE.run_dir is not None:
            _finalize(environment)
        if STATE.exit_code is not None and role in ("master", "local"):
            environment.process_exit_code = STATE.exit_code


def _wait_for_final_reports(environment: Any, timeout: float = 15.0) -> None:
    """Workers send their last stats after they stop; the master waits for them before merging."""
    import gevent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        expected = max(1, environment.runner.worker_count, len(STATE.worker_reports))
        finals = sum(1 for r in STATE.worker_reports.values() if r.get("final"))
        if finals >= expected:
            return
        gevent.sleep(0.1)
    log.warning("eyechart: not every worker sent its final numbers; the report may miss some requests")


def _progress(environment: Any) -> dict[str, Any]:
    stats = environment.runner.stats if environment.runner else environment.stats
    ttft = e2e = None
    for (name, method), entry in stats.entries.items():
        del name
        if method == "TTFT":
            ttft = entry if ttft is None else ttft
        elif method == "E2E":
            e2e = entry if e2e is None else e2e
    out: dict[str, Any] = {"time": time.time(), "state": getattr(environment.runner, "state", "")}
    out["requests"] = e2e.num_requests if e2e else 0
    out["errors"] = e2e.num_failures if e2e else 0
    out["ttft_p50_ms"] = ttft.get_current_response_time_percentile(0.5) if ttft else None
    out["ttft_p95_ms"] = ttft.get_current_response_time_percentile(0.95) if ttft else None
    out["rps"] = e2e.current_rps if e2e else 0.0
    return out


def _progress_loop(environment: Any) -> None:
    import gevent

    o = environment.parsed_options
    assert STATE.run_dir is not None
    path = STATE.run_dir / "progress.json"
    while True:
        try:
            p = _progress(environment)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(p))
            tmp.replace(path)
            if o.requests and p["requests"] >= o.requests and not STATE.finalized:
                gevent.spawn(environment.runner.quit)
                return
        except Exception as exc:
            log.debug("progress: %s", exc)
        gevent.sleep(0.5)


def _finalize(environment: Any) -> None:
    """Merge, judge and write the run folder (master or local process)."""
    if STATE.finalized or STATE.run_dir is None:
        return
    STATE.finalized = True
    if STATE.progress_greenlet is not None:
        STATE.progress_greenlet.kill(block=False)
    role = _role(environment)
    o = environment.parsed_options
    run_dir = STATE.run_dir
    from eyechart.load.stats import LoadStats

    if role == "local" and STATE.session is not None:
        s = STATE.session
        stats = s.stats
        probes = {"process-0": s.probe.snapshot()}
        info = s.info()
    else:
        stats = LoadStats(_per_request_slos(o.slo))
        probes = {}
        info = {}
        for client_id, rep in sorted(STATE.worker_reports.items(), key=lambda kv: kv[1].get("index", 0)):
            stats.merge_serialized(rep["stats"])
            probes[f"worker-{rep.get('index', client_id)}"] = rep["probe"]
            info = info or rep.get("info", {})
        _join_parts(run_dir)
    now = time.monotonic_ns()
    measure_s = None
    if info.get("measure_end_ns") and not o.requests:
        end = min(now, info["measure_end_ns"])
        measure_s = max(0.0, (end - info["warmup_end_ns"]) / 1e9)
    interrupted = bool(info.get("run_end_ns")) and now < info["run_end_ns"] - int(0.5e9)
    saturation = probe.verdict(probes, o.max_loop_lag_ms, o.max_cpu)
    processes = max(1, len(probes))
    run_info: dict[str, Any] = {
        "tool": f"eyechart {__version__}",
        "started_at": STATE.started_wall,
        "base_url": environment.host,
        "model": info.get("model", o.model),
        "workload": info.get("workload", o.workload),
        "load_model": "open" if o.rate > 0 else "closed",
        "users": environment.parsed_options.num_users,
        "rate": o.rate or None,
        "arrival": o.arrival if o.rate > 0 else None,
        "burstiness": o.burstiness if o.rate > 0 and o.arrival == "gamma" else None,
        "warmup_s": o.warmup,
        "cooldown_s": o.cooldown,
        "requests_limit": o.requests or None,
        "seed": o.seed,
        "processes": processes,
        "partial": interrupted,
        "measure_duration_s": measure_s,
        "harness_saturated": not saturation["valid"],
        "harness_saturation_detail": "; ".join(saturation["reasons"]),
    }
    summary = stats.summary(run_info)
    summary["saturation"] = saturation
    from eyechart.load import gates

    verdict = gates.GateVerdict()
    code = int(ExitCode.OK)
    try:
        slos = gates.parse_slo(o.slo) if o.slo else []
        series = stats.throughput_series()
        verdict = gates.evaluate(
            summary,
            slos,
            baseline_dir=Path(o.baseline) if o.baseline else None,
            max_regression=parse_fraction(o.max_regression),
            histograms=stats.hists,
            throughput_series=series,
            min_requests=o.min_requests,
        )
        code = int(verdict.exit_code)
    except Exception as exc:  # a bad --slo or baseline is a usage error, reported, never a traceback
        log.error("eyechart: cannot judge the gates: %s", exc)
        code = int(ExitCode.USAGE)
    if not saturation["valid"] and code != ExitCode.USAGE:
        code = int(ExitCode.INVALID_RUN)
    from eyechart.report.load import write_reports

    try:
        write_reports(run_dir, summary, verdict, stats, _stages(info, o))
    except Exception as exc:  # never lose the numbers: fall back to the bare summary
        log.error("eyechart: cannot write the reports: %s: %s", type(exc).__name__, exc)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        code = max(code, int(ExitCode.INVALID_RUN))
    STATE.exit_code = code
    environment.process_exit_code = code
    log.info("eyechart: report in %s (exit %d)", run_dir, code)


def _stages(info: dict[str, Any], options: Any) -> list[dict[str, Any]]:
    """The planned stages (offsets from the start in seconds) for ``stages.csv``."""
    t0 = info.get("t0_ns")
    load = {"users": options.num_users, "rate": options.rate or None}
    if t0 is None:
        return [{"name": "measure", **load}]
    bounds = [
        ("warmup", t0, info.get("warmup_end_ns")),
        ("measure", info.get("warmup_end_ns"), info.get("measure_end_ns")),
        ("cooldown", info.get("measure_end_ns"), info.get("run_end_ns")),
    ]
    out = []
    for name, start, end in bounds:
        if start is not None and end is not None and end <= start:
            continue
        out.append(
            {
                "name": name,
                "start_s": None if start is None else round((start - t0) / 1e9, 3),
                "planned_s": None if start is None or end is None else round((end - start) / 1e9, 3),
                **load,
            }
        )
    return out


def _join_parts(run_dir: Path) -> None:
    """Worker record files -> one ``requests.jsonl.gz`` (concatenated gzip members are one stream)."""
    parts = sorted(run_dir.glob("requests-part*.jsonl.gz"))
    if not parts:
        return
    with (run_dir / "requests.jsonl.gz").open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out)
    for part in parts:
        part.unlink()
