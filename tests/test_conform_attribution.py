"""Profile-made findings are told apart from the core contract's (issue 10, item 4)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
from rich.console import Console

from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.profiles import attribution, knob_of, load_profile
from eyechart.report.conformance import print_summary, schema_path
from eyechart.target.launch import RunningTarget


def test_a_finding_that_follows_from_a_knob_names_the_knob_and_its_value(
    target: RunningTarget, tmp_path: Path
) -> None:
    """A profile that lists only JPEG and PNG makes a server that accepts WebP fail: the finding says
    it follows from ``formats``, in the JSON, the terminal and index.html, apart from core findings."""
    console = io.StringIO()
    opts = ConformOptions(
        base_url=target.base_url, api_key=target.api_key, model=target.model, report_dir=tmp_path,
        only=["images.format_refused.webp", "response.schema"], overrides=['formats=["jpeg", "png"]'],
        progress=False,
    )  # fmt: skip
    outcome = run_conformance(opts, Console(file=console, width=200))
    assert outcome.run is not None and outcome.run_dir is not None, outcome.message
    results = {r.id: r for r in outcome.run.results}
    webp = results["images.format_refused.webp"]
    assert webp.status == "fail"
    assert webp.attribution == {
        "source": "profile", "profile": "deepinfra", "knob": "formats", "value": ["jpeg", "png"],
        "why": "image formats the server documents (others must be refused)",
    }  # fmt: skip
    assert results["response.schema"].attribution == {"source": "core"}
    doc = json.loads((outcome.run_dir / "conformance.json").read_text())
    jsonschema.validate(doc, json.loads(schema_path().read_text()))
    print_summary(outcome.run, Console(file=console, width=200))
    text = console.getvalue()
    assert "follows from profile deepinfra" in text and 'formats = ["jpeg", "png"]' in text
    html = (outcome.run_dir / "index.html").read_text()
    assert "Findings that follow from the profile (1)" in html and "profile deepinfra: formats" in html


def test_core_checks_have_no_knob_and_every_knob_named_exists() -> None:
    profile = load_profile("openai")
    for core in ("stream.done_sentinel", "response.schema", "errors.status.missing_messages"):
        assert knob_of(core) is None
    assert knob_of("images.format_accepted.webp") == "formats"
    assert knob_of("request.option[n=2]") is None and knob_of("request.option_n") == "n_supported"
    from eyechart.profiles import KNOB_OF_CHECK, KNOB_WHY

    for _pattern, knob in KNOB_OF_CHECK:
        assert hasattr(profile, knob) and KNOB_WHY[knob]
    assert attribution("limits.size_refuse", profile)["value"] == profile.size_refuse_bytes
