"""Drive a vision workload with Locust, measure streams exactly, and gate on SLOs and baselines.

Without --base-url the embedded reference target is started and stopped for you.

examples:
  eyechart load                                         # 8 users, captioning-mixed, 60 s, embedded target
  eyechart load --workload ocr-documents --users 16 --duration 30s
  eyechart load --rate 5 --arrival gamma --burstiness 2 --requests 500   # open loop, bursty
  eyechart load --base-url https://api.example.com/v1/openai --model my-vlm \\
      --slo "ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%,goodput>=95%" --baseline reports/base-load
  eyechart load --base-url http://10.0.0.7:8000/v1 --fixture-host 0.0.0.0 --fixture-url http://10.0.0.5:8900
  eyechart load --sweep rate=auto --slo "ttft_p95<=2s"      # then: eyechart plan RUN_DIR --slo ...
  eyechart load --sweep rate=1,2,4,8 --max-rate 6 --max-requests 2000     # capped for a production target
  eyechart load --expect-workers 2 ...     # master; on each load host: eyechart load --worker --master-host H

A sweep runs each point as a whole run (own folder under RUN_DIR/points/, drained before the next) and
writes sweep.points[] and sweep.knee to RUN_DIR/summary.json; its exit code judges the points at or
below the knee (points past saturation are expected to breach SLOs). 429 answers count as the target's
overload signal (overload_rate per point) and are never retried.

The API key comes from --api-key or $EYECHART_API_KEY and is never written to any report or log.
A workload with URL transport (captioning-mixed sends 30 % of its images as URLs) gets a fixture
server started here; the embedded target is then allowed to fetch from loopback (--allow-private-urls).
Open loop (--rate) keeps every request's intended send time: sends that go out late are reported as
schedule lag and TTFT_sched, never hidden. Warmup/cooldown requests are recorded but not in the stats.
Every sent request is one record: after the last stage nothing new is sent and requests in flight get
--drain to finish; the rest are "incomplete" (not failures). Failed runs fail: a key the target refuses
stops before the run (exit 2), a run where no request succeeds is invalid (exit 4), and unless --slo
sets error_rate the gate error_rate<=5% applies (exit 1). The first 20 requests all failing with the
same 4xx (not 429) stop the run early.
Each run writes <report-dir>/<time>-load/: summary.json, stages.csv, requests.jsonl.gz, junit.xml,
index.html and Locust's CSV (not Locust's HTML: its Aggregated row counts every request twice). The
generator's own delay (event-loop lag) is reported as the run's timing uncertainty; the run is invalid
(exit 4) only when the generator itself saturates (over 90% of its core with lag p99 over max(10 ms,
5% of TTFT p50)) or --max-loop-lag-ms is given and exceeded; lag with an idle generator is host noise
(a warning).
For plain Locust (web UI): locust -f loadtests/locustfile.py --host URL  (see loadtests/README.md).
"""

from __future__ import annotations

import argparse
import sys

from eyechart import options
from eyechart.exitcodes import ExitCode
from eyechart.load import probe, workloads
from eyechart.load.arrivals import ARRIVALS
from eyechart.load.runner import RunError, execute, plan_from_args, run_worker
from eyechart.report.sweep import write_sweep_report


