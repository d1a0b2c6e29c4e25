"""Each conformance check fails on a server that breaks its clause and passes on one that keeps it.

A check that never fails proves nothing. Every break of ``faulty_targets.BREAKS`` names the check ids
that must catch it (``Break.catches``) and how the run is set up to see it (``Break.setup``, one of
``SETUPS``). Per setup the suite runs once, in-process, against the faithful reference target (through
a clean proxy): every check some break of that setup names must pass. Per break it runs the named
checks against the break: each must end as a finding (``fail`` for MUST, ``warn`` for SHOULD/INFO)
with a curl reproducer, and no file of the run may hold the API key. Every check id of the suite is
caught by some break, or listed in ``UNBREAKABLE`` with the reason no server behaviour can fail it.
Legal variants (CRLF framing, comments, extra keys...) fail nothing; hostile servers end the run
within seconds with exit 2 or 1, never a hang, a traceback or unbounded memory.
"""

from __future__ import annotations

import io
import json
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty_targets import BREAKS, KINDS, LEGAL_VARIANTS, breaking_proxy, hostile_server
from faulty_targets.breaks import PUBLIC_FIXTURE_HOST, SETUPS, Setup
from faulty_targets.proxy import Break
from rich.console import Console

from eyechart.conform.checks import CheckFailed
from eyechart.conform.liveness import NotJudged
from eyechart.conform.runner import ConformOptions, ConformOutcome, run_conformance
from eyechart.conform.session import Session
from eyechart.profiles import load_profile
from eyechart.target.launch import RunningTarget, start_target

ROOT = Path(__file__).resolve().parents[1]

# check id -> why no server behaviour can make it fail (keep this short)
UNBREAKABLE = {
    "request.harness_validates": "it judges the harness's own request validation: the bodies it tries "
    "never leave the harness, so no server behaviour reaches it",
}

# every entry with a proof: the breaks, and the legal variants an INFO check records
PROOFS: dict[str, Break] = {n: b for n, b in {**BREAKS, **LEGAL_VARIANTS}.items() if b.catches}

# legal variants, grouped so each run has one SSE framing (a proxy applies only one) and every variant runs
LEGAL_GROUPS = [
    ("sse.crlf", "json.extra_keys"),
    ("sse.cr", "stream.usage_null"),
    ("sse.no_space", "response.canonical_model"),
    ("sse.comments", "sse.paced"),
    ("sse.multiline", "json.extra_keys", "stream.usage_null"),
]
LEGAL_CHECKS = ["stream.*", "response.*", "models.list", "tokens.stream_equals_nonstream"]
# legal variants that are not framings: each is the faithful form a setup's clean run goes through
SETUP_VARIANTS = {v for s in SETUPS.values() for v in (*s.always, *s.clean_with)}

HOSTILE_RUN_BOUND_S = 20.0

_COLLECT = """
import json, sys
import pytest

class Grab:
    ids = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in items:
            mark = item.get_closest_marker("eyechart_check")
            if mark is not None:
                cs = getattr(item, "callspec", None)
                self.ids.append(mark.args[0].resolve_id(dict(cs.params) if cs else {}, cs.id if cs else None))

code = pytest.main(["conformance", "--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[Grab()])
print("IDS " + json.dumps(Grab.ids))
"""


