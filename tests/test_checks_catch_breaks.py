"""Each conformance check fails on a server that breaks its clause and passes on one that keeps it.

A check that never fails proves nothing. ``CATCHES`` maps every break of ``faulty_targets.BREAKS`` (but
the ones ``test_conform_cli.py`` already proves) to the check ids that guard its clause. For each break
the suite runs in-process (``run_conformance``, restricted with ``only``) against the breaking proxy in
front of the reference target: each named check must end as a finding (``fail`` for MUST, ``warn`` for
SHOULD) with a curl reproducer, and no file of the run may hold the API key. Through the clean proxy
the same checks pass; legal variants (CRLF framing, comments, extra keys...) fail nothing; hostile
servers end the run within seconds with exit 2 or 1, never a hang, a traceback or unbounded memory.
"""

from __future__ import annotations

import io
import json
import re
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty_targets import BREAKS, KINDS, LEGAL_VARIANTS, breaking_proxy, hostile_server
from rich.console import Console
from test_conform_cli import BREAK_CASES

from eyechart.conform.checks import CheckFailed
from eyechart.conform.runner import ConformOptions, ConformOutcome, run_conformance
from eyechart.conform.session import Session
from eyechart.profiles import load_profile
from eyechart.target.launch import RunningTarget, start_target

# break -> the check ids that must report it (breaks proved by test_conform_cli.py are left out)
CATCHES: dict[str, tuple[str, ...]] = {
    "stream.no_done": ("stream.done_sentinel",),
    "stream.data_after_done": ("stream.nothing_after_done",),
    "stream.invalid_json": ("stream.valid_json",),
    "stream.id_changes": ("stream.same_id",),
    "stream.empty_id": ("stream.chunk_schema",),
    "stream.model_changes": ("stream.same_model",),
    "stream.object_wrong": ("stream.chunk_schema",),
    "stream.created_string": ("stream.chunk_schema",),
    "stream.no_role": ("stream.first_delta_role",),
    "stream.empty_role_later": ("stream.later_role_not_empty",),
    "stream.two_finish_reasons": ("stream.one_finish_reason",),
    "stream.no_finish_reason": ("stream.one_finish_reason",),
    "stream.finish_differs": ("stream.finish_reason_matches",),
    "stream.content_differs": ("stream.content_matches",),
    "stream.buffered": ("stream.incremental",),
    "stream.json_content_type": ("stream.content_type",),
    "stream.error_as_sse": ("stream.error_plain_json",),
    "usage.include_usage_ignored": ("stream.usage_chunk",),
    "usage.unasked_chunk": ("stream.no_unasked_usage",),
    "usage.every_chunk": ("stream.usage_chunk",),
    "usage.chunk_with_choices": ("stream.usage_chunk",),
    "usage.stream_completion_mismatch": ("stream.usage_matches",),
    "usage.stream_prompt_mismatch": ("stream.usage_matches", "tokens.stream_equals_nonstream"),
    "response.object_wrong": ("response.schema",),
    "response.created_string": ("response.schema",),
    "response.created_ms": ("response.created_recent",),
    "response.model_empty": ("response.schema",),
    "response.role_wrong": ("response.schema",),
    "response.content_null": ("response.schema",),
    "finish.eos_token": ("response.schema", "stream.chunk_schema"),
    "usage.missing": ("response.schema",),
    "usage.cost_negative": ("response.estimated_cost",),
    "auth.missing_key_ok": ("auth.missing_key",),
    "models.404": ("models.list",),
    "errors.object_error_envelope": ("errors.client_mistake.empty_messages",),
    "errors.invented_answer": (
        "errors.client_mistake.empty_messages",
        "errors.client_mistake.image_url_string",
        "images.empty_datauri",
        "images.truncated_jpeg",
    ),
    "errors.bad_image_500": ("images.format_refused.gif", "images.truncated_jpeg", "images.url_404"),
    "images.zero_tokens": ("images.image_counts",),
    "images.one_token": ("images.image_counts",),
    "images.url_tokens_differ": ("tokens.url_equals_base64",),
    "images.webp_dropped": ("images.format_accepted.webp", "images.mode.webp-lossy"),
    "images.data_uri_variant_500": (
        "images.datauri_variant.charset",
        "images.datauri_variant.unpadded",
        "images.datauri_variant.line_breaks",
    ),
    "images.url_unsupported": ("images.transport.url",),
    "images.non_image_accepted": (
        "images.format_refused.gif",
        "images.format_refused.html",
        "images.mislabelled_gif_as_png",
        "images.url_html",
    ),
    "images.size_not_enforced": ("limits.size_refuse",),
    "images.size_refused_early": ("limits.size_accept",),
    "images.tiny_500": ("images.mode.size-1x1", "images.mode.size-27x300"),
    "images.detail_500": ("images.detail",),
    "images.bomb_500": ("security.decompression_bomb",),
}

# breaks only a profile with an image count can see: run against a target model that has one
NEEDS_MAX_IMAGES = {"images.too_many_accepted": ("limits.too_many_images",)}
PROVED_BY_CLI = {brk for brk, _, _ in BREAK_CASES}

