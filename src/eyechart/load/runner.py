"""Orchestration of ``eyechart load``: target, model, the Locust subprocess, live progress, exit code.

Locust runs headless as a child process (``python -m locust -f <bundled locustfile> --headless``) so
its gevent monkey-patching never touches this process, and ``--processes N`` is Locust's own
master/worker mode. The child writes the run folder (Locust's CSV and HTML next to eyechart's reports)
and exits with eyechart's exit code. This process shows progress from ``progress.json`` and forwards
one SIGINT on Ctrl-C, so the child's ``quitting`` hook still writes a partial report.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.live import Live
from rich.text import Text

from eyechart import bundled, options
from eyechart.exitcodes import ExitCode
from eyechart.images.server import FixtureServer, FixtureServerError
from eyechart.load import sweep as sweeps
from eyechart.load.arrivals import ArrivalError, LoadModel
from eyechart.load.gates import GateError, parse_slo
from eyechart.load.workloads import Workload, WorkloadError, build_templates, load_workload
from eyechart.options import report_dir_problem
from eyechart.profiles import load_profile
from eyechart.runs import new_run_dir
from eyechart.target import DEFAULT_API_KEY
from eyechart.target.launch import TargetStartError, start_target
from eyechart.wire.discovery import TargetError, normalise_base_url, resolve_model


class RunError(RuntimeError):
    """A usage or configuration problem found before the load starts (exit code 2)."""


@dataclass
class RunPlan:
    base_url: str | None
    api_key: str | None
    model: str | None
    workload: str
    load: LoadModel
    duration_s: float | None
    requests: int | None
    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    slo: str = ""
    baseline: str = ""
    max_regression: str = "10%"
    report_dir: Path = Path("reports")
    processes: int = 1
    max_concurrency: int = 256
    min_requests: int = 20
    max_loop_lag_ms: float | None = None
    max_cpu: float | None = None
    target_args: tuple[str, ...] = ()
    quiet: bool = False
    fixture_host: str | None = None
    fixture_url: str | None = None
    headers: dict[str, str] | None = None  # --header: to the child by environment (may hold secrets)
    request_id_header: str | None = "X-Request-Id"
    ca_bundle: str | None = None
    insecure: bool = False
    check_sample: str = "0.5%"
    drain_s: float = 60.0
    request_timeout_s: float = 120.0
    sweep: sweeps.SweepSpec | None = None
    caps: sweeps.Caps = field(default_factory=sweeps.Caps)
    expect_workers: int = 0  # > 0: Locust master for workers started elsewhere (another host)
    master_port: int = 5557


SweepWriter = Callable[[Path, dict[str, Any]], None]
"""Writes a sweep's summary.json and index.html (``eyechart.report.load.write_sweep_report``)."""


def parse_duration(text: str) -> float:
    """``60s``, ``2m``, ``1h``, ``500ms`` or a bare number of seconds."""
    t = text.strip().lower()
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(unit):
            t, mult = t[: -len(unit)], scale
            break
    else:
        mult = 1.0
    try:
        value = float(t) * mult
    except ValueError:
        raise RunError(f"duration {text!r} is not like 60s, 2m or 1h") from None
    if not value > 0 or not math.isfinite(value):
        raise RunError(f"duration {text!r} must be positive")
    return value


