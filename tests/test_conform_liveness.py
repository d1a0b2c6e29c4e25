"""Verdicts stay true on slow, wedged and unstable targets, and every run ends (issue 10, items 1, 5, 8).

Each run goes against a real unwell server on 127.0.0.1 (``faulty_targets.unwell``), scaled down: a
request timeout of 1-2 s instead of 30, a wedge of seconds instead of minutes. Each asserts its liveness
bound (the run ends) and that nothing is blamed on the target that the target did not do.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from faulty_targets.unwell import slow_headers_target, unwell_target
from rich.console import Console

from eyechart.conform.runner import ConformOptions, ConformOutcome, run_conformance
from eyechart.target.launch import RunningTarget

REQUEST_CHECKS = ["request.content_string", "request.role_system", "request.multi_turn", "request.extra_keys"]


def _run(url: str, key: str, model: str | None, only: list[str], tmp: Path, **kw: object) -> ConformOutcome:
    opts = ConformOptions(
        base_url=url,
        api_key=key,
        model=model,
        only=only,
        report_dir=tmp,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )
    return run_conformance(opts, Console(file=io.StringIO(), width=120))


def _doc(outcome: ConformOutcome) -> dict[str, object]:
    assert outcome.run_dir is not None
    doc: dict[str, object] = json.loads((outcome.run_dir / "conformance.json").read_text())
    return doc


def test_a_wedged_one_at_a_time_target_gets_no_false_failure(target: RunningTarget, tmp_path: Path) -> None:
    """The oversize prompt times out (cap 4 x 1 s) and keeps the server busy 3 s longer: that check is
    not judged, the checks after it wait for the probe and pass, and the run ends in bounded time."""
    with unwell_target(target.base_url, "one_at_a_time", wedge_chars=8_000, wedge_s=7.0) as url:
        t0 = time.monotonic()
        outcome = _run(
            url, target.api_key, target.model, ["limits.context_length", *REQUEST_CHECKS], tmp_path,
            overrides=["context_length=4000"], request_timeout=1.0,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    assert results["limits.context_length"].status == "not_judged", results["limits.context_length"]
    assert "busy" in results["limits.context_length"].message
    after = {c: (results[c].status, results[c].message) for c in REQUEST_CHECKS}
    assert {status for status, _ in after.values()} == {"pass"}, after
    assert not [r for r in outcome.run.results if r.status == "fail"]
    assert int(outcome.code) == 4  # a MUST stayed not judged
    assert elapsed < 45, f"the run took {elapsed:.0f} s"


def test_an_endless_stream_fails_two_streams_then_the_rest_fast(
    target: RunningTarget, tmp_path: Path
) -> None:
    only = ["stream.done_sentinel", "stream.incremental", "stream.usage_matches", "response.schema"]
    with unwell_target(target.base_url, "endless_stream") as url:
        t0 = time.monotonic()
        outcome = _run(url, target.api_key, target.model, only, tmp_path, request_timeout=1.0)
        elapsed = time.monotonic() - t0
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    assert results["stream.done_sentinel"].status == "fail"
    assert results["response.schema"].status == "pass"  # plain answers are fine: not blamed
    fast = [r for r in outcome.run.results if "never ended its stream" in r.message]
    assert fast, {r.id: r.message for r in outcome.run.results}
    assert int(outcome.code) == 1
    assert elapsed < 60, f"the run took {elapsed:.0f} s"


def test_a_hanging_image_fetch_fails_that_kind_fast(target: RunningTarget, tmp_path: Path) -> None:
    only = ["images.transport.url", "images.url_404", "images.url_html", "request.content_string"]
    with unwell_target(target.base_url, "hanging_fetch") as url:
        t0 = time.monotonic()
        outcome = _run(url, target.api_key, target.model, only, tmp_path, request_timeout=1.0)
        elapsed = time.monotonic() - t0
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    assert results["request.content_string"].status == "pass"
    url_checks = [results[c] for c in only[:3]]
    assert all(r.status == "fail" for r in url_checks), {r.id: (r.status, r.message) for r in url_checks}
    assert any("with an image URL requests got no response headers" in r.message for r in url_checks)
    assert elapsed < 60, f"the run took {elapsed:.0f} s"


def test_slow_headers_end_the_run_with_the_target_stopped_answering(tmp_path: Path) -> None:
    with slow_headers_target() as url:
        t0 = time.monotonic()
        outcome = _run(url, "sk-x", "m", REQUEST_CHECKS, tmp_path, request_timeout=1.0)
        elapsed = time.monotonic() - t0
    assert outcome.run is not None, outcome.message
    assert not [r for r in outcome.run.results if r.status == "fail"]
    assert {r.status for r in outcome.run.results} == {"not_judged"}
    assert int(outcome.code) == 4
    doc = _doc(outcome)
    assert any("stopped answering" in h for h in doc["headline"])  # type: ignore[attr-defined]
    assert doc["not_run"], "the run should stop once the target stopped answering"
    assert elapsed < 30, f"the run took {elapsed:.0f} s"


def test_random_5xx_reads_as_instability_not_feature_gaps(target: RunningTarget, tmp_path: Path) -> None:
    only = ["request.*", "response.*"]
    with unwell_target(target.base_url, "flaky_5xx", every=10) as url:
        outcome = _run(url, target.api_key, target.model, only, tmp_path, request_timeout=5.0)
    assert outcome.run is not None, outcome.message
    flaky = [r for r in outcome.run.results if r.status == "flaky"]
    assert flaky, {r.id: r.status for r in outcome.run.results}
    assert not [r.id for r in outcome.run.results if r.status == "fail"]
    ev = flaky[0].evidence
    assert ev["exchange"]["status"] == 500 and "rerun" in ev  # both attempts
    doc = _doc(outcome)
    assert any(h.startswith("the target is unstable: ") for h in doc["headline"])  # type: ignore[attr-defined]
    assert int(outcome.code) == (1 if any(r.severity == "MUST" for r in flaky) else 0)
    assert outcome.run_dir is not None
    junit = (outcome.run_dir / "junit.xml").read_text()
    html = (outcome.run_dir / "index.html").read_text()
    assert "re-run (passed)" in html and "the target is unstable" in html
    if any(r.severity == "MUST" for r in flaky):  # a flaky MUST fails the JUnit case too
        assert "<failure" in junit


def test_max_time_ends_any_run_with_a_partial_report(target: RunningTarget, tmp_path: Path) -> None:
    t0 = time.monotonic()
    outcome = _run(target.base_url, target.api_key, target.model, ["request.*"], tmp_path, max_time=0.3)
    assert time.monotonic() - t0 < 30
    assert outcome.run is not None and int(outcome.code) == 4
    doc = _doc(outcome)
    assert doc["not_run"] and "max-time" in str(doc["run"]["cut_short"])  # type: ignore[index]
    assert any("cut short" in h for h in doc["headline"])  # type: ignore[attr-defined]
