"""The pytest hooks of a run that has conformance checks (registered by :mod:`eyechart.pytest_plugin`
once it collects one, so projects without checks never import any of this).

Before each check the session starts recording its exchanges; after each phase pytest's report becomes
the check's verdict (:func:`eyechart.conform.recording.result_for`) and a finding replaces pytest's
traceback with its evidence and reproducer; at the end the reports are written and summarised.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from eyechart.conform.checks import CheckFailed
from eyechart.conform.evidence import key_exchange
from eyechart.conform.liveness import NotJudged
from eyechart.conform.recording import FIRST_ATTEMPT, build_run, result_for
from eyechart.conform.results import CheckResult
from eyechart.conform.session import Session
from eyechart.conform.spec import CheckSpec
from eyechart.conform.state import state_of
from eyechart.pytest_plugin import DEFAULT_MAX_TIME, DEFAULT_TIMEOUT, headers_of, profile_for, setting
from eyechart.report.conformance import finding_text, summary_lines, write_reports
from eyechart.severity import Severity
from eyechart.wire.discovery import TargetError

CHECK = pytest.StashKey[tuple[str, Severity, CheckSpec]]()


@contextmanager
def open_session(config: pytest.Config) -> Iterator[Session]:
    """The :class:`Session` of this run (starting the embedded target without a base URL).

    An unusable target or model ends the pytest run with exit code 2 and a one-line reason, not an
    error per check."""
    st = state_of(config)
    try:
        sess = Session.open(
            base_url=setting(config, "base_url"),
            api_key=setting(config, "api_key"),
            model=setting(config, "model"),
            profile=profile_for(config),
            fixture_host=setting(config, "fixture_host"),
            fixture_url=setting(config, "fixture_url"),
            timeout=setting(config, "request_timeout") or DEFAULT_TIMEOUT,
            body_dir=st.report_dir / "bodies" if st.report_dir is not None else None,
            max_time=_max_time(config),
            headers=headers_of(config),
            ca_bundle=setting(config, "ca_bundle"),
            insecure=setting(config, "insecure"),
        )
    except TargetError as exc:
        st.abort_reason = str(exc)
        pytest.exit(f"eyechart: {exc}", returncode=2)
    st.session = sess
    try:
        yield sess
    finally:
        sess.close()


def _max_time(config: pytest.Config) -> float | None:
    value = setting(config, "max_time")
    value = DEFAULT_MAX_TIME if value is None else value
    return value if value > 0 else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    st = state_of(item.config)
    if CHECK in item.stash and st.session is not None:
        st.session.begin_check(item.stash[CHECK][0])
        live = st.session.liveness
        left = live.remaining()
        if left is not None and left <= 0:
            live.cut_short = f"--max-time {live.max_time_s:g} s reached"
        if live.cut_short or live.stopped:  # nothing more to learn: end the run, name what did not run
            item.session.shouldstop = live.cut_short or live.stopped or True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Run a check; run it once more when its first attempt proves nothing about the feature: the
    target was busy (not judged, re-run once it answers again) or it failed with a 5xx, a cut stream
    or a timeout on a kind of request that worked elsewhere (a pass then is ``flaky``)."""
    st = state_of(item.config)
    sess = st.session
    if CHECK not in item.stash or sess is None:
        return (yield)
    sess.check_id = item.stash[CHECK][
        0
    ]  # the first check's setup opened the session after its own setup hook
    try:
        return (yield)
    except NotJudged as exc:
        if sess.liveness.stopped or sess.liveness.cut_short or not sess.liveness.wait_until_answering():
            raise
        first: BaseException = exc
    except (CheckFailed, AssertionError) as exc:
        failed = exc.exchange if isinstance(exc, CheckFailed) else None
        if not sess.worth_rerun(failed or key_exchange(None, sess.check_exchanges())):
            raise
        first = exc
    item.stash[FIRST_ATTEMPT] = (first, sess.check_exchanges())
    sess.begin_check(item.stash[CHECK][0])
    item.runtest()
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep: pytest.TestReport = yield
    if CHECK not in item.stash:
        return rep
    st = state_of(item.config)
    check = item.stash[CHECK]
    check_id, severity, _spec = check
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        pass
    elif rep.when == "teardown" and rep.failed and getattr(st.results.get(check_id), "status", "") == "pass":
        pass  # the check passed but its cleanup broke: a harness error worth seeing
    else:
        return rep
    result = result_for(item, call, rep, check, st)
    st.results[check_id] = result
    if result.status == "warn":
        rep.outcome = "skipped"
        rep.wasxfail = f"[{severity}] {check_id}: {result.message}"
    elif result.status == "not_judged":  # no verdict either way: never a failure of the target
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), 0, f"[not judged] {check_id}: {result.message}")
    elif result.status in ("fail", "error"):
        rep.longrepr = _longrepr(result, call)
    elif result.status == "flaky" and severity == "MUST":  # it did fail once: the run fails too
        rep.outcome = "failed"
        rep.longrepr = _longrepr(result, call)
    return rep


def _longrepr(result: CheckResult, call: pytest.CallInfo[None]) -> str:
    text = finding_text(result).replace("\n", "\n  ")
    if result.status == "error" and call.excinfo is not None:
        text += "\n" + str(call.excinfo.getrepr(style="short"))
    return text


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = state_of(session.config)
    if not st.active:
        return
    st.finished = time.time()
    if st.report_dir is not None and not session.config.option.collectonly:
        st.written = write_reports(build_run(st), st.report_dir)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    st = state_of(config)
    if not st.active or not st.results:
        return
    terminalreporter.section("eyechart conformance")
    for line in summary_lines(build_run(st), st.written.get("html") or st.report_dir):
        terminalreporter.write_line(line)
