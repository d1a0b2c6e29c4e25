"""Check a vision chat API against the contract (CONTRACT.md), check by check, with evidence.

Every request and response is judged against JSON Schemas and the contract's rules; each finding has
a stable check id, a severity, the clause, the exchange and a curl reproducer (key as
$EYECHART_API_KEY). Without --base-url the embedded reference target is started and checked.

examples:
  eyechart conform                                             # the embedded target, profile deepinfra
  eyechart conform --base-url https://api.deepinfra.com/v1/openai --model "$MODEL"
  EYECHART_API_KEY=... eyechart conform --base-url http://gpu-box:8000/v1 --profile vllm --strict
  eyechart conform --only 'auth.*' --only 'errors.*' --skip 'errors.status.*'
  eyechart conform --profile vllm --set max_images=2 --report-dir out/
  eyechart conform --base-url http://10.0.0.7:8000/v1 --fixture-host 0.0.0.0 --fixture-url http://10.0.0.5:8900

Severity: MUST findings fail the run (exit 1); SHOULD findings are warnings unless --strict; INFO is
recorded only. Reports go to <report-dir>/<timestamp>-conform/: conformance.json, junit.xml,
index.html. The same suite runs under pytest: `pytest conformance --base-url URL`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument(
        "--base-url",
        metavar="URL",
        help="the API's base URL as an OpenAI SDK takes it "
        "(a bare host gets the profile's base path); default: start the embedded target",
    )
    target.add_argument(
        "--api-key",
        metavar="KEY",
        help="bearer key (default: $EYECHART_API_KEY); "
        "prefer the environment variable, which does not show in `ps`",
    )
    target.add_argument(
        "--model", metavar="MODEL", help="model under test (default: the only model /models lists)"
    )
    contract = parser.add_argument_group("contract")
    contract.add_argument(
        "--profile",
        metavar="NAME",
        default="deepinfra",
        help="conformance profile (conformance/profiles/NAME.toml, or a TOML path; default: deepinfra)",
    )
    contract.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override one profile knob, value as TOML (repeatable): --set max_images=4",
    )
    contract.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only checks whose id matches this glob (repeatable, comma-separated)",
    )
    contract.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out checks whose id matches this glob (repeatable, comma-separated)",
    )
    contract.add_argument("--strict", action="store_true", help="SHOULD findings fail the run too")
    fixtures = parser.add_argument_group("fixture server (image URLs the target fetches)")
    fixtures.add_argument("--fixture-host", metavar="HOST", help="bind address (default 127.0.0.1)")
    fixtures.add_argument(
        "--fixture-url",
        metavar="URL",
        help="the fixture server's base URL as the target reaches it (and the port it listens on)",
    )
    parser.add_argument(
        "--report-dir",
        metavar="DIR",
        default="reports",
        help="where the run folder <timestamp>-conform/ goes (default: reports/)",
    )


def run(args: argparse.Namespace) -> int:
    from eyechart.conform.runner import ConformOptions, run_conformance

    opts = ConformOptions(
        base_url=args.base_url,
        api_key=args.api_key or os.environ.get("EYECHART_API_KEY") or None,
        model=args.model,
        profile=args.profile,
        overrides=list(args.overrides),
        report_dir=Path(args.report_dir),
        only=list(args.only),
        skip=list(args.skip),
        strict=bool(args.strict),
        fixture_host=args.fixture_host,
        fixture_url=args.fixture_url,
    )
    return int(run_conformance(opts).code)
