"""Wall time of the full conformance suite against the embedded target (goal: under 60 s on 2 cores).

    .venv/bin/python bench/bench_conform.py [--runs N]

Runs ``eyechart conform`` in-process (the embedded target is started and stopped by each run), with
fixtures cached by a warm-up ``eyechart fixtures``-style build first, and prints per-run wall time,
check counts and the slowest checks.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from rich.console import Console

from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.images import fixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    t0 = time.perf_counter()
    fixtures.build()
    print(f"fixtures ready in {time.perf_counter() - t0:.1f} s")
    quiet = Console(file=io.StringIO())  # the summary is not what we measure
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            outcome = run_conformance(ConformOptions(report_dir=Path(tmp), progress=False), quiet)
            wall = time.perf_counter() - start
        run = outcome.run
        counts = run.counts() if run else {}
        n = len(run.results) if run else 0
        print(f"run {i + 1}: {wall:.1f} s wall, exit {int(outcome.code)}, {n} checks {counts}")
        if run:
            slow = sorted(run.results, key=lambda r: r.duration_s, reverse=True)[:5]
            print("  slowest: " + ", ".join(f"{r.id} {r.duration_s:.2f}s" for r in slow))


if __name__ == "__main__":
    main()
