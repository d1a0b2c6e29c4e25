"""pytest plugin: run the conformance suite with ``pytest conformance`` (``eyechart conform`` uses it too).

    pytest conformance --base-url http://127.0.0.1:8000/v1/openai --model my-model --report-dir out/
    pytest conformance                       # starts the embedded target for the session
    pytest conformance --only 'auth.*' --profile vllm --profile-set max_images=2

Registered through the ``pytest11`` entry point, so it is loaded in every pytest run: it only adds
options and a marker until it collects a check (a test marked by ``eyechart.conform.checks.check``).
Then it resolves each check's id and severity for the profile, applies ``--only``/``--skip``, turns
every outcome into a :class:`~eyechart.conform.checks.CheckResult` with evidence, and writes the reports
when ``--report-dir`` is given. SHOULD and INFO findings do not fail the pytest run (they show as
xfailed with their reason) unless pytest's own ``--strict`` is on, which makes SHOULD findings fail.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from eyechart.conform.checks import MARK, CheckFailed, CheckResult, CheckSpec, Severity, Status

if TYPE_CHECKING:
    from eyechart.conform.session import Session
    from eyechart.profiles import Profile


@dataclass
class ConformState:
    """Everything the plugin knows about the current conformance run."""

    active: bool = False
    profile: Profile | None = None
    session: Session | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    strict: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    written: dict[str, Path] = field(default_factory=dict)
    deselected: int = 0
    abort_reason: str | None = None  # why the run stopped before the checks (usage, unreachable target)


STATE = pytest.StashKey[ConformState]()
_ITEM = pytest.StashKey[tuple[str, Severity, CheckSpec]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("eyechart", "eyechart conformance (CONTRACT.md checks)")
    g.addoption("--base-url", help="the target's base URL, as an OpenAI SDK takes it (else: embedded target)")
    g.addoption("--api-key", help="bearer key for the target (else env EYECHART_API_KEY)")
    g.addoption("--model", help="model under test (else: the only model /models lists)")
    g.addoption("--profile", default="deepinfra", help="conformance profile name or TOML path")
    g.addoption(
        "--profile-set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override one profile knob (repeatable), value as TOML",
    )
    g.addoption("--only", action="append", default=[], metavar="PATTERN", help="run only check ids matching")
    g.addoption("--skip", action="append", default=[], metavar="PATTERN", help="leave out check ids matching")
    g.addoption("--fixture-host", help="bind address of the fixture image server (default 127.0.0.1)")
    g.addoption(
        "--fixture-url",
        help="the fixture server's base URL as the target reaches it (and the port it listens on)",
    )
    g.addoption(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="bound of each request (default 30); a hung target fails its checks, never the run",
    )
    g.addoption(
        "--report-dir",
        help="write conformance.json, junit.xml and index.html into this folder "
        "(and bodies/: the exact big request bodies of findings, for their reproducers)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARK}(spec): an eyechart conformance check (use eyechart.conform.checks.check)"
    )
    config.stash[STATE] = ConformState()


def state_of(config: pytest.Config) -> ConformState:
    return config.stash[STATE]


def _patterns(values: list[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def profile_for(config: pytest.Config) -> Profile:
    """The run's profile with its ``--profile-set`` overrides (a bad one is a usage error)."""
    from eyechart.profiles import ProfileError, load_profile, parse_override

    st = state_of(config)
    if st.profile is None:
        try:
            overrides = dict(parse_override(t) for t in config.getoption("profile_set") or [])
            st.profile = load_profile(config.getoption("profile") or "deepinfra", overrides)
        except ProfileError as exc:
            raise pytest.UsageError(str(exc)) from exc
    return st.profile


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    st = state_of(config)
    checks = [it for it in items if it.get_closest_marker(MARK)]
    if not checks:
        return
    st.active = True
    st.strict = bool(config.getini("strict"))
    st.only, st.skip = _patterns(config.getoption("only")), _patterns(config.getoption("skip"))
    profile = profile_for(config)
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    seen: dict[str, str] = {}
    for item in items:
        mark = item.get_closest_marker(MARK)
        if mark is None:
            keep.append(item)
            continue
        spec: CheckSpec = mark.args[0]
        callspec = getattr(item, "callspec", None)
        check_id = spec.resolve_id(
            dict(callspec.params) if callspec else {}, callspec.id if callspec else None
        )
        if check_id in seen:
            raise pytest.UsageError(
                f"check id {check_id!r} is used by both {seen[check_id]} and {item.nodeid}"
            )
        seen[check_id] = item.nodeid
        try:
            severity = spec.resolve_severity(profile)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        item.stash[_ITEM] = (check_id, severity, spec)
        selected = not st.only or any(fnmatch.fnmatchcase(check_id, p) for p in st.only)
        if selected and not any(fnmatch.fnmatchcase(check_id, p) for p in st.skip):
            keep.append(item)
            st.order.append(check_id)
        else:
            dropped.append(item)
    if dropped:
        st.deselected = len(dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    rd = config.getoption("report_dir")
    st.report_dir = Path(rd) if rd else None


@contextmanager
def open_session(config: pytest.Config) -> Iterator[Session]:
    """The :class:`Session` of this run (starting the embedded target without ``--base-url``).

    Used by the ``api`` fixture of ``conformance/conftest.py``. An unusable target or model ends
    the pytest run with exit code 2 and a one-line reason, not an error per check.
    """
    from eyechart.conform.session import Session, SessionError

    st = state_of(config)
    try:
        sess = Session.open(
            base_url=config.getoption("base_url"),
            api_key=config.getoption("api_key") or os.environ.get("EYECHART_API_KEY"),
            model=config.getoption("model"),
            profile=profile_for(config),
            fixture_host=config.getoption("fixture_host"),
            fixture_url=config.getoption("fixture_url"),
            timeout=config.getoption("request_timeout"),
            body_dir=st.report_dir / "bodies" if st.report_dir is not None else None,
        )
    except SessionError as exc:
        st.abort_reason = str(exc)
        pytest.exit(f"eyechart: {exc}", returncode=2)
    st.session = sess
    try:
        yield sess
    finally:
        sess.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    st = state_of(item.config)
    if _ITEM in item.stash and st.session is not None:
        st.session.begin_check(item.stash[_ITEM][0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    rep: pytest.TestReport = yield
    if _ITEM not in item.stash:
        return rep
    st = state_of(item.config)
    check_id, severity, spec = item.stash[_ITEM]
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        pass
    elif rep.when == "teardown" and rep.failed and getattr(st.results.get(check_id), "status", "") == "pass":
        pass  # the check passed but its cleanup broke: a harness error worth seeing
    else:
        return rep
    result = _result(item, call, rep, check_id, severity, spec, st)
    st.results[check_id] = result
    if result.status == "warn":
        rep.outcome = "skipped"
        rep.wasxfail = f"[{severity}] {check_id}: {result.message}"
    elif result.status in ("fail", "error"):
        rep.longrepr = _longrepr(result, call)
    return rep


def _result(
    item: pytest.Item,
    call: pytest.CallInfo[None],
    rep: pytest.TestReport,
    check_id: str,
    severity: Severity,
    spec: CheckSpec,
    st: ConformState,
) -> CheckResult:
    from eyechart.conform.session import evidence_for, key_exchange

    exchanges = st.session.check_exchanges() if st.session is not None else []
    base: dict[str, Any] = dict(
        id=check_id, severity=severity, clause=spec.clause, nodeid=item.nodeid, duration_s=rep.duration
    )
    if rep.passed:
        return CheckResult(
            status="pass", message="", evidence=evidence_for(None, exchanges, full=False), **base
        )
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        return CheckResult(status="skip", message=reason, evidence={}, **base)
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, CheckFailed | AssertionError):
        failed = (
            exc
            if isinstance(exc, CheckFailed)
            else CheckFailed(str(exc).split("\nassert ")[0] or "assertion failed")
        )
        if severity == "MUST" or (severity == "SHOULD" and st.strict):
            status: Status = "fail"
        else:
            status = "warn"
        if st.session is not None:  # a big request body of a finding goes to <run>/bodies/ for its reproducer
            st.session.save_bodies(check_id, key_exchange(failed, exchanges))
        return CheckResult(
            status=status, message=failed.message, evidence=evidence_for(failed, exchanges), **base
        )
    where = "setting up" if rep.when == "setup" else "running" if rep.when == "call" else "tearing down"
    text = (
        f"{type(exc).__name__}: {exc}" if exc is not None else str(rep.longreprtext).strip().splitlines()[-1:]
    )
    return CheckResult(
        status="error",
        message=f"harness error while {where} the check: {text}",
        evidence=evidence_for(None, exchanges),
        **base,
    )


def _longrepr(result: CheckResult, call: pytest.CallInfo[None]) -> str:
    from eyechart.report.conformance import finding_text

    text = finding_text(result).replace("\n", "\n  ")
    if result.status == "error" and call.excinfo is not None:
        text += "\n" + str(call.excinfo.getrepr(style="short"))
    return text


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = state_of(session.config)
    if not st.active:
        return
    st.finished = time.time()
    if st.report_dir is not None:
        from eyechart.report.conformance import write_reports

        st.written = write_reports(build_run(session.config), st.report_dir)


def build_run(config: pytest.Config) -> Any:
    """The :class:`~eyechart.report.conformance.ConformanceRun` of this pytest session."""
    from eyechart.report.conformance import ConformanceRun

    st = state_of(config)
    sess = st.session
    profile = st.profile
    return ConformanceRun(
        target=sess.base_url if sess else (config.getoption("base_url") or ""),
        model=sess.model if sess else (config.getoption("model") or ""),
        profile=profile.name if profile else "",
        embedded=bool(sess and sess.embedded),
        strict=st.strict,
        only=st.only,
        skip=st.skip,
        started=st.started,
        finished=st.finished or time.time(),
        results=[st.results[i] for i in st.order if i in st.results],
        not_run=[i for i in st.order if i not in st.results],
        deselected=st.deselected,
        secrets=[s for s in [sess.api_key if sess else None, config.getoption("api_key")] if s],
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    st = state_of(config)
    if not st.active or not st.results:
        return
    from eyechart.report.conformance import summary_lines

    terminalreporter.section("eyechart conformance")
    for line in summary_lines(build_run(config), st.written.get("html") or st.report_dir):
        terminalreporter.write_line(line)
