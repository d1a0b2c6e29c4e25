"""The ``eyechart`` command: one sub-command per job, each defined in the module that does the job.

Each job module exposes ``configure(parser)`` (its flags, with help that teaches) and ``run(args) -> int``
(an ExitCode). This file only wires them together, so a flag lives next to the code that reads it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rich_argparse import RawDescriptionRichHelpFormatter

from eyechart import __version__
from eyechart.exitcodes import JOB_CODES, SERVICE_CODES, ExitCode, exit_codes_help

# sub-command -> (module, one-line summary, the exit codes it can end with)
COMMANDS: dict[str, tuple[str, str, tuple[ExitCode, ...]]] = {
    "serve": (
        "eyechart.target.command",
        "run the embedded reference target (vision chat API, simulated GPU)",
        SERVICE_CODES,
    ),
    "conform": (
        "eyechart.conform.command",
        "check a server against the vision chat contract (CI gate)",
        JOB_CODES,
    ),
    "load": (
        "eyechart.load.command",
        "drive a workload with Locust and gate on SLOs and baselines",
        JOB_CODES,
    ),
    "plan": (
        "eyechart.plan.command",
        "plan capacity from a load run: max goodput under SLOs, replicas, cost",
        (ExitCode.OK, ExitCode.USAGE, ExitCode.INVALID_RUN),
    ),
    "fixtures": ("eyechart.images.command", "generate, list or serve the image fixtures", SERVICE_CODES),
    "locustfile": (
        "eyechart.load.locustfile_command",
        "print the bundled Locust file's path (plain Locust, workers on other hosts)",
        (ExitCode.OK,),
    ),
}


class _Formatter(RawDescriptionRichHelpFormatter):
    # group titles as written ("fixture server (URL transport ...)"), not Title Case
    group_name_formatter = str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eyechart",
        description="An eye exam for OpenAI-compatible vision chat APIs: conformance, load, reference target."
        "\nWithout --base-url, `conform` and `load` start the embedded target themselves.",
        epilog=exit_codes_help(),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"eyechart {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary, codes) in COMMANDS.items():
        module = importlib.import_module(module_name)  # by name: the table above is the list of jobs
        doc = (module.__doc__ or summary).strip()
        p = sub.add_parser(
            name, help=summary, description=doc, epilog=exit_codes_help(codes), formatter_class=_Formatter
        )
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return int(ExitCode.USAGE)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
