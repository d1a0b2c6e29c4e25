"""The conformance session runs the invariant registry on every exchange it records (issue 7, item 6):
a rule broken on an exchange another check sent is reported under the rule's id, once."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from faulty_targets import breaking_proxy
from rich.console import Console

from eyechart.conform.runner import ConformOptions, ConformOutcome, run_conformance
from eyechart.target.launch import RunningTarget

ONLY = ["errors.client_mistake.unknown_model", "errors.envelope", "stream.usage_total"]


def _run(url: str, target: RunningTarget, tmp: Path) -> ConformOutcome:
    opts = ConformOptions(
        base_url=url, api_key=target.api_key, model=target.model, only=ONLY, report_dir=tmp, progress=False
    )
    return run_conformance(opts, Console(file=io.StringIO(), width=120))


def test_the_registry_judges_exchanges_other_checks_sent(target: RunningTarget, tmp_path: Path) -> None:
    with breaking_proxy(target.base_url, ["errors.detail_envelope"], api_key=target.api_key) as url:
        outcome = _run(url, target, tmp_path)
    assert outcome.run is not None, outcome.message
    ids = Counter(r.id for r in outcome.run.results)
    assert all(n == 1 for n in ids.values()), ids  # nothing reports twice
    results = {r.id: r for r in outcome.run.results}
    envelope = results["errors.envelope"]  # no check of its own: only the registry carries it
    assert envelope.status == "fail" and envelope.nodeid == "invariant"
    assert envelope.evidence["invariant"]["sent_by"] == ["errors.client_mistake.unknown_model"]
    assert envelope.evidence["exchange"]["status"] == 404 or envelope.evidence["exchange"]["status"] >= 400
    assert "curl" in envelope.evidence["reproducer"]


def test_the_registry_passes_the_faithful_target(target: RunningTarget, tmp_path: Path) -> None:
    outcome = _run(target.base_url, target, tmp_path)
    assert outcome.run is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    assert results["errors.envelope"].status == "pass" and results["errors.envelope"].evidence["sampled"] >= 1
    assert int(outcome.code) == 0


def test_every_request_the_suite_sends_carries_a_small_cap(target: RunningTarget, tmp_path: Path) -> None:
    """Issue 10, item 2: a lenient server must never generate at length for a deliberately wrong body
    (the next check would time out behind it). Every chat body that is a JSON object carries a cap."""
    from faulty_targets.proxy import Break, Exchange, Reply, _Proxy, serve_app

    seen: list[object] = []

    async def record(ex: Exchange) -> Reply | None:
        if ex.is_chat:
            seen.append(ex.body)
        return None

    proxy = _Proxy(
        target.base_url.split("/v1")[0], [Break("record", "none", "records", request=record)], None
    )
    with serve_app(proxy.app()) as root:
        opts = ConformOptions(
            base_url=root + "/v1/openai", api_key=target.api_key, model=target.model, report_dir=tmp_path,
            only=["errors.*", "request.*", "stream.*", "response.*", "tokens.*"], progress=False,
        )  # fmt: skip
        outcome = run_conformance(opts, Console(file=io.StringIO(), width=120))
    assert outcome.run is not None and int(outcome.code) == 0, outcome.message
    bodies = [b for b in seen if isinstance(b, dict)]
    assert len(bodies) > 30
    uncapped = [b for b in bodies if not (b.get("max_tokens") or b.get("max_completion_tokens"))]
    assert not uncapped, uncapped[:3]
    assert max(int(b.get("max_tokens") or b.get("max_completion_tokens")) for b in bodies) <= 256
