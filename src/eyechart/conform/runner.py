"""Run the bundled suite in-process with pytest, with our progress bar and summary instead of pytest's.

``eyechart conform`` is ``pytest <bundled conformance dir>`` with the eyechart plugin, pytest's own
terminal output off, a rich progress bar while checks run, and the one-screen summary at the end.
What it adds over plain pytest: a reachability probe up front (exit 2 with a clear message instead of
one error per check), a timestamped run folder, and the exit code of DESIGN.md decided from the
check results (:func:`eyechart.report.conformance.exit_code`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from eyechart import bundled
from eyechart.exitcodes import ExitCode


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
    progress: bool = True


@dataclass
class ConformOutcome:
    """The result of a run: its exit code, run folder and the reports written."""

    code: ExitCode
    run_dir: Path | None
    reports: dict[str, Path] = field(default_factory=dict)
    run: Any = None  # eyechart.report.conformance.ConformanceRun, when checks ran
    message: str = ""


class _Observer:
    """A pytest plugin of the runner: progress bar, collection errors, and the config after the run."""

    def __init__(self, console: Console, show_progress: bool) -> None:
        self.console = console
        self.show_progress = show_progress
        self.config: pytest.Config | None = None
        self.collect_errors: list[str] = []
        self._progress: Any = None
        self._task: Any = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1:]}")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.show_progress or not session.items:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=location[2][:50])

    def pytest_sessionfinish(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _run_dir(report_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = report_dir / f"{stamp}-conform"
    n = 1
    while candidate.exists():
        n += 1
        candidate = report_dir / f"{stamp}-conform-{n}"
    return candidate


def pytest_args(opts: ConformOptions, run_dir: Path | None) -> list[str]:
    """The pytest command line equivalent to ``opts`` (printed by ``--help`` users as a recipe)."""
    suite = opts.suite_dir or bundled.conformance_dir()
    args = [str(suite), "-c", os.devnull, "--rootdir", str(suite), "-p", "no:cacheprovider"]
    args += ["-p", "no:terminal", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for flag, value in (
        ("--base-url", opts.base_url),
        ("--api-key", opts.api_key),
        ("--model", opts.model),
        ("--profile", opts.profile),
        ("--fixture-host", opts.fixture_host),
        ("--fixture-url", opts.fixture_url),
        ("--report-dir", str(run_dir) if run_dir else None),
    ):
        if value:
            args += [flag, value]
    for o in opts.overrides:
        args += ["--profile-set", o]
    for p in opts.only:
        args += ["--only", p]
    for p in opts.skip:
        args += ["--skip", p]
    if opts.strict:
        args.append("--strict")
    return args


def preflight(opts: ConformOptions) -> str | None:
    """Usage problems found before any check runs (bad profile, unreachable target): the message, or None."""
    from eyechart.conform.session import SessionError, normalise_base_url, resolve_model
    from eyechart.profiles import ProfileError, load_profile, parse_override

    try:
        profile = load_profile(opts.profile, dict(parse_override(o) for o in opts.overrides))
    except ProfileError as exc:
        return str(exc)
    if opts.fixture_url and not opts.fixture_url.startswith(("http://", "https://")):
        return f"--fixture-url {opts.fixture_url!r} is not an http(s) URL"
    if opts.base_url:
        try:
            url = normalise_base_url(opts.base_url, profile)
            resolve_model(url, opts.api_key, opts.model)
        except SessionError as exc:
            return str(exc)
    return None


def run_conformance(opts: ConformOptions, console: Console | None = None) -> ConformOutcome:
    """Run the suite for ``opts``; print progress and the summary on ``console``."""
    from eyechart.pytest_plugin import build_run, state_of
    from eyechart.report.conformance import exit_code, print_summary

    console = console or Console(stderr=False)
    problem = preflight(opts)
    if problem:
        console.print(f"[bold red]eyechart conform:[/] {problem}", highlight=False)
        return ConformOutcome(ExitCode.USAGE, None, message=problem)
    run_dir = _run_dir(opts.report_dir)
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
    run = build_run(config)
    result = exit_code(run)
    print_summary(run, console, st.written.get("html"))
    return ConformOutcome(result, run_dir, dict(st.written), run)