@pytest.fixture(scope="module")
def all_check_ids() -> set[str]:
    """Every check id of the suite under the default profile (collected, not run)."""
    proc = subprocess.run(
        [sys.executable, "-c", _COLLECT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("IDS ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = set(json.loads(line[4:]))
    assert len(ids) > 120, sorted(ids)
    return ids


def test_every_check_is_caught_by_a_break_or_says_why(all_check_ids: set[str]) -> None:
    caught = {c for b in PROOFS.values() for c in b.catches}
    assert not caught - all_check_ids, f"breaks name checks the suite lacks: {sorted(caught - all_check_ids)}"
    assert not set(UNBREAKABLE) & caught, "a check listed as unbreakable is caught: drop it from the list"
    assert set(UNBREAKABLE) <= all_check_ids
    missing = sorted(all_check_ids - caught - set(UNBREAKABLE))
    assert not missing, f"checks no break proves (add a break naming them in catches=): {missing}"
    assert len(UNBREAKABLE) <= 3


def test_every_break_names_its_setup_and_proof() -> None:
    for name, b in BREAKS.items():
        assert b.catches, f"{name} names no check that must catch it"
        assert b.setup in SETUPS, f"{name}: unknown setup {b.setup!r}"
        assert b.upstream in ("faithful", "private_fetching"), name
    for name, b in LEGAL_VARIANTS.items():
        assert b.setup == "default" and b.upstream == "faithful", name
    framed = {v for g in LEGAL_GROUPS for v in g}
    assert framed | SETUP_VARIANTS == set(LEGAL_VARIANTS)


# ---------------------------------------------------------------------------------------------- targets


@pytest.fixture(scope="module")
def strict_target() -> Iterator[RunningTarget]:
    """The reference target as a hosted API runs it: private and loopback image URLs refused."""
    with start_target(args=("--speed", "20")) as running:
        yield running


@pytest.fixture(scope="module")
def four_image_target() -> Iterator[RunningTarget]:
    """A target model that refuses more than 4 images and bills 576 tokens per image (LLaVA-1.5)."""
    args = ("--model-profile", "llava-1.5-7b", "--speed", "20", "--allow-private-urls")
    with start_target(args=args) as running:
        yield running


@pytest.fixture(scope="module")
def targets(request: pytest.FixtureRequest, target: RunningTarget) -> dict[tuple[str, str], RunningTarget]:
    """(setup, upstream) -> the running target; targets other than the session's start on first use."""

    class Lazy(dict[tuple[str, str], RunningTarget]):
        def __missing__(self, key: tuple[str, str]) -> RunningTarget:
            setup, upstream = key
            if upstream == "private_fetching":
                running = target  # the session target runs with --allow-private-urls
            elif SETUPS[setup].strict_fetch:
                running = request.getfixturevalue("strict_target")
            elif SETUPS[setup].model_profile:
                running = request.getfixturevalue("four_image_target")
            else:
                running = target
            self[key] = running
            return running

    return Lazy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_setup(
    setup: Setup,
    upstream: RunningTarget,
    variants: list[str],
    only: list[str],
    report_dir: Path,
) -> ConformOutcome:
    fixture = {}
    if setup.strict_fetch:  # announced on a public address, served on 127.0.0.1 (fixture.public_front)
        fixture = {"fixture_host": "127.0.0.1", "fixture_url": f"http://{PUBLIC_FIXTURE_HOST}:{_free_port()}"}
    exact = [c.replace("[", "[[]") for c in only]  # --only takes globs: "[seed]" is not a character class
    with breaking_proxy(upstream.base_url, [*setup.always, *variants], api_key=upstream.api_key) as url:
        return _run(
            url, upstream.api_key, upstream.model, exact, report_dir, list(setup.overrides), **fixture
        )


def _run(
    base_url: str,
    api_key: str,
    model: str | None,
    only: list[str],
    report_dir: Path,
    overrides: list[str] | None = None,
    **fixture: str,
) -> ConformOutcome:
    opts = ConformOptions(
        base_url=base_url,
        api_key=api_key,
        model=model,
        only=only,
        report_dir=report_dir,
        progress=False,
        overrides=overrides or [],
        **fixture,
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
    if match:  # relative to the report folder, so the reproducer survives the folder being moved
        assert match.group(1).startswith("bodies/") and "run from the report folder" in repro
        assert outcome.run_dir is not None
        body = outcome.run_dir / match.group(1)
        assert body.name.startswith(check_id) and body.stat().st_size > 256 << 10
        json.loads(body.read_bytes())


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_checks_pass_on_the_faithful_target(
    setup: str, targets: dict[tuple[str, str], RunningTarget], tmp_path: Path
) -> None:
    """Every check a break of this setup names passes against the faithful target (no skip either:
    a skip here would make the break's proof meaningless)."""
    s = SETUPS[setup]
    only = sorted({c for b in PROOFS.values() if b.setup == setup for c in b.catches})
    outcome = _run_setup(s, targets[setup, "faithful"], list(s.clean_with), only, tmp_path)
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    assert set(only) <= set(results), f"did not run: {sorted(set(only) - set(results))}"
    bad = {i: (r.status, r.message[:200]) for i, r in results.items() if r.status != "pass"}
    assert not bad
    assert int(outcome.code) == 0


@pytest.mark.parametrize("name", sorted(PROOFS))
def test_break_is_caught(name: str, targets: dict[tuple[str, str], RunningTarget], tmp_path: Path) -> None:
    b = PROOFS[name]
    upstream = targets[b.setup, b.upstream]
    outcome = _run_setup(SETUPS[b.setup], upstream, [name], list(b.catches), tmp_path)
    _assert_caught(outcome, name, b.catches, upstream.api_key)


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
    """Past the reachability probe, every request of a check is bounded too (per request, wall-clock),
    the one-token probe after a timeout included: the check fails, or is not judged when the probe
    stalls too (a target that does not answer at all may be busy)."""
    with hostile_server(kind) as url:
        for streamed in (False, True):
            api = Session(
                base_url=url, api_key="sk-k", model="m", profile=load_profile("deepinfra"), timeout=1.5
            )
            try:
                api.begin_check("hostile.chat")
                t0 = time.monotonic()
                try:
                    if streamed:
                        ex, analysis = api.stream(api.text_body("hi"), stream_timeout=2.0)
                    else:
                        ex = api.chat(api.text_body("hi"))
                except (CheckFailed, NotJudged) as exc:  # no usable response, or no verdict at all
                    assert exc.exchange is not None and exc.exchange.error_class is not None
                    assert len(exc.exchange.body) <= 4 << 20
                else:  # a stream began, then broke off or never ended: the check gets evidence to judge
                    assert streamed and (ex.error_class is not None or analysis.violations)
                assert time.monotonic() - t0 < 6.5  # the request (≤2 s) and one probe (≤1.5 s)
            finally:
                api.close()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("stream.bad_image_empty_200", "an empty 200 event stream"),
        ("stream.bad_image_unterminated_200", "an unterminated 200 event stream"),
        ("stream.error_as_sse", "a 200 event stream holding an error event"),
    ],
)
def test_a_bad_image_streamed_as_200_is_named_for_what_came(
    name: str, says: str, target: RunningTarget, tmp_path: Path
) -> None:
    with breaking_proxy(target.base_url, [name], api_key=target.api_key) as url:
        outcome = _run(url, target.api_key, target.model, ["stream.bad_image_plain_json"], tmp_path)
    assert outcome.run is not None, outcome.message
    (result,) = outcome.run.results
    assert result.status == "fail" and says in result.message, result.message


def test_a_local_file_read_is_reported_as_one(target: RunningTarget, tmp_path: Path) -> None:
    with breaking_proxy(target.base_url, ["errors.local_file_read"], api_key=target.api_key) as url:
        outcome = _run(url, target.api_key, target.model, ["errors.image_url.*"], tmp_path)
    assert outcome.run is not None, outcome.message
    results = {r.id: r.message for r in outcome.run.results}
    for form in ("bare_path", "file_url"):
        assert "read the local file" in results[f"errors.image_url.{form}"], results
    assert "decoded raw base64" in results["errors.image_url.raw_base64"], results