def _is_private(url: str) -> bool:
    """True when ``url``'s host is loopback, private or link-local: a target refuses to fetch from it
    unless told otherwise (the reference target's ``--allow-private-urls``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            addr = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    return addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_unspecified


def start_fixture_server(plan: RunPlan) -> FixtureServer:
    """The fixture image server for URL transport, on ``--fixture-host`` (default 127.0.0.1) and
    announced as ``--fixture-url`` when the target reaches it by another address."""
    if plan.fixture_url and not plan.fixture_url.startswith(("http://", "https://")):
        raise RunError(f"--fixture-url {plan.fixture_url!r} is not an http(s) URL")
    server = FixtureServer(bind=plan.fixture_host or "127.0.0.1", public_url=plan.fixture_url)
    try:
        return server.start()
    except FixtureServerError as exc:
        raise RunError(f"cannot start the fixture server: {exc}") from None


def locust_command(
    plan: RunPlan, run_dir: Path, model: str, base_url: str, fixture_url: str | None = None
) -> list[str]:
    """The Locust command line; it never carries the API key (that goes in the environment)."""
    users = plan.load.users if plan.load.users is not None else plan.max_concurrency
    cmd = [
        sys.executable, "-m", "locust", "-f", str(bundled.loadtests_dir() / "locustfile.py"),
        "--headless", "--only-summary", "--host", base_url, "-u", str(users), "-r", str(users),
        "--csv", str(run_dir / "locust"),  # no --html: its Aggregated row counts TTFT+E2E twice
        "--workload", plan.workload, "--model", model, "--run-dir", str(run_dir),
        "--warmup", str(plan.warmup_s), "--cooldown", str(plan.cooldown_s), "--seed", str(plan.load.seed),
        "--drain", str(plan.drain_s), "--request-timeout", str(plan.request_timeout_s),
        "--check-sample", plan.check_sample,
        "--min-requests", str(plan.min_requests),
        "--max-regression", plan.max_regression,
    ]  # fmt: skip
    if plan.duration_s is not None:
        cmd += ["--run-time", f"{math.ceil(plan.warmup_s + plan.duration_s + plan.cooldown_s)}s"]
    if plan.requests is not None:
        cmd += ["--requests", str(plan.requests)]
    if plan.load.rate is not None:
        cmd += ["--rate", str(plan.load.rate), "--arrival", plan.load.arrival]
        cmd += ["--burstiness", str(plan.load.burstiness)]
    if plan.slo:
        cmd += ["--slo", plan.slo]
    if plan.baseline:
        cmd += ["--baseline", plan.baseline]
    if plan.max_loop_lag_ms is not None:
        cmd += ["--max-loop-lag-ms", str(plan.max_loop_lag_ms)]
    if plan.max_cpu is not None:
        cmd += ["--max-cpu", str(plan.max_cpu)]
    if plan.processes > 1:
        # Locust's forked workers dial --master-port: give this run's master a free port of its own and
        # tell both sides, so two multi-process runs on one machine never meet (Locust's 5557 is shared)
        port = str(_free_port())
        cmd += ["--processes", str(plan.processes), "--master-bind-port", port, "--master-port", port]
    if plan.expect_workers:  # workers connect from elsewhere; the master waits for them (bounded)
        cmd += ["--master", "--expect-workers", str(plan.expect_workers), "--expect-workers-max-wait", "300"]
        cmd += ["--master-bind-port", str(plan.master_port)]
    if fixture_url:
        cmd += ["--fixture-url", fixture_url]
    if plan.request_id_header:
        cmd += ["--request-id-header", plan.request_id_header]
    else:
        cmd += ["--no-request-id"]
    if plan.ca_bundle:
        cmd += ["--ca-bundle", plan.ca_bundle]
    if plan.insecure:
        cmd += ["--insecure"]
    return cmd


def execute(plan: RunPlan, write_sweep: SweepWriter | None = None) -> int:
    """Run the plan (one run, or a sweep of runs against the same target and fixture server);
    returns the exit code (:mod:`eyechart.exitcodes`)."""
    console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False, soft_wrap=True)
    target = fixtures = None
    try:
        workload = check_plan(plan)
        if workload.uses_url:
            fixtures = start_fixture_server(plan)
            if not plan.quiet:
                console.print(f"fixture server {fixtures.base_url} (image URLs the target fetches)")
        if plan.base_url:
            try:  # a bare http://host:port gets the default profile's base path, as in `conform`
                base_url = normalise_base_url(plan.base_url, load_profile())
            except TargetError as exc:
                raise RunError(str(exc)) from None
            api_key = plan.api_key or os.environ.get("EYECHART_API_KEY", "")
        else:
            api_key = plan.api_key or DEFAULT_API_KEY
            if not plan.quiet:
                console.print("starting the embedded target ...")
            target_args = plan.target_args
            if fixtures is not None and _is_private(fixtures.base_url):
                target_args = ("--allow-private-urls", *target_args)  # it fetches from our fixture server
            try:
                target = start_target(api_key=api_key, args=target_args)
            except TargetStartError as exc:
                raise RunError(f"cannot start the embedded target: {exc}") from None
            base_url = target.base_url
        try:  # the bounded probe: proves the target answers, and finds the model if none was given
            model = resolve_model(
                base_url,
                api_key or None,
                plan.model,
                headers=plan.headers,
                ca_bundle=plan.ca_bundle,
                insecure=plan.insecure,
            )
        except TargetError as exc:
            raise RunError(str(exc)) from None
        run_dir = new_run_dir(plan.report_dir, "load")
        fixture_url = fixtures.base_url if fixtures else None
        if plan.sweep is not None:
            code = _run_sweep(plan, run_dir, model, base_url, fixture_url, api_key, console, write_sweep)
        else:
            cmd = locust_command(plan, run_dir, model, base_url, fixture_url)
            code = _run_locust(cmd, run_dir, api_key, plan, console)
        if fixtures is not None:
            served = sum(fixtures.hits(f"/img/{s.value}") for s in workload.images if s.kind == "fixture")
            console.print(f"fixture server: {served} image fetches", markup=False)
        return code
    except RunError as exc:
        console.print(f"[bold red]eyechart load:[/] {exc}", markup=True)
        return int(ExitCode.USAGE)
    finally:
        if target is not None:
            target.stop()
        if fixtures is not None:
            fixtures.stop()


def _run_sweep(
    plan: RunPlan,
    run_dir: Path,
    model: str,
    base_url: str,
    fixture_url: str | None,
    api_key: str,
    console: Any,
    write_sweep: SweepWriter | None,
) -> int:
    """Each point is a whole Locust run in its own sub-folder; the sweep's summary goes on top."""
    assert plan.sweep is not None
    sweep = sweeps.Sweep(
        plan.sweep,
        plan.caps,
        probe_users=plan.load.users or sweeps.PROBE_USERS,
        duration_s=plan.duration_s,
        point_samples=2 * plan.min_requests,
    )

    def run_point(load: sweeps.PointLoad, folder: Path, prefix: str) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        model_ = replace(plan.load, users=load.users, rate=load.rate)
        limits = [n for n in (plan.requests, load.requests) if n is not None]
        p = replace(plan, load=model_, requests=min(limits) if limits else None)
        if load.duration_s is not None:
            p = replace(p, duration_s=load.duration_s)
        if load.requests is not None and p.duration_s is None:
            p = replace(p, duration_s=60.0)
        return _run_locust(
            locust_command(p, folder, model, base_url, fixture_url),
            folder,
            api_key,
            p,
            console,
            prefix,
            on_interrupt=sweep.stop,
        )

    sweep.run(run_dir, run_point)
    summary = sweeps.sweep_summary(
        sweep,
        run_dir,
        {
            "base_url": base_url,
            "embedded": plan.base_url is None,  # the target eyechart started itself
            "model": model,
            "workload": plan.workload,
            "slo": plan.slo,
        },
    )
    if write_sweep is not None:
        write_sweep(run_dir, summary)
    else:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), "utf-8")
    code = int(summary["verdict"]["exit_code"])
    knee = summary["sweep"]["knee"]
    for p in summary["sweep"]["points"]:
        mark = "knee" if knee and p["label"] == knee["label"] else "SATURATED" if p["saturated"] else ""
        console.print(
            f"  {p['label']:<16} achieved {p['achieved_rps'] or 0:7.2f} req/s  exit {p['exit_code']}"
            f"{'' if p['valid'] else '  INVALID'}  {mark}",
            markup=False,
        )
    for note in summary["sweep"]["notes"]:
        console.print(f"  note: {note}", markup=False)
    console.print(f"sweep report: {run_dir}  (exit {code})", markup=False)
    return code