# legal variants, grouped so each run has one SSE framing (a proxy applies only one) and every variant runs
LEGAL_GROUPS = [
    ("sse.crlf", "json.extra_keys"),
    ("sse.cr", "stream.usage_null"),
    ("sse.no_space", "response.canonical_model"),
    ("sse.comments", "sse.paced"),
    ("sse.multiline", "json.extra_keys", "stream.usage_null"),
]
LEGAL_CHECKS = ["stream.*", "response.*", "models.list", "tokens.stream_equals_nonstream"]

HOSTILE_RUN_BOUND_S = 20.0


def _run(
    base_url: str,
    api_key: str,
    model: str | None,
    only: list[str],
    report_dir: Path,
    overrides: list[str] | None = None,
) -> ConformOutcome:
    opts = ConformOptions(
        base_url=base_url,
        api_key=api_key,
        model=model,
        only=only,
        report_dir=report_dir,
        progress=False,
        overrides=overrides or [],
    )
    return run_conformance(opts, Console(file=io.StringIO(), width=120))


def _files_without(secret: str, folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files, f"no report files in {folder}"
    for p in files:
        assert secret.encode() not in p.read_bytes(), f"the API key leaked into {p.name}"


def _assert_caught(outcome: ConformOutcome, name: str, checks: tuple[str, ...], secret: str) -> None:
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    musts = 0
    for check_id in checks:
        assert check_id in results, f"{name}: {check_id} did not run (ran: {sorted(results)})"
        got = results[check_id]
        wanted = "fail" if got.severity == "MUST" else "warn"
        musts += got.severity == "MUST"
        assert got.status == wanted, f"{name}: {check_id} ended {got.status}: {got.message[:300]}"
        repro = str(got.evidence.get("reproducer", ""))  # a huge body's reproducer opens with a comment
        assert "\ncurl -sS" in "\n" + repro, f"{check_id} has no curl reproducer"
        _exact_body(repro, outcome, check_id)
    assert int(outcome.code) == (1 if musts else 0)
    assert outcome.run_dir is not None
    _files_without(secret, outcome.run_dir)


def _exact_body(repro: str, outcome: ConformOutcome, check_id: str) -> None:
    """A run with a report folder never abbreviates a finding's body: a big one is a file in <run>/bodies/."""
    assert "body abbreviated" not in repro, f"{check_id}: abbreviated body although the run has a folder"
    match = re.search(r"--data-binary @(?!-)(\S+)", repro)
    if match:
        body = Path(match.group(1))
        assert outcome.run_dir is not None and body.parent == (outcome.run_dir / "bodies").resolve()
        assert body.name.startswith(check_id) and body.stat().st_size > 256 << 10
        json.loads(body.read_bytes())


@pytest.fixture(scope="module")
def clean(target: RunningTarget, tmp_path_factory: pytest.TempPathFactory) -> ConformOutcome:
    """Every mapped check, run once through the clean (transparent) proxy."""
    only = sorted({c for checks in CATCHES.values() for c in checks})
    with breaking_proxy(target.base_url, [], api_key=target.api_key) as url:
        return _run(url, target.api_key, target.model, only, tmp_path_factory.mktemp("clean"))


def test_mapped_checks_pass_through_the_clean_proxy(clean: ConformOutcome) -> None:
    assert clean.run is not None, clean.message
    results = {r.id: r for r in clean.run.results}
    wanted = {c for checks in CATCHES.values() for c in checks}
    assert not wanted - set(results), (
        f"checks in CATCHES that the suite lacks: {sorted(wanted - set(results))}"
    )
    bad = {i: (r.status, r.message[:200]) for i, r in results.items() if r.status != "pass"}
    assert not bad  # a skip here would make the break test below meaningless
    assert int(clean.code) == 0


@pytest.mark.parametrize("name", sorted(CATCHES))
def test_break_is_caught(name: str, target: RunningTarget, tmp_path: Path) -> None:
    checks = CATCHES[name]
    with breaking_proxy(target.base_url, [name], api_key=target.api_key) as url:
        outcome = _run(url, target.api_key, target.model, list(checks), tmp_path)
    _assert_caught(outcome, name, checks, target.api_key)


@pytest.fixture(scope="module")
def four_image_target() -> Iterator[RunningTarget]:
    """A target model that refuses more than 4 images (the default model states no count)."""
    args = ("--model-profile", "llava-1.5-7b", "--speed", "20", "--allow-private-urls")
    with start_target(args=args) as running:
        yield running


def test_too_many_images_accepted_is_caught_when_the_profile_states_a_count(
    four_image_target: RunningTarget, tmp_path: Path
) -> None:
    t = four_image_target
    ((name, checks),) = NEEDS_MAX_IMAGES.items()
    set_count = ["max_images=4"]
    with breaking_proxy(t.base_url, [], api_key=t.api_key) as url:
        outcome = _run(url, t.api_key, t.model, list(checks), tmp_path / "clean", overrides=set_count)
    assert outcome.run is not None and [r.status for r in outcome.run.results] == ["pass"]
    with breaking_proxy(t.base_url, [name], api_key=t.api_key) as url:
        outcome = _run(url, t.api_key, t.model, list(checks), tmp_path / "broken", overrides=set_count)
    _assert_caught(outcome, name, checks, t.api_key)


def test_the_wrong_key_reproducer_really_sends_the_wrong_key(target: RunningTarget, tmp_path: Path) -> None:
    with breaking_proxy(target.base_url, ["auth.none"], api_key=target.api_key) as url:
        outcome = _run(url, target.api_key, target.model, ["auth.wrong_key"], tmp_path)
        assert outcome.run is not None
        (result,) = outcome.run.results
        assert result.status == "fail"
        curl = str(result.evidence["reproducer"])
    assert "Bearer eyechart-wrong-key-0000" in curl and "$EYECHART_API_KEY" not in curl
    assert target.api_key not in curl
    _files_without(target.api_key, outcome.run_dir or tmp_path)
    # pasted against the real target (with the real key in the environment) it gets the 401 it shows
    pasted = curl.replace(url, target.base_url).replace("curl -sS", "curl -sS -i --max-time 20", 1)
    proc = subprocess.run(
        ["bash", "-c", pasted],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "EYECHART_API_KEY": target.api_key},
    )
    assert proc.stdout.startswith("HTTP/1.1 401"), proc.stdout[:300] + proc.stderr[:300]


