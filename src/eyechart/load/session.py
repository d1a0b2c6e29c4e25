"""A load run inside Locust, wired through Locust's own events (nothing in Locust is patched).

``install(events, write_reports=...)`` (called by ``loadtests/locustfile.py``) registers eyechart's
command-line options (``init_command_line_parser``) and hooks: ``test_start`` builds a
:class:`~eyechart.load.process.LoadSession` in each process that runs users;
``report_to_master``/``worker_report`` ship each worker's mergeable stats to the master; ``test_stop``
on the master (or the single local process) hands over to :func:`eyechart.load.finish.finalize`;
``quitting`` sets Locust's exit code to eyechart's (``eyechart.exitcodes``). The API key comes only
from ``EYECHART_API_KEY`` so it is never on a command line.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from eyechart.exitcodes import ExitCode
from eyechart.load import arrivals, hosts, probe
from eyechart.load.finish import ReportWriter, finalize
from eyechart.load.process import LoadSession as LoadSession  # re-exported: the users' per-process state
from eyechart.runs import new_run_dir

log = logging.getLogger("eyechart.load")
_RUN_MESSAGE = "eyechart_run"
_FINISH_MESSAGE = "eyechart_finish"
_DRAINED_MESSAGE = "eyechart_drained"
_DRAIN_MARGIN_S = 5.0  # Locust's own --run-time timer is a backstop behind the session's drain


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
        "--max-loop-lag-ms", type=float, default=None, help="invalid above this loop-lag p99 (explicit only)"
    )
    g.add_argument("--max-cpu", type=float, default=probe.DEFAULT_MAX_CPU, help="saturation budget (cores)")
    g.add_argument("--min-requests", type=int, default=20, help="fewer measured requests: invalid run")
    g.add_argument(
        "--drain",
        type=float,
        default=60.0,
        help="seconds requests in flight may finish after the last stage (then: incomplete)",
    )
    g.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take")
    g.add_argument("--request-id-header", default="X-Request-Id", help="header carrying each request's UUID")
    g.add_argument("--no-request-id", action="store_true", help="send no request id header")
    g.add_argument(
        "--check-sample", default="0.5%", help="share of answers the invariants judge (100%%: all)"
    )
    g.add_argument("--ca-bundle", default="", help="CA certificates to trust for an https target")
    g.add_argument("--insecure", action="store_true", help="do not verify the https target's certificate")
    g.add_argument("--max-tokens-param", default="max_tokens", help="max_tokens or max_completion_tokens")


class _State:
    session: LoadSession | None = None
    run_dir: Path | None = None
    worker_reports: dict[str, dict[str, Any]] = {}  # noqa: RUF012
    exit_code: int | None = None
    finalized = False
    progress_greenlet: Any = None
    processes: int = 1
    run_time: float | None = None  # workers learn the master's --run-time from eyechart's message
    send_time: float | None = None  # --run-time as given: the stages; Locust's timer gets the drain too
    drained: set[str] = set()  # noqa: RUF012
    started_wall: str = ""


STATE = _State()


def current_session() -> LoadSession | None:
    return STATE.session


def _role(environment: Any) -> str:
    if isinstance(environment.runner, MasterRunner):
        return "master"
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    return "local"


def _new_run_dir(options: Any) -> Path:
    if not options.run_dir:
        return new_run_dir(options.report_dir, "load")
    path = Path(options.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def install(events: Any, *, write_reports: ReportWriter) -> None:
    """Register eyechart's options and hooks on Locust's ``events`` (from the locustfile); the run
    folder is written with ``write_reports`` (``eyechart.report.load.write_reports``)."""

    def on_parser(parser: Any) -> None:
        add_arguments(parser)

    def on_init(environment: Any, **_kw: Any) -> None:
        runner = environment.runner
        if runner is None:
            return
        role = _role(environment)
        o = environment.parsed_options
        if role in ("master", "local") and getattr(o, "run_time", None):
            # --run-time is the stages; the requests in flight then get --drain, so Locust's own timer
            # (spawned after this hook) stops the run only if the session's drain did not end it first
            STATE.send_time = float(o.run_time)
            o.run_time = int(o.run_time + o.drain + _DRAIN_MARGIN_S + 1)
        if role == "worker":

            def on_run(msg: Any = None, **_kw: Any) -> None:
                STATE.run_dir = Path(msg.data["run_dir"])
                STATE.processes = int(msg.data["processes"])
                STATE.run_time = msg.data.get("run_time")

            runner.register_message(_RUN_MESSAGE, on_run)

            def on_finish(msg: Any = None, **_kw: Any) -> None:
                # The master is about to merge: stop our users (gracefully) so test_stop closes the
                # record file; the next periodic report carries final=True.
                gevent.spawn(runner.stop)

            runner.register_message(_FINISH_MESSAGE, on_finish)
        if role == "master":

            def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
                if "eyechart" in data:
                    STATE.worker_reports[client_id] = data["eyechart"]

            events.worker_report.add_listener(on_worker_report)
            runner.register_message(hosts.RECORDS_MESSAGE, hosts.receiver(lambda: STATE.run_dir))

            def on_drained(msg: Any = None, **_kw: Any) -> None:
                STATE.drained.add(str(msg.node_id))
                if len(STATE.drained) >= max(1, runner.worker_count):
                    gevent.spawn(runner.quit)  # every worker has accounted for every request

            runner.register_message(_DRAINED_MESSAGE, on_drained)

    def on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
        if STATE.session is not None:
            data["eyechart"] = STATE.session.report()

    def on_test_start(environment: Any, **_kw: Any) -> None:
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
                        "run_time": STATE.send_time,
                    },
                )
            STATE.progress_greenlet = gevent.spawn(_progress_loop, environment)
        if role in ("worker", "local"):
            index = getattr(environment.runner, "worker_index", 0) if role == "worker" else 0
            processes = max(1, STATE.processes) if role == "worker" else 1
            # a worker may be on another host: its records go to the master over the wire (hosts.py)
            run_dir = hosts.worker_dir() if role == "worker" else STATE.run_dir or _new_run_dir(o)
            try:
                send_time = STATE.send_time if role == "local" else STATE.run_time
                STATE.session = LoadSession(
                    environment, run_dir, max(0, index), processes, run_time_hint=send_time
                )
                runner = environment.runner
                if role == "local":
                    STATE.session.on_drained.append(lambda: gevent.spawn(runner.quit))
                else:
                    STATE.session.on_drained.append(lambda: runner.send_message(_DRAINED_MESSAGE))
            except Exception as exc:
                log.error("eyechart: cannot start the load run: %s", exc)
                STATE.exit_code = int(ExitCode.USAGE)
                environment.process_exit_code = int(ExitCode.USAGE)
                gevent.spawn_later(0.1, environment.runner.quit)
                raise

    def on_spawning_complete(user_count: int = 0, **_kw: Any) -> None:
        if STATE.session is not None:
            STATE.session.begin_schedule()

    def on_test_stop(environment: Any, **_kw: Any) -> None:
        role = _role(environment)
        if STATE.session is not None and role in ("worker", "local"):
            STATE.session.finish()
            if role == "worker":  # the master needs the final numbers; report_to_master follows stop
                hosts.ship_records(environment.runner, STATE.session.writer.path, STATE.session.index)
                return
        if role == "master":
            # Locust's quit() fires test_stop before it tells workers anything: ask them to stop now
            environment.runner.send_message(_FINISH_MESSAGE)
            _wait_for_final_reports(environment)
        if role in ("master", "local"):
            _finalize(environment, write_reports)

    def on_quitting(environment: Any, **_kw: Any) -> None:
        role = _role(environment)
        if role in ("master", "local") and not STATE.finalized and STATE.run_dir is not None:
            _finalize(environment, write_reports)
        if STATE.exit_code is not None and role in ("master", "local"):
            environment.process_exit_code = STATE.exit_code

    events.init_command_line_parser.add_listener(on_parser)
    events.init.add_listener(on_init)
    events.report_to_master.add_listener(on_report_to_master)
    events.test_start.add_listener(on_test_start)
    events.spawning_complete.add_listener(on_spawning_complete)
    events.test_stop.add_listener(on_test_stop)
    events.quitting.add_listener(on_quitting)


def _wait_for_final_reports(environment: Any, timeout: float = 15.0) -> None:
    """Workers send their last stats after they stop; the master waits for them before merging."""
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
    assert STATE.run_dir is not None
    path = STATE.run_dir / "progress.json"
    while True:
        try:
            p = _progress(environment)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(p))
            tmp.replace(path)
        except Exception as exc:
            log.debug("progress: %s", exc)
        gevent.sleep(0.5)


def _finalize(environment: Any, write_reports: ReportWriter) -> None:
    """Once per run (``test_stop`` or ``quitting``, whichever comes first): the run folder and exit code."""
    if STATE.finalized or STATE.run_dir is None:
        return
    STATE.finalized = True
    if STATE.progress_greenlet is not None:
        STATE.progress_greenlet.kill(block=False)
    code = finalize(
        environment,
        STATE.run_dir,
        STATE.session,
        STATE.worker_reports,
        STATE.started_wall,
        _role(environment),
        write_reports,
    )
    STATE.exit_code = code
    environment.process_exit_code = code
