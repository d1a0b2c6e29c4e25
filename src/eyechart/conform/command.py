"""Check a vision chat API against the contract (conformance/CONTRACT.md), check by check, with evidence.

Every request and response is judged against JSON Schemas and the contract's rules; each finding has
a stable check id, a severity, the clause, the exchange and a curl reproducer (key as
$EYECHART_API_KEY). Without --base-url the embedded reference target is started and checked.

examples:
  eyechart conform                                             # the embedded target, profile deepinfra
  eyechart conform --base-url https://api.deepinfra.com/v1/openai --model "$MODEL"
  EYECHART_API_KEY=... eyechart conform --base-url http://gpu-box:8000/v1 --profile vllm --strict
  eyechart conform --only 'auth.*' --only 'errors.*' --skip 'errors.status.*'
  eyechart conform --profile vllm --set max_images=2 --report-dir out/
  eyechart conform --suite my_checks/                          # the bundled checks plus your own
  eyechart conform --list                                      # every check id, severity and clause
  eyechart conform --base-url http://10.0.0.7:8000/v1 --fixture-host 0.0.0.0 --fixture-url http://10.0.0.5:8900
  eyechart conform --base-url https://gateway.internal/v1 --header 'api-key: ...' --ca-bundle corp-ca.pem

Severity: MUST findings fail the run (exit 1); SHOULD findings are warnings unless --strict; INFO is
recorded only. Reports go to <report-dir>/<timestamp>-conform/: conformance.json, junit.xml,
index.html. The same suite runs under pytest: `pytest conformance --eyechart-base-url URL`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eyechart import options, profiles
from eyechart.conform.runner import ConformOptions, list_checks, run_conformance
from eyechart.exitcodes import ExitCode
from eyechart.report.conformance import print_summary


def configure(parser: argparse.ArgumentParser) -> None:
    options.add_target(parser)
    contract = parser.add_argument_group("contract")
    contract.add_argument(
        "--profile",
        metavar="NAME",
        default="deepinfra",
        help="conformance profile (conformance/profiles/NAME.toml, or a TOML path; default: deepinfra). "
        "A finding of a check a knob decides is reported as following from the profile, apart from the "
        "core contract. " + profile_help(),
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
    contract.add_argument(
        "--max-time",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="end the run after this long with a partial report naming what did not run (exit 4; "
        "default 300, 0: no limit)",
    )
    contract.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="bound of one request (default 30); a timeout is attributed with a cheap probe first",
    )
    contract.add_argument(
        "--suite",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a folder of your own check modules, run with the bundled ones (repeatable)",
    )
    contract.add_argument(
        "--list",
        action="store_true",
        help="print every check id with its severity (for --profile) and clause, then exit",
    )
    options.add_interop(parser, request_ids=False)
    options.add_fixture_server(parser)
    options.add_report_dir(parser, "conform")


def profile_help() -> str:
    """Which knobs each bundled profile sets, and why (its description)."""
    parts = []
    for name in profiles.available():
        knobs = profiles.knobs_set(name)
        description = knobs.pop("description", "")
        shown = ", ".join(f"{k}={_short(v)}" for k, v in knobs.items())
        parts.append(f"{name}: {description} — sets {shown}.")
    return " ".join(parts)


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


def run(args: argparse.Namespace) -> int:
    console = Console()
    try:
        headers = options.parse_headers(args.header)
    except ValueError as exc:
        console.print(f"[bold red]eyechart conform:[/] {exc}", highlight=False, soft_wrap=True)
        return int(ExitCode.USAGE)
    opts = ConformOptions(
        base_url=args.base_url,
        api_key=options.api_key(args),
        model=args.model,
        profile=args.profile,
        overrides=list(args.overrides),
        report_dir=Path(args.report_dir),
        only=list(args.only),
        skip=list(args.skip),
        strict=bool(args.strict),
        fixture_host=args.fixture_host,
        fixture_url=args.fixture_url,
        extra_suites=list(args.suite),
        max_time=args.max_time,
        request_timeout=args.request_timeout,
        headers=headers,
        ca_bundle=args.ca_bundle,
        insecure=bool(args.insecure),
    )
    if args.list:
        return _list(opts, console)
    outcome = run_conformance(opts, console)
    if outcome.run is not None:
        print_summary(outcome.run, console, outcome.reports.get("html"))
    return int(outcome.code)


def _list(opts: ConformOptions, console: Console) -> int:
    checks, problem = list_checks(opts)
    if problem:
        console.print(f"[bold red]eyechart conform:[/] {problem}", highlight=False, soft_wrap=True)
        return int(ExitCode.USAGE)
    table = Table(title=f"{len(checks)} checks (profile {opts.profile})", box=None, padding=(0, 2))
    table.add_column("id", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("clause", overflow="fold")
    for check_id, severity, clause in checks:
        table.add_row(check_id, severity, clause)
    console.print(table)
    return int(ExitCode.OK)
