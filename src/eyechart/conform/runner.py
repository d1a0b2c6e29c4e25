"""Run the bundled suite (and any ``--suite`` folders) in-process with pytest and our progress bar.

``eyechart conform`` is ``pytest <bundled conformance dir> [<suite dirs>]`` with the eyechart plugin and
pytest's own terminal output off. What it adds over plain pytest: a reachability probe up front (exit 2
with a clear message instead of one error per check), a run folder (:mod:`eyechart.runs`), and the exit
code decided from the check results (:func:`eyechart.conform.results.exit_code`). The caller renders
the outcome (``eyechart.report``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from eyechart import bundled
from eyechart.conform.recording import build_run
from eyechart.conform.results import ConformanceRun, exit_code
from eyechart.conform.state import state_of
from eyechart.exitcodes import ExitCode
from eyechart.profiles import ProfileError, load_profile, parse_override
from eyechart.runs import new_run_dir
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


@dataclass
class ConformOutcome:
    """The result of a run: its exit code, run folder and the reports written."""

    code: ExitCode
    run_dir: Path | None
    reports: dict[str, Path] = field(default_factory=dict)
    run: ConformanceRun | None = None  # when checks ran
    message: str = ""


class _Observer:
    """A pytest plugin of the runner: progress bar, collection errors, and the config after the run."""

    def __init__(self, console: Console, show_progress: bool) -> None:
        self.console = console
        self.show_progress = show_progress
        self.config: pytest.Config | None = None
        self.collect_errors: list[str] = []
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1:]}")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.show_progress or not session.items or session.config.option.collectonly:
            return
        self._progress = Progress(
            TextColumn("[bold]conform"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=len(session.items))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, description=location[2][:50])

    def pytest_sessionfinish(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


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
        ("--eyechart-report-dir", str(run_dir) if run_dir else None),
    ):
        if value:
            args += [flag, value]
    for o in opts.overrides:
        args += ["--eyechart-set", o]
    for p in opts.only:
        args += ["--eyechart-only", p]
    for p in opts.skip:
        args += ["--eyechart-skip", p]
    if opts.strict:
        args.append("--eyechart-strict")
    return args


def preflight(opts: ConformOptions) -> str | None:
    """Usage problems found before any check runs (bad profile, unreachable target): the message, or None."""
    try:
        profile = load_profile(opts.profile, dict(parse_override(o) for o in opts.overrides))
    except ProfileError as exc:
        return str(exc)
    if opts.fixture_url and not opts.fixture_url.startswith(("http://", "https://")):
        return f"--fixture-url {opts.fixture_url!r} is not an http(s) URL"
    for folder in opts.extra_suites:
        if not folder.is_dir():
            return f"--suite {str(folder)!r} is not a folder"
    if opts.base_url:
        try:
            url = normalise_base_url(opts.base_url, profile)
            resolve_model(url, opts.api_key, opts.model)
        except TargetError as exc:
            return str(exc)
    return None


def run_conformance(opts: ConformOptions, console: Console | None = None) -> ConformOutcome:
    """Run the suite for ``opts``, with a progress bar and any usage problem on ``console``."""
    console = console or Console(stderr=False)
    problem = preflight(opts)
    if problem:
        console.print(f"[bold red]eyechart conform:[/] {problem}", highlight=False)
        return ConformOutcome(ExitCode.USAGE, None, message=problem)
    run_dir = new_run_dir(opts.report_dir, "conform", create=False)
    observer = _Observer(console, opts.progress and console.is_terminal)
    try:
        code = pytest.main(pytest_args(opts, run_dir), plugins=[observer])
    finally:
        observer.stop()
    config = observer.config
    st = state_of(config) if config is not None else None
    if st is not None and st.abort_reason:
        console.print(f"[bold red]eyechart conform:[/] {st.abort_reason}", highlight=False)
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
    return list(state_of(config).catalogue), None
