"""What the pytest plugin records while a conformance run goes: the run's state and each verdict.

The plugin (:mod:`eyechart.pytest_plugin`) owns pytest's hooks; this module turns what pytest reports
about a check (passed, skipped, raised :class:`~eyechart.conform.checks.CheckFailed` or an assertion,
broke) into a :class:`~eyechart.conform.results.CheckResult` with evidence, and a finished pytest
session into a :class:`~eyechart.conform.results.ConformanceRun`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from eyechart.conform.checks import CheckFailed
from eyechart.conform.evidence import evidence_for, key_exchange
from eyechart.conform.liveness import NotJudged
from eyechart.conform.results import CheckResult, ConformanceRun, status_for_finding
from eyechart.conform.spec import CheckSpec
from eyechart.conform.state import ConformState
from eyechart.conform.watch import merge
from eyechart.profiles import attribution
from eyechart.severity import Severity
from eyechart.wire.exchange import Exchange

# the first attempt of a check that was run twice: what it raised and the exchanges it made
FIRST_ATTEMPT = pytest.StashKey[tuple[BaseException, list[Exchange]]]()


def result_for(
    item: pytest.Item,
    call: pytest.CallInfo[None],
    rep: pytest.TestReport,
    check: tuple[str, Severity, CheckSpec],
    st: ConformState,
) -> CheckResult:
    """The verdict of one check from pytest's report of one of its phases."""
    check_id, severity, spec = check
    exchanges = st.session.check_exchanges() if st.session is not None else []
    base: dict[str, Any] = dict(
        id=check_id, severity=severity, clause=spec.clause, nodeid=item.nodeid, duration_s=rep.duration
    )
    if st.profile is not None:
        base["attribution"] = attribution(check_id, st.profile)
    first = item.stash.get(FIRST_ATTEMPT, None)
    if rep.passed and first is not None and not isinstance(first[0], NotJudged):
        failed = _as_failed(first[0])
        return CheckResult(
            status="flaky",
            message=f"failed once ({failed.message}), then passed on a re-run: the target is unstable",
            evidence={
                **evidence_for(failed, first[1]),
                "rerun": evidence_for(None, exchanges),
            },
            **base,
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
    if isinstance(exc, NotJudged):
        return CheckResult(
            status="not_judged",
            message=exc.message,
            evidence=evidence_for(CheckFailed(exc.message, exchange=exc.exchange), exchanges),
            **base,
        )
    if isinstance(exc, CheckFailed | AssertionError):
        failed = _as_failed(exc)
        again = " (failed again on a re-run)" if first is not None else ""
        if st.session is not None:  # a big request body of a finding goes to <run>/bodies/ for its reproducer
            st.session.save_bodies(check_id, key_exchange(failed, exchanges))
        return CheckResult(
            status=status_for_finding(severity, st.strict),
            message=failed.message + again,
            evidence=evidence_for(failed, exchanges),
            **base,
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


def _as_failed(exc: BaseException) -> CheckFailed:
    if isinstance(exc, CheckFailed):
        return exc
    return CheckFailed(str(exc).split("\nassert ")[0] or "assertion failed")


def _with_invariants(st: ConformState, results: list[CheckResult]) -> list[CheckResult]:
    """The registry's verdicts on every exchange of the run, joined under their ids (conform.watch)."""
    if st.session is None or st.profile is None:
        return results
    return merge(results, st.session.watch, st.profile, st.only, st.skip, st.strict)


def build_run(st: ConformState) -> ConformanceRun:
    """The :class:`ConformanceRun` of what was recorded so far."""
    sess = st.session
    return ConformanceRun(
        target=sess.base_url if sess else st.base_url,
        model=sess.model if sess else st.model,
        profile=st.profile.name if st.profile else "",
        embedded=bool(sess and sess.embedded),
        strict=st.strict,
        only=st.only,
        skip=st.skip,
        started=st.started,
        finished=st.finished or time.time(),
        results=_with_invariants(st, [st.results[i] for i in st.order if i in st.results]),
        not_run=[i for i in st.order if i not in st.results],
        deselected=st.deselected,
        cut_short=sess.liveness.cut_short if sess else None,
        stopped_answering=sess.liveness.stopped if sess else None,
        secrets=[s for s in [sess.api_key if sess else None, *st.secrets] if s],
    )
