"""Command-line option groups several commands share, defined once so their names and help agree.

``eyechart conform`` and ``eyechart load`` both talk to a target (``--base-url``, ``--api-key``,
``--model``), maybe through a gateway (``--header``, ``--ca-bundle``, ``--insecure``), may serve fixture
images (``--fixture-host``, ``--fixture-url``) and write run folders (``--report-dir``). The pytest plugin
spells the same settings ``--eyechart-*``; both read ``EYECHART_BASE_URL``, ``EYECHART_API_KEY`` and
``EYECHART_MODEL`` when the flag is not given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_target(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--base-url``, ``--api-key``, ``--model`` in a "target" group (returned for job extras)."""
    g = parser.add_argument_group("target")
    g.add_argument(
        "--base-url",
        metavar="URL",
        default=os.environ.get("EYECHART_BASE_URL") or None,
        help="the API's base URL as an OpenAI SDK takes it, e.g. http://host:8000/v1/openai "
        "(default: $EYECHART_BASE_URL, else start the embedded target)",
    )
    g.add_argument(
        "--api-key",
        metavar="KEY",
        help="bearer key (default: $EYECHART_API_KEY, which does not show in `ps`); never written anywhere",
    )
    g.add_argument(
        "--model", metavar="MODEL", help="model under test (default: the only model /models lists)"
    )
    return g


def api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key``, else ``$EYECHART_API_KEY``, else None."""
    return args.api_key or os.environ.get("EYECHART_API_KEY") or None


def add_fixture_server(
    parser: argparse.ArgumentParser, purpose: str = "image URLs the target fetches"
) -> None:
    """``--fixture-host`` and ``--fixture-url``: where the fixture image server listens and is reached."""
    g = parser.add_argument_group(f"fixture server ({purpose})")
    g.add_argument("--fixture-host", metavar="HOST", help="bind address (default: 127.0.0.1)")
    g.add_argument(
        "--fixture-url",
        metavar="URL",
        help="the fixture server's base URL as the target reaches it, and the port it listens on "
        "(default: http://<fixture-host>:<a free port>)",
    )


def add_report_dir(group: argparse._ArgumentGroup | argparse.ArgumentParser, job: str) -> None:
    """``--report-dir``: where the run folder ``<time>-<job>/`` goes."""
    group.add_argument(
        "--report-dir",
        metavar="DIR",
        default="reports",
        help=f"where the run folder <timestamp>-{job}/ goes (default: reports/)",
    )


def report_dir_problem(path: Path | str, flag: str = "--report-dir") -> str | None:
    """Why run folders cannot be made under ``path`` (a file, or not writable), or None: asked before a
    run starts, so a typo costs one line instead of a finished run with nowhere to put its report."""
    p = Path(path)
    probe = p
    while not probe.exists():  # the nearest existing ancestor decides whether the folders can be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == p else f"cannot be made: {probe} is a file"
        return f"{flag} {str(p)!r} {what}, not a folder"
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return f"{flag} {str(p)!r} is not writable (no write permission on {probe})"
    return None


REQUEST_ID_HEADER = "X-Request-Id"


def add_interop(parser: argparse.ArgumentParser, *, request_ids: bool = True) -> argparse._ArgumentGroup:
    """Talking to gateways and servers with their own rules: extra headers, TLS trust, and (for a job
    that tags its requests, ``request_ids``) the request id header. Both jobs read these the same way,
    their preflight included (:mod:`eyechart.wire.discovery`).

    Proxies come from the usual environment variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``)."""
    g = parser.add_argument_group("interop")
    g.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="an extra request header, repeatable (gateways that want api-key or routing headers)",
    )
    g.add_argument("--ca-bundle", metavar="FILE", help="trust these CA certificates for https targets")
    g.add_argument("--insecure", action="store_true", help="do not verify the https target's certificate")
    if not request_ids:
        return g
    ids = g.add_mutually_exclusive_group()
    ids.add_argument(
        "--request-id-header",
        default=REQUEST_ID_HEADER,
        metavar="NAME",
        help=f"header carrying each request's id, a UUID (default {REQUEST_ID_HEADER})",
    )
    ids.add_argument(
        "--no-request-id", action="store_true", help="send no request id header (servers that reject it)"
    )
    return g


def parse_headers(items: list[str] | None) -> dict[str, str]:
    """``NAME:VALUE`` items -> headers; raises ValueError naming a malformed one."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n") or "\n" in value:
            raise ValueError(f"--header {item!r} is not NAME:VALUE (e.g. --header 'api-key: abc')")
        out[name.strip()] = value.strip()
    return out


def request_id_header(args: argparse.Namespace) -> str | None:
    """The header name for request ids, or None with ``--no-request-id``."""
    return None if getattr(args, "no_request_id", False) else getattr(args, "request_id_header", None)
