"""Generate, list or serve the image fixtures the conformance cases and load workloads send.

Fixtures are made with Pillow on first use and cached (``$EYECHART_CACHE_DIR``, else ``fixtures/.cache``
in a checkout, else ``~/.cache/eyechart/fixtures``); the same Pillow version gives the same bytes.

examples:
  eyechart fixtures list                      # name, kinds, size, format, sha256 of every fixture
  eyechart fixtures list --kind refused       # only what the default contract refuses
  eyechart fixtures build --all               # pre-generate everything, 10000x10000 included
  eyechart fixtures serve --bind 0.0.0.0 --port 8900 --public-url http://10.0.0.5:8900
                                              # serve fixtures where a remote target can fetch them
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eyechart.exitcodes import ExitCode
from eyechart.images import fixtures
from eyechart.images.server import FixtureServer, FixtureServerError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="fixtures_command", metavar="ACTION")
    p_list = sub.add_parser("list", help="show every fixture with its kinds, size, format and sha256")
    p_list.add_argument("--kind", choices=fixtures.KINDS, help="only fixtures of this kind")
    p_build = sub.add_parser("build", help="pre-generate fixtures into the cache (a progress bar)")
    p_build.add_argument("--all", action="store_true", help="include the large ones (10000x10000)")
    p_build.add_argument("--cache-dir", type=Path, help="generate here instead of the default cache")
    p_build.add_argument(
        "--write-manifest",
        action="store_true",
        help="rewrite fixtures/manifest.toml from the generated files (maintainers, after a recipe change)",
    )
    p_serve = sub.add_parser("serve", help="run the fixture HTTP server in the foreground until Ctrl-C")
    p_serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8900, help="port (default 8900; 0 picks a free one)")
    p_serve.add_argument(
        "--public-url",
        help="the base URL the target uses to reach this server, when it differs from http://BIND:PORT",
    )


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "fixtures_command", None)
    if action == "list":
        return _list(args.kind)
    if action == "build":
        return _build(args.all, args.cache_dir, args.write_manifest)
    if action == "serve":
        return _serve(args.bind, args.port, args.public_url)
    _console(stderr=True).print("choose an action: list, build or serve (see `eyechart fixtures --help`)")
    return int(ExitCode.USAGE)


def _list(kind: str | None) -> int:
    table = Table(title=f"eyechart fixtures (cache: {fixtures.cache_dir()})")
    for col in ("name", "kinds", "format", "size", "pixels", "accepted", "sha256"):
        table.add_column(
            col,
            justify="right" if col in ("size", "pixels") else "left",
            no_wrap=col in ("name", "pixels", "sha256"),
        )
    large = set(fixtures.names("large"))
    for name in fixtures.names(kind):
        fx = fixtures.get(name) if name not in large else None
        kinds = ", ".join(fixtures.kinds_of(name))
        if fx is None:  # not generated just to list it
            table.add_row(name, kinds, "png", "(build --all)", "10000x10000", "yes", "")
            continue
        dims = f"{fx.width}x{fx.height}" if fx.width else "-"
        table.add_row(
            name, kinds, fx.format, _human(fx.size), dims, "yes" if fx.accepted else "no", fx.sha256[:12]
        )
    _console().print(table)
    return int(ExitCode.OK)


def _build(include_large: bool, cache: Path | None, write_manifest: bool) -> int:
    chosen = (
        fixtures.names()
        if include_large
        else [n for n in fixtures.names() if n not in fixtures.names("large")]
    )
    built: list[fixtures.Fixture] = []
    console = _console(stderr=True)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("generating", total=len(chosen))
            for name in chosen:
                progress.update(task, description=f"generating {name}")
                built.append(fixtures.get(name, cache))
                progress.advance(task)
    except OSError as exc:
        console.print(f"cannot write fixtures: {exc}")
        return int(ExitCode.USAGE)
    console.print(f"{len(built)} fixtures in {cache or fixtures.cache_dir()}")
    if write_manifest:
        small = [fx for fx in built if "large" not in fx.kinds]
        if len(small) < len(fixtures.names()) - len(fixtures.names("large")):
            small = fixtures.build(cache=cache)
        path = fixtures.manifest_path()
        path.write_text(fixtures.render_manifest(small))
        console.print(f"wrote {path}")
    return int(ExitCode.OK)


def _serve(bind: str, port: int, public_url: str | None) -> int:
    console = _console(stderr=True)
    server = FixtureServer(bind=bind, port=port, public_url=public_url)
    try:
        server.start()
    except FixtureServerError as exc:
        console.print(str(exc))
        return int(ExitCode.USAGE)
    console.print(f"serving fixtures on {bind}:{server.port}; targets use {server.base_url}")
    console.print(f"  e.g. {server.url('/img/colour-red')}   (Ctrl-C to stop)")
    sys.stderr.flush()
    try:
        server.wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()
    return int(ExitCode.OK)
