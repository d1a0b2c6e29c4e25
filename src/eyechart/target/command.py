"""Run the embedded reference target: an OpenAI-compatible vision chat API on a simulated GPU.

It honours the contract eyechart checks (both route styles, auth, the error envelope, SSE streaming
with usage), decodes and measures real images, reads text with a real OCR model, and times its answers
with a latency model instead of a GPU, so a load test has a known ground truth (``--trace``).

examples:
  eyechart serve                                   # http://127.0.0.1:8000/v1/openai, key "eyechart-local"
  eyechart serve --model-profile qwen2.5-vl-7b --gpu h100-sxm --trace reports/trace.jsonl
  eyechart serve --max-seqs 8 --max-batched-tokens 512   # a small engine that saturates early
  eyechart serve --latency zero                    # never the bottleneck: measure the harness itself
  eyechart serve --speed 10                        # the same engine, ten times faster
  eyechart serve --faults error_rate=0.1,disconnect=0.05,stall=2s,malformed=0.02,slow_headers=1s
  curl -H "Authorization: Bearer $EYECHART_API_KEY" http://127.0.0.1:8000/v1/openai/models

The simulated engine batches continuously, as vLLM does: each step every running sequence decodes one
token and prefill chunks fill the rest of the --max-batched-tokens budget; a waiting request is admitted
first come, first served, when fewer than --max-seqs run and its prompt + answer limit fits in the
--kv-tokens KV cache. A step lasts what a roofline model of the model on the GPU says: reading the
weights and the batch's KV cache at the GPU's memory bandwidth, or the step's tokens (and the vision
encoder's work on new images) at its BF16 throughput, whichever is longer, plus a fixed overhead. So
the inter-token latency grows with the batch and its context, TTFT with the queue and the prefill, and
load shows a real saturation knee. /metrics gives running, waiting and KV-cache use (also under vLLM's
metric names); --trace FILE records every request's admission and tokens (the ground truth).
`eyechart.target.capacity` computes, for a workload, the throughput this engine saturates at and the
highest rate that meets latency SLOs. Real CPU work (image decode, OCR) runs off the event loop and
overlaps the simulated queue wait and prefill.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from eyechart.exitcodes import ExitCode
from eyechart.target import DEFAULT_API_KEY
from eyechart.target.deployment import deployment, describe_deployments
from eyechart.target.faults import FaultSpecError, parse_faults
from eyechart.target.gpus import GPUS
from eyechart.target.models import DEFAULT_PROFILE, PROFILES, get_profile


def configure(parser: argparse.ArgumentParser) -> None:
    from eyechart.target import faults

    fault_doc = (faults.__doc__ or "").split("::", 1)[-1].split("Durations", 1)[0].rstrip()
    parser.epilog = (
        "deployments (--model-profile on its default GPU, and on an H100 with --gpu h100-sxm):\n"
        + describe_deployments()
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
        help="the served model: token rule, price, context, and the size figures the engine's timing "
        "comes from (default: %(default)s)",
    )
    model.add_argument(
        "--model", metavar="NAME", help="serve the model under this id instead of the profile's"
    )
    model.add_argument(
        "--latency",
        choices=["profile", "zero"],
        default="profile",
        help="'profile': the simulated engine; 'zero': no simulated time and no sequence limit, a "
        "whole stream in one write, so the target is never the bottleneck (default: %(default)s)",
    )
    model.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="run the engine X times faster: every step lasts 1/X as long (default: 1). Throughput scales "
        "by X, so a test can saturate the engine without saturating this machine",
    )
    model.add_argument(
        "--gpu",
        choices=sorted(GPUS),
        help="the GPU the engine pretends to run on: memory, bandwidth and FLOP/s from its datasheet "
        "(default: the profile's, listed below)",
    )
    model.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="tensor-parallel GPUs of the replica; bandwidth, FLOP/s and memory add up (default: the "
        "profile's, 4 for llama-3.2-90b-vision, else 1)",
    )
    model.add_argument(
        "--max-seqs",
        type=int,
        metavar="N",
        help="sequences running at once, vLLM's --max-num-seqs (default: vLLM's for the GPU, 256 or 1024)",
    )
    model.add_argument(
        "--max-batched-tokens",
        type=int,
        metavar="N",
        help="tokens one engine step processes, decodes plus prefill chunks; vLLM's "
        "--max-num-batched-tokens (default: vLLM's for the GPU, 2048 or 8192)",
    )
    model.add_argument(
        "--max-waiting",
        type=int,
        metavar="N",
        help="requests allowed to wait in the queue; more get 429 (default: unlimited)",
    )
    model.add_argument(
        "--kv-tokens",
        type=int,
        metavar="N",
        help="KV-cache capacity in tokens (default: 90%% of GPU memory minus weights and a 3 GiB reserve "
        "per GPU, over the model's KV bytes per token)",
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
        model = get_profile(args.model_profile)
        if args.model:
            model = dataclasses.replace(model, model_id=args.model)
        engine = deployment(
            model,
            args.gpu,
            gpus=args.gpus,
            max_seqs=args.max_seqs,
            max_batched_tokens=args.max_batched_tokens,
            kv_tokens=args.kv_tokens,
            speed=args.speed,
            zero_latency=args.latency == "zero",
        )
        profile = engine.model
        if args.max_waiting is not None and args.max_waiting < 0:
            raise ValueError("--max-waiting must be >= 0")
    except (FaultSpecError, ValueError) as exc:
        print(f"eyechart serve: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    api_key = args.api_key or os.environ.get("EYECHART_API_KEY") or DEFAULT_API_KEY
    config = ServeConfig(
        deployment=engine,
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
        f"profile {args.model_profile} on {engine.gpus}x {engine.gpu.key}, latency {args.latency}"
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
