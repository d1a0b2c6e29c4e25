"""Plan capacity from a load run: the highest rate one replica holds under your SLOs, replicas and cost.

Reads RUN_DIR/summary.json (best: a sweep, `eyechart load --sweep rate=auto`), finds for each SLO the
two points between which it stops holding, interpolates the rate where it is reached, and takes the
lowest over the SLOs. The plan states the range the point spacing and sample counts leave, which SLO
binds, and what a single-point run cannot know. Points past saturation are expected to breach the SLOs
and never fail the plan. Writes RUN_DIR/plan.json and adds the plan to RUN_DIR/index.html.

examples:
  eyechart plan reports/20260101-120000-load --slo "ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%"
  eyechart plan RUN_DIR --slo "e2e_p99<=10s" --target-rps 120 --headroom 25% \\
      --gpu-hour-cost 2.50 --gpus-per-replica 1

Exit 0 with a plan (also when no rate holds the SLOs: the plan says so), 2 for a folder that is not a
load run or a bad option, 4 when the run has no valid point to plan from.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from eyechart.exitcodes import ExitCode


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a load run folder (has summary.json)")
    parser.add_argument(
        "--slo",
        required=True,
        help='SLOs every planned rate must hold, e.g. "ttft_p95<=2s,itl_p99<=80ms,error_rate<=1%%"',
    )
    parser.add_argument("--target-rps", type=float, metavar="R", help="traffic to plan replicas for (req/s)")
    parser.add_argument("--headroom", default="20%", help="capacity kept free on each replica (default 20%%)")
    parser.add_argument("--gpu-hour-cost", type=float, metavar="USD", help="price of one GPU-hour")
    parser.add_argument(
        "--gpus-per-replica", type=int, default=1, metavar="N", help="GPUs one replica uses (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    from eyechart.load.gates import GateError, parse_slo
    from eyechart.plan.capacity import NotALoadRun, make_plan, parse_headroom, read_summary
    from eyechart.report.plan import insert_section, print_plan, render_section

    try:
        slos = parse_slo(args.slo)
        headroom = parse_headroom(args.headroom)
        _check_positive(args)
        summary = read_summary(args.run_dir)
    except (GateError, NotALoadRun, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    plan = make_plan(
        summary,
        slos,
        target_rps=args.target_rps,
        headroom=headroom,
        gpu_hour_cost=args.gpu_hour_cost,
        gpus_per_replica=args.gpus_per_replica,
    )
    run_dir = Path(args.run_dir)
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", "utf-8")
    insert_section(run_dir / "index.html", render_section(plan))
    print_plan(plan)
    print(f"wrote {run_dir / 'plan.json'} and the plan section of {run_dir / 'index.html'}")
    return int(ExitCode.INVALID_RUN if plan["points_valid"] == 0 else ExitCode.OK)


def _check_positive(args: argparse.Namespace) -> None:
    if args.target_rps is not None and not 0 < args.target_rps < math.inf:
        raise ValueError(f"--target-rps must be a rate above 0, got {args.target_rps:g}")
    if args.gpu_hour_cost is not None and not 0 <= args.gpu_hour_cost < math.inf:
        raise ValueError(f"--gpu-hour-cost must be 0 or more, got {args.gpu_hour_cost:g}")
    if args.gpus_per_replica < 1:
        raise ValueError(f"--gpus-per-replica must be at least 1, got {args.gpus_per_replica}")