def check_plan(plan: RunPlan) -> Workload:
    """Every mistake in the plan that can be found before anything starts (SLO syntax, report folder,
    baseline folder, workload keys and images): raised as one :class:`RunError` line naming the flag or
    file. Returns the workload."""
    if plan.slo:
        try:
            parse_slo(plan.slo)
        except GateError as exc:
            raise RunError(f"--slo: {exc}") from None
    problem = report_dir_problem(plan.report_dir)
    if problem:
        raise RunError(problem)
    if plan.baseline and not (Path(plan.baseline) / "summary.json").is_file():
        raise RunError(f"--baseline {plan.baseline!r} is not a load run folder (no summary.json in it)")
    try:
        workload = load_workload(plan.workload)
        # the same bodies the load processes will build, so bad images or keys show up now, not in locust.log
        build_templates(workload, plan.model or "model", url_for=lambda name: f"http://127.0.0.1/img/{name}")
    except (WorkloadError, OSError) as exc:
        raise RunError(f"--workload: {exc}") from None
    return workload


def _run_locust(
    cmd: list[str],
    run_dir: Path,
    api_key: str,
    plan: RunPlan,
    console: Any,
    prefix: str = "",
    on_interrupt: Callable[[], None] | None = None,
) -> int:
    env = {**os.environ, "EYECHART_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
    if plan.headers:
        env["EYECHART_HEADERS"] = json.dumps(plan.headers)  # never on a command line
    log_path = run_dir / "locust.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    interrupted = False

    def on_sigint(_signum: int, _frame: Any) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            if on_interrupt is not None:
                on_interrupt()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigint)
    try:
        _watch(proc, run_dir, plan, console, prefix)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        if proc.poll() is None:  # we are leaving early (an exception): never leave Locust behind
            proc.kill()
            proc.wait(timeout=10)
    _print_result(run_dir, code, interrupted, log_path, console)
    if code not in {int(c) for c in ExitCode}:
        return int(ExitCode.INVALID_RUN) if (run_dir / "summary.json").exists() else int(ExitCode.USAGE)
    return code