@pytest.mark.parametrize("variants", LEGAL_GROUPS, ids=["+".join(g) for g in LEGAL_GROUPS])
def test_legal_variants_fail_nothing(
    variants: tuple[str, ...], target: RunningTarget, tmp_path: Path
) -> None:
    with breaking_proxy(target.base_url, list(variants), api_key=target.api_key) as url:
        outcome = _run(url, target.api_key, target.model, LEGAL_CHECKS, tmp_path)
    assert outcome.run is not None, outcome.message
    bad = {r.id: r.message[:200] for r in outcome.run.results if r.status in ("fail", "error")}
    assert not bad, f"legal variants {variants} failed: {bad}"
    passed = {r.id for r in outcome.run.results if r.status == "pass"}
    assert {"stream.done_sentinel", "stream.chunk_schema", "response.schema"} <= passed
    assert int(outcome.code) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_server_ends_the_run_quickly(kind: str, tmp_path: Path) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    console = io.StringIO()
    t0 = time.monotonic()
    with hostile_server(kind) as url:
        opts = ConformOptions(
            base_url=url,
            api_key="sk-hostile-SECRET-123",
            model="m",
            only=["response.schema", "stream.done_sentinel"],
            report_dir=tmp_path,
            progress=False,
        )
        outcome = run_conformance(opts, Console(file=console, width=120))
    elapsed = time.monotonic() - t0
    assert elapsed < HOSTILE_RUN_BOUND_S, f"{kind}: the run took {elapsed:.0f} s"
    assert int(outcome.code) in (1, 2), (outcome.code, outcome.message)
    if int(outcome.code) == 2:  # unreachable: said in one line
        assert url in outcome.message
    assert "Traceback" not in console.getvalue() and "sk-hostile-SECRET-123" not in console.getvalue()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 100, f"{kind}: peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_server_fails_each_request_of_a_check_within_its_bound(kind: str) -> None:
    """Past the reachability probe, every request of a check is bounded too (per request, wall-clock)."""
    with hostile_server(kind) as url:
        api = Session(base_url=url, api_key="sk-k", model="m", profile=load_profile("deepinfra"), timeout=1.5)
        try:
            api.begin_check("hostile.chat")
            t0 = time.monotonic()
            with pytest.raises(CheckFailed) as failed:
                api.chat(api.text_body("hi"))
            assert time.monotonic() - t0 < 4
            ex = failed.value.exchange
            assert ex is not None and ex.error_class is not None and len(ex.body) <= 4 << 20
            t0 = time.monotonic()
            try:
                ex, analysis = api.stream(api.text_body("hi"), stream_timeout=2.0)
            except CheckFailed as exc:  # no response at all
                assert exc.exchange is not None and exc.exchange.status is None
            else:  # a response began, then broke off or never ended: the check gets evidence to judge
                assert ex.error_class is not None or analysis.violations
            assert time.monotonic() - t0 < 5
        finally:
            api.close()


def test_every_break_is_proved_somewhere() -> None:
    proved = set(CATCHES) | set(NEEDS_MAX_IMAGES) | PROVED_BY_CLI
    assert sorted(set(BREAKS) - proved) == []
    assert not (set(CATCHES) & PROVED_BY_CLI), "proved twice: keep each break in one place"
    assert set(CATCHES) <= set(BREAKS) and not set(CATCHES) & set(LEGAL_VARIANTS)
    assert {v for g in LEGAL_GROUPS for v in g} == set(LEGAL_VARIANTS)
