"""Run the bundled suite (and any ``--suite`` folders) in-process with pytest and our progress bar.

``eyechart conform`` is ``pytest <bundled conformance dir> [<suite dirs>]`` with the eyechart plugin and
pytest's own terminal output off. What it adds over plain pytest: a reachability probe up front (exit 2
with a clear message instead of one error per check), a run folder (:mod:`eyechart.runs`), and the exit
code decided from the check results (:func:`eyechart.conform.results.exit_code`). The caller renders
the outcome (``eyechart.report``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
import threading
import time
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import pytest
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from eyechart import bundled, invariants
from eyechart.conform.recording import build_run
from eyechart.conform.results import ConformanceRun, exit_code
from eyechart.conform.state import state_of
from eyechart.exitcodes import ExitCode
from eyechart.options import report_dir_problem
from eyechart.profiles import Profile, ProfileError, load_profile, parse_override
from eyechart.runs import new_run_dir
from eyechart.secrets import scrub
from eyechart.severity import Severity
from eyechart.wire.discovery import TargetError, normalise_base_url, resolve_model


@dataclass
class ConformOptions:
    """What ``eyechart conform`` was asked to do (the CLI flags, typed)."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    profile: str = "deepinfra"
    overrides: list[str] = field(default_factory=list)
    report_dir: Path = Path("reports")
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    strict: bool = False
    fixture_host: str | None = None
    fixture_url: str | None = None
    suite_dir: Path | None = None  # default: the bundled conformance/ folder
    extra_suites: list[Path] = field(default_factory=list)  # --suite: folders of the user's own checks
    progress: bool = True
    max_time: float | None = None  # seconds for the whole run (None: the plugin's default, 0: none)
    request_timeout: float | None = None  # seconds for one request (None: the plugin's default)
    headers: dict[str, str] = field(default_factory=dict)  # --header: sent with every request
    ca_bundle: str | None = None
    insecure: bool = False


@dataclass
class ConformOutcome:
    """The result of a run: its exit code, run folder and the reports written."""

    code: ExitCode
    run_dir: Path | None
    reports: dict[str, Path] = field(default_factory=dict)
    run: ConformanceRun | None = None  # when checks ran
    message: str = ""


