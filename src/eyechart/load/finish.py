"""The end of a load run (master or single local process): merge, judge, write the run folder.

Workers' serialized stats are merged, the saturation probe and the gates give the verdict and exit
code, and the run folder is written by the report writer the Locust file hands in (``load`` computes,
``report`` renders: this package never imports the renderer).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eyechart import __version__, invariants
from eyechart.exitcodes import ExitCode
from eyechart.load import gates, probe
from eyechart.load.process import LoadSession, parse_fraction, per_request_slos, user_headers
from eyechart.load.stats import LoadStats
from eyechart.wire.reproducer import shown_headers

log = logging.getLogger("eyechart.load")

ReportWriter = Callable[[Path, Mapping[str, Any], gates.GateVerdict, LoadStats, list[dict[str, Any]]], None]
"""``eyechart.report.load.write_reports``'s shape: (run folder, summary, verdict, stats, stages)."""


def finalize(
    environment: Any,
    run_dir: Path,
    session: LoadSession | None,
    worker_reports: Mapping[str, Mapping[str, Any]],
    started_wall: str,
    role: str,
    write_reports: ReportWriter,
) -> int:
    """Merge, judge and write ``run_dir``; returns the run's exit code."""
    o = environment.parsed_options
    if role == "local" and session is not None:
        s = session
        stats = s.stats
        probes = {"process-0": s.probe.snapshot()}
        info = s.info()
    else:
        stats = LoadStats(per_request_slos(o.slo))
        probes = {}
        info = {}
        for client_id, rep in sorted(worker_reports.items(), key=lambda kv: kv[1].get("index", 0)):
            stats.merge_serialized(rep["stats"])
            probes[f"worker-{rep.get('index', client_id)}"] = rep["probe"]
            info = info or rep.get("info", {})
        _join_parts(run_dir)
    now = time.monotonic_ns()
    if role != "local" and worker_reports:  # ``info`` is on that worker's host clock: so is its report's
        first = min(worker_reports.values(), key=lambda r: r.get("index", 0))
        now = int(first.get("clock_ns", now))
    measure_s = None
    if info.get("measure_end_ns") and not o.requests:
        end = min(now, info["measure_end_ns"])
        measure_s = max(0.0, (end - info["warmup_end_ns"]) / 1e9)
    interrupted = bool(info.get("run_end_ns")) and now < info["run_end_ns"] - int(0.5e9)
    saturation = probe.verdict(probes, o.max_loop_lag_ms, o.max_cpu, stats.metric_summary("ttft")["p50"])
    processes = max(1, len(probes))
    run_info: dict[str, Any] = {
        "tool": f"eyechart {__version__}",
        "started_at": started_wall,
        "base_url": environment.host,
        "headers": shown_headers(user_headers()),  # --header for reproducers: secrets as $VARIABLES
        "request_id_header": None if o.no_request_id else o.request_id_header,
        "model": info.get("model", o.model),
        "workload": info.get("workload", o.workload),
        "load_model": "open" if o.rate > 0 else "closed",
        "users": environment.parsed_options.num_users,
        "rate": o.rate or None,
        "arrival": o.arrival if o.rate > 0 else None,
        "burstiness": o.burstiness if o.rate > 0 and o.arrival == "gamma" else None,
        "warmup_s": o.warmup,
        "cooldown_s": o.cooldown,
        "requests_limit": o.requests or None,
        "seed": o.seed,
        "processes": processes,
        "partial": interrupted,
        # which clock stamped the run (kernel receive timestamps were tried, no win: see bench_load.py)
        "clock": "CLOCK_MONOTONIC read in user space as each recv() returns (time.monotonic_ns)",
        "measure_duration_s": measure_s,
        "harness_saturated": not saturation["valid"],
        "harness_saturation_detail": "; ".join(saturation["reasons"]),
    }
    summary = stats.summary(run_info)
    summary["saturation"] = saturation
    tally = invariants.Tally()
    if role == "local" and session is not None:
        tally.merge(session.tally)
    for rep in worker_reports.values():
        tally.merge(rep.get("invariants") or {})
    summary["invariants"] = tally.to_dict()
    summary["warnings"] += [
        f"invariant {check} failed on {e['failed']} of {e['sampled']} sampled answers "
        f"(first: {e['examples'][0] if e['examples'] else '-'})"
        for check, e in summary["invariants"].items()
        if e["failed"] or e.get("errors")
    ]
    summary["timing_uncertainty"] = {
        **saturation["uncertainty"],
        "schedule_lag_p99_ms": summary["metrics"]["schedule_lag"].get("p99"),
    }
    summary["warnings"] += saturation["warnings"]
    summary["warnings"] += gates.warnings(summary)
    if session is not None and session.stopped_early:
        summary["warnings"].insert(0, session.stopped_early)
    for rep in worker_reports.values():
        if rep.get("stopped_early") and rep["stopped_early"] not in summary["warnings"]:
            summary["warnings"].insert(0, rep["stopped_early"])
    verdict = gates.GateVerdict()
    code = int(ExitCode.OK)
    try:
        slos = gates.with_default_error_gate(gates.parse_slo(o.slo) if o.slo else [])
        series = stats.throughput_series()
        verdict = gates.evaluate(
            summary,
            slos,
            baseline_dir=Path(o.baseline) if o.baseline else None,
            max_regression=parse_fraction(o.max_regression),
            histograms=stats.hists,
            throughput_series=series,
            min_requests=o.min_requests,
        )
        code = int(verdict.exit_code)
    except Exception as exc:  # a bad --slo or baseline is a usage error, reported, never a traceback
        log.error("eyechart: cannot judge the gates: %s", exc)
        code = int(ExitCode.USAGE)
    if not saturation["valid"] and code != ExitCode.USAGE:
        code = int(ExitCode.INVALID_RUN)
    try:
        write_reports(run_dir, summary, verdict, stats, _stages(info, o))
    except Exception as exc:  # never lose the numbers: fall back to the bare summary
        log.error("eyechart: cannot write the reports: %s: %s", type(exc).__name__, exc)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        code = max(code, int(ExitCode.INVALID_RUN))
    log.info("eyechart: report in %s (exit %d)", run_dir, code)
    return code


def _stages(info: dict[str, Any], options: Any) -> list[dict[str, Any]]:
    """The planned stages (offsets from the start in seconds) for ``stages.csv``."""
    t0 = info.get("t0_ns")
    load = {"users": options.num_users, "rate": options.rate or None}
    if t0 is None:
        return [{"name": "measure", **load}]
    bounds = [
        ("warmup", t0, info.get("warmup_end_ns")),
        ("measure", info.get("warmup_end_ns"), info.get("measure_end_ns")),
        ("cooldown", info.get("measure_end_ns"), info.get("run_end_ns")),
    ]
    out = []
    for name, start, end in bounds:
        if start is not None and end is not None and end <= start:
            continue
        out.append(
            {
                "name": name,
                "start_s": None if start is None else round((start - t0) / 1e9, 3),
                "planned_s": None if start is None or end is None else round((end - start) / 1e9, 3),
                **load,
            }
        )
    return out


def _join_parts(run_dir: Path) -> None:
    """Worker record files -> one ``requests.jsonl.gz`` (concatenated gzip members are one stream)."""
    parts = sorted(run_dir.glob("requests-part*.jsonl.gz"))
    if not parts:
        return
    with (run_dir / "requests.jsonl.gz").open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out)
    for part in parts:
        part.unlink()
