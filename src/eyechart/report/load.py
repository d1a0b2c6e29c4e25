"""The load run's reports: summary.json, histograms.json, stages.csv, junit.xml, index.html, terminal.

``write_reports`` is called once at the end of a run (also after Ctrl-C, with what was measured). The
HTML is one self-contained file (inline SVG, inline CSS, no scripts, nothing fetched), and every string
that could come from the server or the user is passed through ``html.escape``.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eyechart.exitcodes import ExitCode
from eyechart.load.baseline import write_histograms
from eyechart.load.gates import GateVerdict
from eyechart.load.histograms import ERROR_BOUND
from eyechart.load.metrics import LATENCY_METRICS, METRICS, RUN_METRICS
from eyechart.load.stats import ERROR_CLASSES, LoadStats
from eyechart.report import plots

SCHEMA_PATH = Path(__file__).with_name("schemas") / "summary.schema.json"
TABLE_STATS = ("count", "mean", "p50", "p90", "p95", "p99", "max")


def finalize_summary(summary: Mapping[str, Any], verdict: GateVerdict) -> dict[str, Any]:
    """The summary with the gate results and verdict added (what ``summary.json`` holds)."""
    out = dict(summary)
    out["gates"] = verdict.as_list()
    out["verdict"] = {"exit_code": verdict.exit_code, "passed": verdict.passed}
    return out


def write_reports(
    run_dir: Path,
    summary: Mapping[str, Any],
    verdict: GateVerdict,
    stats: LoadStats,
    stages: list[dict[str, Any]],
) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = finalize_summary(summary, verdict)
    (run_dir / "summary.json").write_text(
        json.dumps(_finite(doc), indent=2, ensure_ascii=False) + "\n", "utf-8"
    )
    write_histograms(run_dir / "histograms.json", stats.hists, stats.throughput_series())
    write_stages_csv(run_dir / "stages.csv", stats, stages)
    write_junit(run_dir / "junit.xml", verdict, doc)
    (run_dir / "index.html").write_text(render_html(doc, stats, stages), "utf-8")


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


# -- stages.csv -------------------------------------------------------------------------------------
def stage_rows(stats: LoadStats, stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage: the runner's plan (name, users/rate, planned duration...) + what was counted."""
    rows: list[dict[str, Any]] = []
    seen = set()
    planned = [dict(s) for s in stages]
    for plan in planned:
        name = str(plan.get("name", plan.get("stage", "")))
        seen.add(name)
        rows.append({"stage": name, **{k: v for k, v in plan.items() if k not in ("name", "stage")}})
    rows += [{"stage": name} for name in stats.stages if name not in seen]
    for row in rows:
        st = stats.stages.get(row["stage"])
        if st is None:
            row.update(requests=0, ok=0, errors=0)
            continue
        span = ((st["last_end_ns"] or 0) - (st["first_send_ns"] or 0)) / 1e9
        row.update(
            offered=max(st.get("offered", 0), st["requests"]),
            requests=st["requests"],
            ok=st["ok"],
            errors=sum(st["errors"].values()),
            incomplete=st.get("incomplete", 0),
            **{f"errors_{c}": st["errors"].get(c, 0) for c in ERROR_CLASSES},
            prompt_tokens=st["prompt_tokens"],
            completion_tokens=st["completion_tokens"],
            images=st["images"],
            chunks=st["chunks"],
            observed_s=round(span, 3),
            requests_per_s=round(st["ok"] / span, 3) if span > 0 else 0.0,
        )
    return rows


def write_stages_csv(path: Path, stats: LoadStats, stages: Sequence[Mapping[str, Any]]) -> None:
    rows = stage_rows(stats, stages)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields or ["stage"], restval="")
        w.writeheader()
        w.writerows(rows)