def configure(parser: argparse.ArgumentParser) -> None:
    t = options.add_target(parser)
    t.add_argument(
        "--target-arg",
        action="append",
        metavar="ARG",
        help="extra argument for the embedded target, repeatable (e.g. --target-arg=--speed=4)",
    )
    options.add_interop(parser)
    options.add_fixture_server(parser, "URL transport: image URLs the target fetches")
    w = parser.add_argument_group("load")
    w.add_argument(
        "--workload",
        metavar="NAME|FILE",
        default="captioning-mixed",
        help=f"a bundled workload ({', '.join(workloads.available())}) or a workload .toml file "
        "(default: captioning-mixed)",
    )
    mode = w.add_mutually_exclusive_group()
    mode.add_argument("--users", type=int, metavar="N", help="closed loop: N concurrent users (default: 8)")
    mode.add_argument(
        "--rate", type=float, metavar="R", help="open loop: R requests per second (default: off)"
    )
    w.add_argument(
        "--arrival",
        default="poisson",
        choices=ARRIVALS,
        help=f"open-loop arrival process: {', '.join(ARRIVALS)} (default: poisson)",
    )
    w.add_argument(
        "--burstiness",
        type=float,
        metavar="CV",
        default=1.0,
        help="gamma arrivals: coefficient of variation of the gaps, 1 = Poisson (default: 1)",
    )
    w.add_argument(
        "--max-concurrency",
        type=int,
        metavar="N",
        default=256,
        help="open loop: users available to send (default: 256)",
    )
    stop = w.add_mutually_exclusive_group()
    stop.add_argument("--duration", metavar="TIME", help="measured time, e.g. 60s, 5m (default: 60s)")
    stop.add_argument(
        "--requests", type=int, metavar="N", help="stop after N requests instead of a duration (default: off)"
    )
    w.add_argument(
        "--warmup",
        metavar="TIME",
        help="time before the measured window, not in the stats (default: 0s; 10s per sweep point, "
        "which starts from an idle target)",
    )
    w.add_argument(
        "--cooldown",
        metavar="TIME",
        default="0s",
        help="time after the measured window, not in the stats (default: 0s)",
    )
    w.add_argument(
        "--drain",
        metavar="TIME",
        default="60s",
        help="after the last stage nothing new is sent; requests in flight may finish for this long, "
        "then count as incomplete (default: 60s)",
    )
    w.add_argument(
        "--request-timeout",
        metavar="TIME",
        default="120s",
        help="one request longer than this is a timeout failure (default: 120s)",
    )
    w.add_argument(
        "--check-sample",
        default="0.5%",
        metavar="SHARE",
        help="share of live answers the conformance invariants judge, kept whole (they cost ~1.6 ms of "
        "CPU per 256-chunk stream; 100%% judges every one, 0 none) (default: 0.5%%)",
    )
    w.add_argument(
        "--seed", type=int, metavar="N", default=0, help="seed for arrivals and request choice (default: 0)"
    )
    w.add_argument(
        "--processes",
        type=int,
        metavar="N",
        default=1,
        help="load processes, Locust master + N workers (default: 1)",
    )
    s = parser.add_argument_group("sweeps and safety caps")
    s.add_argument(
        "--sweep",
        metavar="SPEC",
        help="rate=auto, rate=1,2,4,8 or users=1,2,4,8 (--duration per point, default 30s, longer at low "
        "rates so that each point offers twice --min-requests)",
    )
    s.add_argument(
        "--max-rate",
        type=float,
        metavar="R",
        help="no sweep point offers more than R req/s (default: no cap)",
    )
    s.add_argument(
        "--max-requests",
        type=int,
        metavar="N",
        help="a sweep sends at most N requests in all (default: no cap)",
    )
    s.add_argument(
        "--max-tokens-total",
        type=int,
        metavar="N",
        help="a sweep stops before passing N tokens (default: no cap)",
    )
    h = parser.add_argument_group("load across hosts (Locust's master and workers)")
    h.add_argument(
        "--expect-workers",
        type=int,
        metavar="N",
        help="be the master: wait for N workers (default: one machine)",
    )
    h.add_argument("--worker", action="store_true", help="be a worker of the master at --master-host")
    h.add_argument("--master-host", metavar="HOST", help="the master's address (with --worker)")
    h.add_argument(
        "--master-port", type=int, metavar="PORT", default=5557, help="the master's port (default: 5557)"
    )
    g = parser.add_argument_group("gates and reports")
    g.add_argument(
        "--slo",
        metavar="SLOS",
        help='comma-separated, e.g. "ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%%,goodput>=95%%" '
        "(default: error_rate<=5%%)",
    )
    g.add_argument(
        "--baseline", metavar="DIR", help="a previous load run folder to compare with (default: none)"
    )
    g.add_argument(
        "--max-regression",
        metavar="PCT",
        default="10%",
        help="allowed regression against --baseline (default: 10%%)",
    )
    g.add_argument(
        "--min-requests",
        type=int,
        metavar="N",
        default=20,
        help="fewer measured requests: invalid run (default: 20)",
    )
    g.add_argument(
        "--max-loop-lag-ms",
        type=float,
        metavar="MS",
        default=None,
        help="invalid above this event-loop lag p99 (default: judged with CPU: the generator saturates "
        f"when over {probe.DEFAULT_MAX_CPU * 100:.0f}%% of its core with lag p99 over "
        "max(10 ms, 5%% of TTFT p50); lag with an idle generator is host noise, a warning)",
    )
    g.add_argument(
        "--max-cpu",
        type=float,
        metavar="SHARE",
        default=probe.DEFAULT_MAX_CPU,
        help=f"generator saturation budget: CPU share of a core (default: {probe.DEFAULT_MAX_CPU:g})",
    )
    options.add_report_dir(g, "load")
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no live progress (default: a live line; off a terminal, a line every 5 s)",
    )


def run(args: argparse.Namespace) -> int:
    if args.worker:
        if not args.master_host:
            print("error: --worker needs --master-host HOST", file=sys.stderr)
            return int(ExitCode.USAGE)
        return run_worker(args.master_host, args.master_port, args.api_key)
    if args.users is None and args.rate is None and not args.sweep:
        args.users = 8
    try:
        plan = plan_from_args(args)
    except RunError as exc:
        print(f"eyechart load: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    return execute(plan, write_sweep=write_sweep_report)