class _Observer:
    """A pytest plugin of the runner: live progress, collection errors, and the config after the run.

    Progress goes to a duplicate of the console's file descriptor taken before pytest starts, because
    pytest's output capture swaps file descriptor 1 while checks run and would swallow every refresh.
    On a terminal it is a rich bar (done/total, elapsed, ETA, current area); elsewhere (CI logs, pipes)
    one plain line every ``PLAIN_EVERY_S`` seconds. Either way each failure is printed as it happens."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, console: Console, show_progress: bool) -> None:
        self.console = console
        self.show_progress = show_progress
        self.config: pytest.Config | None = None
        self.collect_errors: list[str] = []
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._out: Console | None = None
        self._dup: TextIO | None = None
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        self._seen: set[str] = set()
        self._total = 0
        self._done = 0
        self._area = ""
        self._t0 = time.monotonic()

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1:]}")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.show_progress or not session.items or session.config.option.collectonly:
            return
        self._total, self._t0 = len(session.items), time.monotonic()
        self._out, self._dup = _uncaptured(self.console)
        if self._out.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]conform"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("checks"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=self._out,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=self._total)
        else:
            self._out.print(f"conform: {self._total} checks to run", markup=False)
            self._ticker = threading.Thread(target=self._tick, name="eyechart-progress", daemon=True)
            self._ticker.start()

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if self._out is None:
            return
        self._done += 1
        if self.config is not None:
            st = state_of(self.config)
            for check_id, result in list(st.results.items()):
                if check_id in self._seen:
                    continue
                self._seen.add(check_id)
                self._area = result.area
                if result.status in ("fail", "flaky", "error"):
                    line = f"  {result.status.upper():5} {result.severity:6} {check_id}: {result.message}"
                    self._out.print(scrub(" ".join(line.split()), st.secrets), markup=False, style="red")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self._done, description=f"area {self._area}")

    def _tick(self) -> None:
        while not self._stopped.wait(self.PLAIN_EVERY_S):
            if self._out is not None:
                self._out.print(self.plain_line(), markup=False)

    def plain_line(self) -> str:
        """One progress line for logs: checks done/total, elapsed, ETA, current area."""
        elapsed = time.monotonic() - self._t0
        eta = f"ETA {elapsed / self._done * (self._total - self._done):.0f} s" if self._done else "ETA -"
        area = f" · area {self._area}" if self._area else ""
        return f"conform {self._done}/{self._total} checks · {elapsed:.0f} s elapsed · {eta}{area}"

    def pytest_sessionfinish(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._dup is not None:
            with contextlib.suppress(OSError, ValueError):
                self._dup.close()
            self._dup = None


def _uncaptured(console: Console) -> tuple[Console, TextIO | None]:
    """A console writing where ``console`` writes now, unaffected by pytest's capture (a dup of its fd);
    a console whose file has no descriptor (a StringIO in tests) is used as it is."""
    try:
        console.file.flush()
        fd = console.file.fileno()
    except (AttributeError, OSError, ValueError):
        return console, None
    dup = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    out = Console(
        file=dup,
        force_terminal=console.is_terminal,
        no_color=console.no_color,
        highlight=False,
        soft_wrap=True,
    )
    return out, dup


def pytest_args(opts: ConformOptions, run_dir: Path | None) -> list[str]:
    """The pytest command line equivalent to ``opts`` (what ``pytest`` users would type)."""
    suite = opts.suite_dir or bundled.conformance_dir()
    args = [str(suite), *(str(p) for p in opts.extra_suites), "-c", os.devnull, "--rootdir", str(suite)]
    args += ["-p", "no:cacheprovider", "-p", "no:terminal", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if opts.extra_suites:  # two folders may both hold test_x.py: import each file by its path
        args.append("--import-mode=importlib")
    for flag, value in (
        ("--eyechart-base-url", opts.base_url),
        ("--eyechart-api-key", opts.api_key),
        ("--eyechart-model", opts.model),
        ("--eyechart-profile", opts.profile),
        ("--eyechart-fixture-host", opts.fixture_host),
        ("--eyechart-fixture-url", opts.fixture_url),
        ("--eyechart-ca-bundle", opts.ca_bundle),
        ("--eyechart-report-dir", str(run_dir) if run_dir else None),
    ):
        if value:
            args += [flag, value]
    for o in opts.overrides:
        args += ["--eyechart-set", o]
    for name, value in opts.headers.items():
        args += ["--eyechart-header", f"{name}:{value}"]
    for p in opts.only:
        args += ["--eyechart-only", p]
    for p in opts.skip:
        args += ["--eyechart-skip", p]
    if opts.request_timeout is not None:
        args += ["--eyechart-request-timeout", f"{opts.request_timeout:g}"]
    if opts.max_time is not None:
        args += ["--eyechart-max-time", f"{opts.max_time:g}"]
    if opts.strict:
        args.append("--eyechart-strict")
    if opts.insecure:
        args.append("--eyechart-insecure")
    return args


def preflight(opts: ConformOptions) -> str | None:
    """Usage problems found before any check runs (bad profile, unreachable target): the message, or None."""
    try:
        profile = load_profile(opts.profile, dict(parse_override(o) for o in opts.overrides))
    except ProfileError as exc:
        return str(exc)
    problem = knob_problem(profile)
    if problem:
        return problem
    if opts.fixture_url and not opts.fixture_url.startswith(("http://", "https://")):
        return f"--fixture-url {opts.fixture_url!r} is not an http(s) URL"
    for folder in opts.extra_suites:
        if not folder.is_dir():
            return f"--suite {str(folder)!r} is not a folder"
    problem = report_dir_problem(opts.report_dir)
    if problem:
        return problem
    problem = selection_problem(opts)
    if problem:
        return problem
    if opts.base_url:
        try:
            url = normalise_base_url(opts.base_url, profile)
            resolve_model(
                url,
                opts.api_key,
                opts.model,
                headers=opts.headers,
                ca_bundle=opts.ca_bundle,
                insecure=opts.insecure,
            )
        except TargetError as exc:
            return str(exc)
    return None


def knob_problem(profile: Profile) -> str | None:
    """A profile knob whose value has the wrong type (``--set max_images=abc``), named before any check
    runs instead of surfacing as a harness error in the one check that reads it."""
    hints = typing.get_type_hints(Profile)
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if not _fits(value, hints[f.name]):
            return (
                f"profile knob {f.name} = {value!r} (from --profile {profile.name} or --set) "
                f"is not {_type_name(hints[f.name])}"
            )
    return None


def _fits(value: object, hint: object) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _type_name(hint: object) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {
        type(None): "unset",
        int: "an integer",
        str: "a string",
        bool: "true or false",
        float: "a number",
    }
    return names.get(hint, str(hint)) if isinstance(hint, type) else str(hint)


def _patterns(values: list[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def selection_problem(opts: ConformOptions) -> str | None:
    """``--only``/``--skip`` that select nothing, found by collecting the suite (nothing is sent)."""
    if not (opts.only or opts.skip):
        return None
    checks, problem = list_checks(replace(opts, only=[], skip=[]))
    if problem:
        return problem
    ids = [c[0] for c in checks]
    only, skip = _patterns(opts.only), _patterns(opts.skip)
    for flag, patterns in (("--only", only), ("--skip", skip)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(i, p) for i in ids):
                return f"{flag} {p!r} matches no check id (`eyechart conform --list` shows them)"
    kept = [i for i in ids if (not only or any(fnmatch.fnmatchcase(i, p) for p in only))]
    if not any(not any(fnmatch.fnmatchcase(i, p) for p in skip) for i in kept):
        return "--only/--skip leave no check to run (`eyechart conform --list` shows the ids)"
    return None


def run_conformance(opts: ConformOptions, console: Console | None = None) -> ConformOutcome:
    """Run the suite for ``opts``, with a progress bar and any usage problem on ``console``."""
    console = console or Console(stderr=False)
    problem = preflight(opts)
    if problem:
        console.print(f"[bold red]eyechart conform:[/] {problem}", highlight=False, soft_wrap=True)
        return ConformOutcome(ExitCode.USAGE, None, message=problem)
    run_dir = new_run_dir(opts.report_dir, "conform", create=False)
    observer = _Observer(console, opts.progress)
    try:
        code = pytest.main(pytest_args(opts, run_dir), plugins=[observer])
    finally:
        observer.stop()
    config = observer.config
    st = state_of(config) if config is not None else None
    if st is not None and st.abort_reason:
        console.print(f"[bold red]eyechart conform:[/] {st.abort_reason}", highlight=False, soft_wrap=True)
        return ConformOutcome(ExitCode.USAGE, None, message=st.abort_reason)
    if observer.collect_errors:
        msg = "the suite could not be collected (a harness bug):\n  " + "\n  ".join(observer.collect_errors)
        console.print(f"[bold red]eyechart conform:[/] {msg}", highlight=False)
        return ConformOutcome(ExitCode.INVALID_RUN, None, message=msg)
    if code == pytest.ExitCode.USAGE_ERROR:
        return ConformOutcome(ExitCode.USAGE, None, message="pytest usage error")
    if st is None or config is None or not st.active or not st.results:
        msg = "no check ran (did --only/--skip leave anything?)"
        console.print(f"[bold yellow]eyechart conform:[/] {msg}", highlight=False)
        return ConformOutcome(ExitCode.INVALID_RUN, run_dir if run_dir.exists() else None, message=msg)
    run = build_run(st)
    return ConformOutcome(exit_code(run), run_dir, dict(st.written), run)


def list_checks(opts: ConformOptions) -> tuple[list[tuple[str, Severity, str]], str | None]:
    """Every check id of the suite(s) with its severity (for the profile) and clause, in suite order;
    or the reason the suite could not be collected. Nothing is sent to any target."""
    observer = _Observer(Console(), show_progress=False)
    code = pytest.main([*pytest_args(opts, None), "--collect-only"], plugins=[observer])
    config = observer.config
    if observer.collect_errors:
        return [], "the suite could not be collected:\n  " + "\n  ".join(observer.collect_errors)
    if config is None or code == pytest.ExitCode.USAGE_ERROR:
        return [], "pytest could not collect the suite (a bad profile, --set or --suite?)"
    st = state_of(config)
    return [*st.catalogue, *_invariant_rows(st.profile, {c[0] for c in st.catalogue})], None


def _invariant_rows(profile: Profile | None, known: set[str]) -> list[tuple[str, Severity, str]]:
    """The registry's invariants that no check carries: judged on every exchange the checks record."""
    if profile is None:
        return []
    return [
        (inv.id, inv.resolve_severity(profile), inv.clause)
        for inv in invariants.registered()
        if inv.id not in known
    ]