PLAIN_EVERY_S = 5.0  # off a terminal (CI logs, pipes): one progress line this often


def phase_of(plan: RunPlan, elapsed: float | None, p: dict[str, Any] | None) -> str:
    """Where the run is in its plan: starting, warmup, measure, cooldown, drain (in-flight requests
    finishing after the planned time) or reporting (Locust stopped, the reports are being written)."""
    if elapsed is None or p is None:
        return "starting"
    if p.get("state") in ("stopped", "stopping", "cleanup"):
        return "reporting" if p.get("state") != "stopping" else "drain"
    if elapsed < plan.warmup_s:
        return "warmup"
    if plan.requests is not None:
        return "measure" if p.get("requests", 0) < plan.requests else "drain"
    if elapsed < plan.warmup_s + (plan.duration_s or 0):
        return "measure"
    if elapsed < plan.warmup_s + (plan.duration_s or 0) + plan.cooldown_s:
        return "cooldown"
    return "drain"


def progress_line(plan: RunPlan, elapsed: float | None, p: dict[str, Any] | None) -> str:
    """The live line: phase and the run's clock against its plan (from the first progress Locust
    wrote, i.e. once the target is up and users start), run totals, and Locust's last-10-s window,
    each labelled as what it is."""
    phase = phase_of(plan, elapsed, p)
    span = (plan.duration_s or 0) + plan.warmup_s + plan.cooldown_s
    if elapsed is None or p is None:
        return f"[{phase}] waiting for the first requests ..."
    clock = f"{elapsed:.0f}s/{span:.0f}s" if span else f"{elapsed:.0f}s"
    of = f"/{plan.requests}" if plan.requests else ""
    p50, p95 = p.get("ttft_p50_ms"), p.get("ttft_p95_ms")
    ttft = f"TTFT p50 {p50:.0f} ms p95 {p95:.0f} ms" if p50 is not None and p95 is not None else "TTFT -"
    return (
        f"[{phase} {clock}] total: {p.get('requests', 0)}{of} requests, {p.get('errors', 0)} failed · "
        f"last 10 s: {p.get('rps', 0):.1f} req/s, {ttft}"
    )


def _watch(
    proc: subprocess.Popen[bytes], run_dir: Path, plan: RunPlan, console: Any, prefix: str = ""
) -> None:
    progress = run_dir / "progress.json"
    first: float | None = None  # wall time of the first progress Locust wrote: the run's clock starts

    def read() -> tuple[float | None, dict[str, Any] | None]:
        nonlocal first
        try:
            p = json.loads(progress.read_text())
        except (OSError, ValueError):
            return None, None
        if first is None:
            first = float(p.get("time") or time.time())
        return time.time() - first, p

    if plan.quiet:
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        return
    if not console.is_terminal:
        last, reported = 0.0, 0
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
            elapsed, p = read()
            failed = int((p or {}).get("errors") or 0)
            if (time.monotonic() - last >= PLAIN_EVERY_S or failed > reported) and proc.poll() is None:
                # a line every few seconds, and at once when requests start failing
                last, reported = time.monotonic(), failed
                console.print(prefix + progress_line(plan, elapsed, p), markup=False)
        return
    # Text, not a str: "[measure 3s/20s]" would otherwise be read as rich markup and vanish
    first_line = Text(prefix + progress_line(plan, None, None))
    with Live(first_line, console=console, refresh_per_second=4, transient=True) as live:
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.25)
            live.update(Text(prefix + progress_line(plan, *read())))


