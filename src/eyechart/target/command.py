"""Run the embedded reference target: an OpenAI-compatible vision chat API on a simulated GPU.

It honours the contract eyechart checks (both route styles, auth, the error envelope, SSE streaming
with usage), decodes and measures real images, reads text with a real OCR model, and times its answers
with a latency model instead of a GPU, so a load test has a known ground truth (``--trace``).

examples:
  eyechart serve                                   # http://127.0.0.1:8000/v1/openai, key "eyechart-local"
  eyechart serve --model-profile qwen2.5-vl-7b --max-seqs 4 --trace reports/trace.jsonl
  eyechart serve --latency zero                    # never the bottleneck: measure the harness itself
  eyechart serve --speed 10                        # the same latency model, ten times faster
  eyechart serve --faults error_rate=0.1,disconnect=0.05,stall=2s,malformed=0.02,slow_headers=1s
  curl -H "Authorization: Bearer $EYECHART_API_KEY" http://127.0.0.1:8000/v1/openai/models

The latency model (per profile): TTFT = queue wait + prefill_tokens / prefill_tokens_per_s
+ image_tokens x vision_encode_s_per_token; each next token one decode step later, the step growing
with the number of running sequences; at most --max-seqs sequences run, the rest wait in a FIFO queue.
Real CPU work (image decode, OCR) runs off the event loop and overlaps the simulated queue wait and
prefill; it adds to what the client sees only when it takes longer than both.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from eyechart.exitcodes import ExitCode
from eyechart.target import DEFAULT_API_KEY
from eyechart.target.faults import FaultSpecError, parse_faults
from eyechart.target.models import DEFAULT_PROFILE, PROFILES, describe_profiles, get_profile


def configure(parser: argparse.ArgumentParser) -> None:
    from eyechart.target import faults

    fault_doc = (faults.__doc__ or "").split("::", 1)[-1].split("Durations", 1)[0].rstrip()
    parser.epilog = (
        "model profiles (--model-profile):\n"
        + describe_profiles()
        + "\n\nfaults (--faults name=value,...):"
        + fault_doc
        + "\n  durations take ms or s; each request draws its faults once from one seeded RNG\n\n"
        + (parser.epilog or "")
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    net.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    net.add_argument(
        "--port-file",
        type=Path,
        metavar="FILE",
        help="write the bound port to FILE once listening (for launchers that use --port 0)",
    )
    net.add_argument(
        "--api-key",
        default=None,
        help="the Bearer key clients must send (default: $EYECHART_API_KEY, else the documented local "
        f"key {DEFAULT_API_KEY!r}); prefer the environment variable, which does not show in `ps`",
    )
    net.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let image URLs point at loopback/private addresses (needed for local fixture servers; "
        "off by default: such URLs are refused like a hosted API does)",
    )
    model = parser.add_argument_group("model and simulated engine")
    model.add_argument(
        "--model-profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help="the simulated deployment: token rule, price, context, latency (default: %(default)s)",
    )
    model.add_argument(
        "--model", metavar="NAME", help="serve the model under this id instead of the profile's"
    )
    model.add_argument(
        "--latency",
        choices=["profile", "zero"],
        default="profile",
        help="'profile': the profile's latency model; 'zero': no simulated time and no sequence limit, a "
        "whole stream in one write, so the target is never the bottleneck (default: %(default)s)",
    )
    model.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="run the latency model X times faster (prefill, vision encode and decode; default: 1)",
    )
    model.add_argument(
        "--max-seqs", type=int, metavar="N", help="sequences running at once (default: the profile's)"
    )
    model.add_argument(
        "--max-waiting",
        type=int,
        metavar="N",
        help="requests allowed to wait in the queue; more get 429 (default: unlimited)",
    )
    model.add_argument(
        "--kv-tokens", type=int, metavar="N", help="KV-cache capacity in tokens (default: the profile's)"
    )
    obs = parser.add_argument_group("observability and faults")
    obs.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write server-side ground truth per request to FILE (JSON Lines, CLOCK_MONOTONIC ns)",
    )
    obs.add_argument(
        "--faults",
        metavar="SPEC",
        help="inject faults, e.g. error_rate=0.1,disconnect=0.05,stall=2s,stall_rate=0.1,malformed=0.02,"
        "slow_headers=1s,slow_headers_rate=0.5,error_status=503,seed=7 (off by default)",
    )
    obs.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="server log level (default: %(default)s)",
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from eyechart.target.answer import install_log_filter
    from eyechart.target.app import ServeConfig, create_app

    try:
        faults = parse_faults(args.faults)
        profile = get_profile(args.model_profile).tuned(
            latency=args.latency,
            speed=args.speed,
            max_seqs=args.max_seqs,
            model_id=args.model,
            kv_tokens=args.kv_tokens,
        )
        if args.max_waiting is not None and args.max_waiting < 0:
            raise ValueError("--max-waiting must be >= 0")
    except (FaultSpecError, ValueError) as exc:
        print(f"eyechart serve: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    api_key = args.api_key or os.environ.get("EYECHART_API_KEY") or DEFAULT_API_KEY
    config = ServeConfig(
        profile=profile,
        api_key=api_key,
        allow_private_urls=args.allow_private_urls,
        faults=faults,
        trace_path=args.trace,
        max_waiting=args.max_waiting,
    )
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"eyechart serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    port = sock.getsockname()[1]
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_filter()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=args.log_level,
            timeout_graceful_shutdown=3,
        )
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"eyechart serve: listening on http://{host}:{port}/v1/openai (model {profile.model_id}, "
        f"profile {args.model_profile}, latency {args.latency}"
        f"{'' if args.speed == 1 else f' x{args.speed:g}'}{', faults on' if faults.active else ''})",
        flush=True,
    )
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(port), encoding="utf-8")
        tmp.replace(args.port_file)  # atomic: a reader never sees a half-written port
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op SIGTERM handler
    # makes that a clean exit (0) after the graceful shutdown (trace flushed, fetcher closed).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run(sockets=[sock])
    return int(ExitCode.OK)