# -- junit.xml --------------------------------------------------------------------------------------
def write_junit(path: Path, verdict: GateVerdict, summary: Mapping[str, Any]) -> None:
    """One test case per gate (classname load.<kind>); failed gates carry a <failure> with the detail."""
    failures = sum(1 for r in verdict.results if not r.passed)
    suite = ET.Element(
        "testsuite",
        name="eyechart.load",
        tests=str(len(verdict.results)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{float(summary.get('duration_s') or 0):.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="target", value=_target(summary))
    for key in ("model", "workload", "arrival", "rate", "users"):
        if summary.get("run", {}).get(key) is not None:
            ET.SubElement(props, "property", name=key, value=str(summary["run"][key]))
    ET.SubElement(props, "property", name="exit_code", value=str(verdict.exit_code))
    for r in verdict.results:
        case = ET.SubElement(suite, "testcase", classname=f"load.{r.kind}", name=r.name, time="0")
        text = f"threshold {r.threshold}; observed {r.observed}; {r.detail}"
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=f"{r.name}: {r.threshold} not met", type=r.kind)
            fail.text = text
        else:
            ET.SubElement(case, "system-out").text = text
    root = ET.Element(
        "testsuites", name="eyechart load", tests=suite.get("tests", "0"), failures=str(failures)
    )
    root.append(suite)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# -- index.html -------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.pass{color:#1a7f37;font-weight:600}
.fail{color:#c0392b;font-weight:600}
.verdict{font-size:1.2em;padding:.5em 1em;border-radius:4px;display:inline-block}
.ok{background:#e6f4ea}.bad{background:#fdecea}code,pre{background:#f6f8fa;padding:1px 4px}
pre{white-space:pre-wrap;word-break:break-all}svg{max-width:100%;height:auto}
"""


def _verdict_text(code: int) -> str:
    """The exit code's meaning from the one table in ``eyechart.exitcodes``."""
    return ExitCode(code).meaning if code in set(ExitCode) else ""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> str:
    return _e(_plain(x))


def render_html(summary: Mapping[str, Any], stats: LoadStats, stages: Sequence[Mapping[str, Any]]) -> str:
    code = summary.get("verdict", {}).get("exit_code", 0)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>eyechart load — {_e(_target(summary))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>eyechart load report</h1>",
        f"<p class='verdict {'ok' if code == 0 else 'bad'}'>exit {code}: {_e(_verdict_text(code))}</p>",
        "<h2>Run</h2>",
        _kv_table(summary.get("run", {})),
        "<h2>Gates</h2>",
        _gates_table(summary.get("gates", [])),
        "<h2>Throughput and goodput</h2>",
        _throughput_table(summary),
        "<h2>Latency percentiles (ms, measure stage)</h2>",
        _metric_table(summary, [m for m in LATENCY_METRICS]),
        "<h2>Per-request sizes</h2>",
        _metric_table(summary, [m for m in METRICS if m not in LATENCY_METRICS]),
    ]
    te = summary.get("tokens_estimated", {})
    if te.get("any"):
        parts.append(
            f"<p>{_num(te.get('requests'))} requests had no usage: their completion tokens were counted "
            "from content chunks and are estimates.</p>"
        )
    parts += ["<h2>Errors</h2>", _errors_section(summary)]
    dists = plots.distributions(
        {name: stats.hists[name].nonzero_buckets() for name in ("ttft", "itl", "e2e")}
    )
    parts += ["<h2>Distributions</h2>", dists or "<p>no samples</p>"]
    parts += [
        "<h2>Over time (all stages)</h2>",
        plots.time_series(stats.series_rows()) or "<p>no samples</p>",
    ]
    tpc = [p[4] / p[3] for p in stats.reservoir if p[3] and p[4] is not None]
    bvt = [(p[0], p[1]) for p in stats.reservoir if p[1] is not None]
    parts += [
        "<h2>Tokens per chunk</h2>",
        "<p>A chunk is not a token: servers may pack several tokens into one SSE event.</p>",
        plots.tokens_per_chunk(tpc) or "<p>no samples</p>",
        "<h2>Image bytes vs TTFT</h2>",
        f"<p>A uniform sample of up to {stats.reservoir_size} measured requests.</p>",
        plots.bytes_vs_ttft(bvt) or "<p>no samples</p>",
        "<h2>Stages</h2>",
        _rows_table(stage_rows(stats, stages)),
        "<h2>Metric definitions</h2>",
        _kv_table(summary.get("definitions") or _definitions()),
        f"<p><small>{_e(summary.get('histogram_error_bound', ERROR_BOUND))}</small></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _target(summary: Mapping[str, Any]) -> str:
    run = summary.get("run", {})
    return str(run.get("target") or run.get("base_url") or "")


def _definitions() -> dict[str, str]:
    return {name: f"[{m.unit}] {m.definition}" for name, m in METRICS.items()} | RUN_METRICS


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th class=l>{_e(k)}</th><td class=l>{_num(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_num(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _gates_table(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return "<p>no gates</p>"
    rows = "".join(
        f"<tr><td class=l>{_e(g['name'])}</td><td class=l>{_e(g['kind'])}</td>"
        f"<td class=l>{_e(g['threshold'])}</td><td>{_num(g['observed'])}</td>"
        f"<td class={'pass' if g['passed'] else 'fail'}>"
        f"{'pass' if g['passed'] else 'FAIL'}</td><td class=l>{_e(g['detail'])}</td></tr>"
        for g in gates
    )
    return (
        "<table><tr><th class=l>gate</th><th class=l>kind</th><th class=l>threshold</th><th>observed</th>"
        f"<th>result</th><th class=l>detail</th></tr>{rows}</table>"
    )


def _throughput_table(summary: Mapping[str, Any]) -> str:
    d = dict(summary.get("throughput", {}))
    g = summary.get("goodput", {})
    d["goodput requests/s"] = g.get("requests_per_s")
    d["goodput share of requests"] = g.get("fraction")
    d["per-request SLOs (ms)"] = json.dumps(g.get("slo_per_request_ms", {}))
    return _kv_table(d)


def _metric_table(summary: Mapping[str, Any], names: Sequence[str]) -> str:
    head = "".join(f"<th>{s}</th>" for s in TABLE_STATS)
    rows = []
    for name in names:
        m = summary.get("metrics", {}).get(name)
        if not m:
            continue
        cells = "".join(f"<td>{_num(m.get(s))}</td>" for s in TABLE_STATS)
        rows.append(f"<tr><th class=l>{_e(name)} <small>({_e(m.get('unit', ''))})</small></th>{cells}</tr>")
    return f"<table><tr><th class=l>metric</th>{head}</tr>{''.join(rows)}</table>"


def _errors_section(summary: Mapping[str, Any]) -> str:
    e = summary.get("errors", {})
    out = [f"<p>{_num(e.get('total', 0))} failed requests, rate {float(e.get('rate') or 0):.2%}</p>"]
    out.append(_kv_table(e.get("by_class", {})))
    for cls, examples in (e.get("examples") or {}).items():
        for ex in examples:
            out.append(f"<pre>{_e(cls)}: {_e(ex)}</pre>")
    return "\n".join(out)


# -- terminal ---------------------------------------------------------------------------------------
def make_console(**kwargs: Any) -> Console:
    """A rich console that honours NO_COLOR (rich also reads it; this makes it explicit)."""
    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, **kwargs)


def print_summary(summary: Mapping[str, Any], verdict: GateVerdict, console: Console | None = None) -> None:
    console = console or make_console()
    t = Table(title="latency (ms, measure stage)", title_justify="left")
    t.add_column("metric")
    for s in TABLE_STATS:
        t.add_column(s, justify="right")
    for name in ("ttft", "ttft_sched", "itl", "tpot", "e2e", "ttfb", "schedule_lag"):
        m = summary["metrics"].get(name, {})
        if m.get("count"):
            t.add_row(name, *[_plain(m.get(s)) for s in TABLE_STATS])
    console.print(t)
    tp, g, e = summary["throughput"], summary["goodput"], summary["errors"]
    console.print(
        f"throughput: {tp['requests_per_s']:.2f} req/s, {tp['output_tokens_per_s']:.1f} output tok/s, "
        f"{tp['images_per_s']:.2f} images/s · "
        f"goodput {g['requests_per_s']:.2f} req/s ({g['fraction']:.1%}) · "
        f"errors {e['total']} ({e['rate']:.2%})" + "".join(f" {c}={n}" for c, n in e["by_class"].items() if n)
    )
    if summary.get("tokens_estimated", {}).get("any"):
        console.print("[yellow]completion tokens partly estimated (no usage in some responses)[/]")
    if verdict.results:
        gt = Table(title="gates", title_justify="left")
        for col in ("gate", "threshold", "observed", "result"):
            gt.add_column(col)
        for r in verdict.results:
            mark = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
            gt.add_row(r.name, r.threshold, _plain(r.observed), mark)
        console.print(gt)
    code = verdict.exit_code
    style = "bold green" if code == 0 else "bold red"
    console.print(f"[{style}]exit {code}: {_verdict_text(code)}[/]")


def _plain(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.3f}" if abs(x) < 1000 else f"{x:,.1f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)