def _print_result(run_dir: Path, code: int, interrupted: bool, log_path: Path, console: Any) -> None:
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        console.print(f"load run failed (exit {code}); Locust's log: {log_path}")
        with contextlib.suppress(OSError):
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            console.print("\n".join(tail), markup=False)
        return
    try:
        s = json.loads(summary_path.read_text())
        for line in summary_lines(s):
            console.print(line, markup=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        console.print(f"(cannot read the summary: {exc})", markup=False)
    if interrupted:
        console.print("interrupted: the report is partial", markup=False)
    console.print(f"report: {run_dir / 'index.html'}  (exit {code})", markup=False)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The end summary, readable alone in a CI log: what ran against what, then the numbers."""
    run, m, r = s.get("run", {}), s["metrics"], s["requests"]
    closed = run.get("rate") is None
    if closed:
        load = f"closed loop, {run.get('users')} users"
    else:
        load = f"open loop, {run.get('rate')} req/s {run.get('arrival') or ''} arrivals".replace("  ", " ")
    stop = f"{run.get('requests_limit')} requests" if run.get("requests_limit") else ""
    stages = f"warmup {run.get('warmup_s') or 0:g} s, cooldown {run.get('cooldown_s') or 0:g} s"
    lines = [
        f"target    {run.get('base_url', '')}",
        f"model     {run.get('model', '')}",
        f"workload  {run.get('workload', '')}",
        f"load      {load}, {run.get('processes', 1)} process(es){' · ' + stop if stop else ''} · {stages}",
        f"measured  {r.get('offered', r['total'])} offered · {r.get('sent', r['total'])} sent · "
        f"{r.get('completed', r['ok'])} completed · {r['failed']} failed · "
        f"{r.get('incomplete', 0)} incomplete in {s['duration_s']:.1f} s · "
        f"{s['throughput']['requests_per_s']:.2f} req/s · "
        f"{s['throughput']['output_tokens_per_s']:.0f} output tok/s",
    ]

    def ms(name: str, stat: str) -> str:
        v = m.get(name, {}).get(stat)
        return "-" if v is None else f"{v:.1f}"

    # closed loop sends when the previous answer ends: TTFT_sched is TTFT there, so it is left out
    names = (
        ("ttft", "itl", "tpot", "e2e")
        if closed
        else ("ttft", "ttft_sched", "itl", "tpot", "e2e", "schedule_lag")
    )
    for name in names:
        if m.get(name, {}).get("count"):
            lines.append(
                f"  {name:<13} p50 {ms(name, 'p50'):>9} ms  p95 {ms(name, 'p95'):>9} ms  "
                f"p99 {ms(name, 'p99'):>9} ms"
            )
    errors = s.get("errors", {})
    examples = errors.get("examples") or {}
    for cls, n in (errors.get("by_class") or {}).items():
        if n:
            first = examples.get(cls) or []
            ex = first[0] if first else ""
            ex = ex if isinstance(ex, str) else json.dumps(ex, default=str)
            lines.append(f"  failed {cls:<9} {n:>6}  first: {' '.join(ex.split())[:300]}")
    for g in s.get("gates", []):
        mark = "PASS" if g.get("passed") else "FAIL"
        lines.append(f"  [{mark}] {g.get('name')}: {g.get('detail', '')}")
    lines += [f"  warning: {w}" for w in s.get("warnings", [])]
    return lines


def plan_from_args(args: Any) -> RunPlan:
    spec = None
    if getattr(args, "sweep", None):
        try:
            spec = sweeps.parse_sweep(args.sweep)
        except sweeps.SweepError as exc:
            raise RunError(str(exc)) from None
        if args.rate is not None or (args.users is not None and spec.values is not None):
            raise RunError(
                "--sweep sets each point's load: drop --rate/--users (--users with rate=auto sizes its probe)"
            )
        if args.baseline:
            raise RunError("--baseline compares single runs: compare a sweep's points with eyechart plan")
    try:
        load = LoadModel(
            users=(args.users or sweeps.PROBE_USERS) if spec else args.users if args.rate is None else None,
            rate=args.rate,
            arrival=args.arrival,
            burstiness=args.burstiness,
            seed=args.seed,
        )
    except ArrivalError as exc:
        raise RunError(str(exc)) from None
    if args.users is not None and args.rate is not None:
        raise RunError("give either --users N (closed loop) or --rate R (open loop), not both")
    if args.duration and args.requests:
        raise RunError("give either --duration or --requests, not both")
    requests = args.requests
    if requests is not None and requests < 1:
        raise RunError("--requests must be at least 1")
    if requests:
        duration = None
    elif spec and not args.duration:
        duration = sweeps.POINT_DURATION_S
    else:
        duration = parse_duration(args.duration or "60s")
    # each sweep point starts from an idle target: it warms up unless --warmup says otherwise
    warmup_s = (
        sweeps.POINT_WARMUP_S
        if spec and args.warmup is None
        else _seconds(args.warmup or "0", allow_zero=True)
    )
    if args.processes < 1:
        raise RunError("--processes must be at least 1")
    for flag in ("max_rate", "max_requests", "max_tokens_total"):
        v = getattr(args, flag, None)
        if v is not None and not v > 0:
            raise RunError(f"--{flag.replace('_', '-')} must be positive")
    expect = getattr(args, "expect_workers", None) or 0
    if expect and args.processes > 1:
        raise RunError("give --processes (workers here) or --expect-workers (workers elsewhere), not both")
    try:
        headers = options.parse_headers(getattr(args, "header", None))
    except ValueError as exc:
        raise RunError(str(exc)) from None
    return RunPlan(
        base_url=args.base_url,
        api_key=args.api_key,
        model=args.model,
        workload=args.workload,
        load=load,
        duration_s=duration,
        requests=requests,
        warmup_s=warmup_s,
        cooldown_s=_seconds(args.cooldown, allow_zero=True),
        slo=args.slo or "",
        baseline=args.baseline or "",
        max_regression=args.max_regression,
        report_dir=Path(args.report_dir),
        processes=args.processes,
        max_concurrency=args.max_concurrency,
        min_requests=args.min_requests,
        max_loop_lag_ms=args.max_loop_lag_ms,
        max_cpu=args.max_cpu,
        target_args=tuple(args.target_arg or ()),
        quiet=args.quiet,
        fixture_host=getattr(args, "fixture_host", None),
        fixture_url=getattr(args, "fixture_url", None),
        headers=headers,
        request_id_header=options.request_id_header(args)
        if hasattr(args, "no_request_id")
        else "X-Request-Id",
        ca_bundle=getattr(args, "ca_bundle", None),
        insecure=bool(getattr(args, "insecure", False)),
        check_sample=_share(getattr(args, "check_sample", "0.5%")),
        drain_s=_seconds(getattr(args, "drain", "60s"), allow_zero=True),
        request_timeout_s=_seconds(getattr(args, "request_timeout", "120s")),
        sweep=spec,
        caps=sweeps.Caps(
            max_rate=getattr(args, "max_rate", None),
            max_requests=getattr(args, "max_requests", None),
            max_tokens_total=getattr(args, "max_tokens_total", None),
        ),
        expect_workers=expect,
        master_port=getattr(args, "master_port", None) or 5557,
    )


def _share(text: str) -> str:
    """``--check-sample``: a percentage or a fraction in [0, 1], checked before the run."""
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise RunError(f"--check-sample {text!r} is not a share like 0.5% or 100%") from None
    if not 0 <= value <= 1:
        raise RunError(f"--check-sample {text!r} must be between 0% and 100%")
    return t


def _seconds(text: str, *, allow_zero: bool = False) -> float:
    if allow_zero and text.strip() in ("0", "0s"):
        return 0.0
    return parse_duration(text)


def _free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_worker(master_host: str, master_port: int, api_key: str | None) -> int:
    """A load worker for a master elsewhere (``eyechart load --worker``): plain Locust in worker mode
    on the bundled locustfile; the master sends the workload and options, the key comes from here.

    A master runs each sweep point as its own Locust run, and a Locust worker quits with its master:
    so the worker starts again after each clean end, and stops when Locust gives up finding a master
    (its connection timeout) or on Ctrl-C."""
    cmd = [sys.executable, "-m", "locust", "-f", str(bundled.loadtests_dir() / "locustfile.py"), "--worker",
           "--master-host", master_host, "--master-port", str(master_port)]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if api_key:
        env["EYECHART_API_KEY"] = api_key
    while True:
        code = subprocess.call(cmd, env=env, stdin=subprocess.DEVNULL)
        if code != 0:
            return code
