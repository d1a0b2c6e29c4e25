"""The load run's reports: summary.json, histograms.json, stages.csv, junit.xml, index.html, terminal.

``write_reports`` is called once at the end of a run (also after Ctrl-C, with what was measured). The
HTML is one self-contained file (inline SVG, inline CSS, no scripts, nothing fetched), and every string
that could come from the server or the user is passed through ``html.escape``.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import os
import shlex
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
from eyechart.report.style import PAGE_CSS
from eyechart.secrets import KEY_PLACEHOLDER
from eyechart.wire.reproducer import curl_reproducer

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
    records = _read_records(run_dir)
    failed = failed_requests(records, doc, run_dir)
    over_time = records_over_time(records)
    (run_dir / "index.html").write_text(
        render_html(doc, stats, stages, failed=failed, over_time=over_time), "utf-8"
    )


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


def _verdict_text(code: int) -> str:
    """The exit code's meaning from the one table in ``eyechart.exitcodes``."""
    return ExitCode(code).meaning if code in set(ExitCode) else ""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> str:
    return _e(_plain(x))


def render_html(
    summary: Mapping[str, Any],
    stats: LoadStats,
    stages: Sequence[Mapping[str, Any]],
    *,
    failed: Sequence[Mapping[str, Any]] = (),
    over_time: Sequence[dict[str, float | None]] = (),
) -> str:
    code = summary.get("verdict", {}).get("exit_code", 0)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>eyechart load — {_e(_target(summary))}</title>",
        f"<style>{PAGE_CSS}</style></head><body>",
        "<h1>eyechart load report</h1>",
        f"<p class='verdict {'ok' if code == 0 else 'bad'}'>exit {code}: {_e(_verdict_text(code))}</p>",
        _header(summary),
        "<h2>Run</h2>",
        _kv_table(summary.get("run", {})),
        "<h2>Gates</h2>",
        _gates_table(summary.get("gates", [])),
        _accounting_section(summary),
        "<h2>Throughput and goodput</h2>",
        _throughput_table(summary),
        "<h2>Latency percentiles (ms, measure stage)</h2>",
        _metric_table(summary, [m for m in LATENCY_METRICS]),
        _uncertainty_line(summary),
        "<h2>Per-request sizes</h2>",
        _metric_table(summary, [m for m in METRICS if m not in LATENCY_METRICS]),
    ]
    te = summary.get("tokens_estimated", {})
    if te.get("any"):
        parts.append(
            f"<p>{_num(te.get('requests'))} requests had no usage: their completion tokens were counted "
            "from content chunks and are estimates.</p>"
        )
    parts += ["<h2>Errors</h2>", _errors_section(summary), _failed_table(failed)]
    parts.append(_invariants_section(summary))
    dists = plots.distributions(
        {name: stats.hists[name].nonzero_buckets() for name in ("ttft", "itl", "e2e")}
    )
    parts += ["<h2>Distributions</h2>", f"<div class=charts>{dists}</div>" if dists else "<p>no samples</p>"]
    parts += [
        "<h2>Over time (all stages)</h2>",
        plots.latency_percentiles(over_time),
        plots.in_flight(over_time),
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


def _header(summary: Mapping[str, Any]) -> str:
    """What ran against what, readable alone: target, model, workload, load model, duration."""
    run = summary.get("run", {})
    if run.get("rate") is None:
        load = f"closed loop, {run.get('users')} users"
    else:
        load = f"open loop, {run.get('rate')} req/s, {run.get('arrival') or 'poisson'} arrivals"
    items = [
        ("target", _target(summary)),
        ("model", run.get("model")),
        ("workload", run.get("workload")),
        ("load", f"{load}, {run.get('processes', 1)} process(es)"),
        ("measured", f"{_plain(float(summary.get('duration_s') or 0))} s"
         f" (warmup {_plain(run.get('warmup_s') or 0)} s, cooldown {_plain(run.get('cooldown_s') or 0)} s)"),
        ("started", run.get("started_at")),
    ]  # fmt: skip
    return "<p class=head>" + " · ".join(f"{k} <b>{_e(v)}</b>" for k, v in items if v is not None) + "</p>"


def _read_records(run_dir: Path, limit: int = 500_000) -> list[dict[str, Any]]:
    """The run's per-request records (bounded; a missing or cut file gives what it has)."""
    from eyechart.load.recordfile import read_records

    out: list[dict[str, Any]] = []
    paths = [run_dir / "requests.jsonl.gz"]
    if not paths[0].exists():
        paths = sorted(run_dir.glob("requests-part*.jsonl.gz"))
    for path in paths:
        try:
            for rec in read_records(path):
                out.append(rec)
                if len(out) >= limit:
                    return out
        except (OSError, ValueError, EOFError) as exc:  # a file still being written: what it has
            del exc
    return out


def records_over_time(
    records: Sequence[Mapping[str, Any]], buckets: int = 120
) -> list[dict[str, float | None]]:
    """Per time bucket: TTFT and E2E p50/p95/p99 of the requests that ended in it, and the mean number
    of requests in flight (sent, not finished) during it."""
    done = [r for r in records if r.get("t_send") and r.get("t_end")]
    if not done:
        return []
    t0 = min(r["t_send"] for r in done)
    t1 = max(r["t_end"] for r in done)
    res = max(1e9, (t1 - t0) / buckets)  # ns, at least a second
    n = int((t1 - t0) // res) + 1
    ttft: list[list[float]] = [[] for _ in range(n)]
    e2e: list[list[float]] = [[] for _ in range(n)]
    busy = [0.0] * n
    for r in done:
        k = int((r["t_end"] - t0) // res)
        e2e[k].append((r["t_end"] - r["t_send"]) / 1e6)
        if r.get("t_first") and not r.get("error_class"):
            ttft[k].append((r["t_first"] - r["t_send"]) / 1e6)
        a, b = r["t_send"] - t0, r["t_end"] - t0
        for j in range(int(a // res), int(b // res) + 1):
            busy[j] += max(0.0, min(b, (j + 1) * res) - max(a, j * res)) / res

    def pct(xs: list[float], q: float) -> float | None:
        if not xs:
            return None
        xs = sorted(xs)
        return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)]

    return [
        {
            "t_s": (k + 0.5) * res / 1e9,
            **{f"ttft_{q}_ms": pct(ttft[k], v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            **{f"e2e_{q}_ms": pct(e2e[k], v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "in_flight": busy[k],
        }
        for k in range(n)
    ]


def failed_requests(
    records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], run_dir: Path
) -> list[dict[str, Any]]:
    """The first failed request of each error class, with a curl reproducer (the key as
    ``$EYECHART_API_KEY``, a secret ``--header`` as the variable named after it) whose body is written
    next to the report as ``repro-<class>.json``."""
    first: dict[str, Mapping[str, Any]] = {}
    counts: dict[str, int] = {}
    for r in records:
        cls = r.get("error_class")
        if cls:
            counts[cls] = counts.get(cls, 0) + 1
            first.setdefault(cls, r)
    run = summary.get("run", {})
    bodies = _case_bodies(run, {r.get("case") for r in first.values()})
    out = []
    for cls, r in first.items():
        body = bodies.get((r.get("case"), r.get("transport"))) or bodies.get((r.get("case"), None))
        repro = ""
        if body is not None:
            name = f"repro-{''.join(c if c.isalnum() else '_' for c in cls)}.json"
            with contextlib.suppress(OSError):
                repro = _reproducer(run, r, body, run_dir / name)
        out.append(
            {
                "class": cls,
                "count": counts[cls],
                "request_id": r.get("request_id"),
                "stage": r.get("stage"),
                "case": r.get("case"),
                "status": r.get("status"),
                "error": r.get("error"),
                "reproducer": repro,
            }
        )
    return out


def _reproducer(run: Mapping[str, Any], record: Mapping[str, Any], body: bytes, path: Path) -> str:
    """The request again, as the run sent it (the same builder as conformance reproducers: the key and
    secret-named ``--header`` values read from environment variables); its body is written to ``path``."""
    headers = {
        "Authorization": f"Bearer {KEY_PLACEHOLDER}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream, application/json",
        **(run.get("headers") or {}),
    }
    id_header = run.get("request_id_header", "X-Request-Id")  # older summaries: the default
    if id_header and record.get("request_id"):
        headers[str(id_header)] = str(record["request_id"])
    url = str(run.get("base_url", "")) + "/chat/completions"
    curl = curl_reproducer("POST", url, body, headers, body_file=path)
    return "# run from the run folder (the one holding summary.json)\n" + curl.replace(
        f"@{shlex.quote(str(path))}", f"@{shlex.quote(path.name)}"
    )


def _case_bodies(run: Mapping[str, Any], cases: set[Any]) -> dict[tuple[Any, Any], bytes]:
    """The first pre-built body of each failing case (same workload and seed as the run)."""
    if not cases or not run.get("workload"):
        return {}
    from eyechart.load.workloads import WorkloadError, build_templates, load_workload

    try:
        workload = load_workload(str(run["workload"]))
        templates = build_templates(
            workload, str(run.get("model", "")), url_for=lambda n: f"http://FIXTURE-SERVER/img/{n}"
        )
    except (WorkloadError, OSError, ValueError):
        return {}
    out: dict[tuple[Any, Any], bytes] = {}
    for t in templates:
        if t.case in cases:
            out.setdefault((t.case, t.transport), t.body)
            out.setdefault((t.case, None), t.body)
    return out


def _failed_table(failed: Sequence[Mapping[str, Any]]) -> str:
    if not failed:
        return ""
    rows = "".join(
        f"<tr><td class=l>{_e(f['class'])}</td><td>{_plain(f['count'])}</td>"
        f"<td class=id><code>{_e(f['request_id'])}</code></td><td class=l>{_e(f['stage'])}</td>"
        f"<td class=l>{_e(f['case'])}</td><td>{_e(_plain(f['status']))}</td>"
        f"<td class=wrap>{_e(f['error'])}</td></tr>"
        for f in failed
    )
    repros = "".join(
        f"<p>{_e(f['class'])} (request <code>{_e(f['request_id'])}</code>):</p>"
        f"<pre>{_e(f['reproducer'])}</pre>"
        for f in failed
        if f["reproducer"]
    )
    return (
        "<h3>First failed request of each class</h3>"
        "<p>The reproducer sends the same case's body (saved next to this report; URL images point at "
        "FIXTURE-SERVER: serve them with <code>eyechart fixtures serve</code>) with the key from "
        "<code>$EYECHART_API_KEY</code>.</p>"
        + _box(
            "<table><tr><th class=l>class</th><th>count</th><th class=l>request id</th><th class=l>stage</th>"
            f"<th class=l>case</th><th>status</th><th class=l>error</th></tr>{rows}</table>"
        )
        + repros
    )


def _target(summary: Mapping[str, Any]) -> str:
    run = summary.get("run", {})
    return str(run.get("target") or run.get("base_url") or "")


def _definitions() -> dict[str, str]:
    return {name: f"[{m.unit}] {m.definition}" for name, m in METRICS.items()} | RUN_METRICS


def _box(table: str) -> str:
    """A table in its own horizontally scrolling box: a wide table never widens the page."""
    return f"<div class=scroll>{table}</div>"


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th class=l>{_e(k)}</th><td class=wrap>{_num(v)}</td></tr>" for k, v in d.items())
    return _box(f"<table>{rows}</table>")


def _column_format(values: Sequence[Any]) -> Any:
    """One number format for a whole column: integers as integers; floats with the decimals the
    column's largest magnitude needs (1 from 100 up, else 3), so digits line up."""
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if nums and all(isinstance(v, int) or float(v).is_integer() for v in nums):
        return lambda v: _plain(int(v)) if isinstance(v, float) and v.is_integer() else _plain(v)
    big = max((abs(float(v)) for v in nums), default=0.0) >= 100
    return lambda v: _plain(v) if not isinstance(v, float) else (f"{v:,.1f}" if big else f"{v:,.3f}")


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    fmt = {c: _column_format([r.get(c) for r in rows]) for c in cols}
    body = "".join("<tr>" + "".join(f"<td>{_e(fmt[c](r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return _box(f"<table><tr>{head}</tr>{body}</table>")


def _gates_table(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return "<p>no gates</p>"
    rows = "".join(
        f"<tr><td class=l>{_e(g['name'])}</td><td class=l>{_e(g['kind'])}</td>"
        f"<td class=l>{_e(g['threshold'])}</td><td>{_num(g['observed'])}</td>"
        f"<td class={'pass' if g['passed'] else 'fail'}>"
        f"{'pass' if g['passed'] else 'FAIL'}</td><td class=wrap>{_e(g['detail'])}</td></tr>"
        for g in gates
    )
    return _box(
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
    metrics = [(n, summary.get("metrics", {}).get(n)) for n in names]
    metrics = [(n, m) for n, m in metrics if m]
    fmt = {s: _column_format([m.get(s) for _, m in metrics]) for s in TABLE_STATS}
    rows = []
    for name, m in metrics:
        cells = "".join(f"<td>{_e(fmt[s](m.get(s)))}</td>" for s in TABLE_STATS)
        rows.append(f"<tr><th class=l>{_e(name)} <small>({_e(m.get('unit', ''))})</small></th>{cells}</tr>")
    return _box(f"<table><tr><th class=l>metric</th>{head}</tr>{''.join(rows)}</table>")


def _errors_section(summary: Mapping[str, Any]) -> str:
    e = summary.get("errors", {})
    out = [f"<p>{_num(e.get('total', 0))} failed requests, rate {float(e.get('rate') or 0):.2%}</p>"]
    examples = e.get("examples") or {}
    rows = "".join(
        f"<tr><th class=l>{_e(cls)}</th><td>{_plain(n)}</td><td class=wrap>"
        + "<br>".join(f"<code>{_e(ex)}</code>" for ex in examples.get(cls, [])[:3])
        + "</td></tr>"
        for cls, n in (e.get("by_class") or {}).items()
    )
    out.append(
        _box(f"<table><tr><th class=l>class</th><th>failed</th><th class=l>examples</th></tr>{rows}</table>")
    )
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
    if isinstance(x, bool):  # before int: True is an int to Python, a word to a reader
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.3f}" if abs(x) < 1000 else f"{x:,.1f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _accounting_section(summary: Mapping[str, Any]) -> str:
    """Where every request went (offered / sent / completed / failed / incomplete), the warnings, and
    the censored view of the quantiles when requests were cut off by the drain."""
    req = summary.get("requests", {})
    keys = ("offered", "sent", "completed", "failed", "incomplete", "retried")
    if "sent" not in req:
        return ""
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = [("measure", req), ("all stages", req.get("totals") or req)]
    body = "".join(
        f"<tr><td class=l>{_e(name)}</td>"
        + "".join(f"<td>{_num(block.get(k, 0))}</td>" for k in keys)
        + "</tr>"
        for name, block in rows
    )
    out = ["<h2>Requests</h2>", _box(f"<table><tr><th class=l>stage</th>{head}</tr>{body}</table>")]
    out += [f"<p class=warn>warning: {_e(w)}</p>" for w in summary.get("warnings", [])]
    cens = summary.get("censored") or {}
    if cens.get("incomplete"):
        cells = "".join(
            f"<tr><td class=l>{m}</td>"
            + "".join(f"<td>{_num((cens.get(m) or {}).get(p))}</td>" for p in ("p50", "p90", "p95", "p99"))
            + "</tr>"
            for m in ("ttft", "e2e")
        )
        out += [
            f"<p>Censored view (ms): {_num(cens['incomplete'])} incomplete requests counted at their stop "
            "time — lower bounds, not mixed into the latency table.</p>",
            _box(
                f"<table><tr><th class=l>metric</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th></tr>"
                f"{cells}</table>"
            ),
        ]
    return "\n".join(out)


def _uncertainty_line(summary: Mapping[str, Any]) -> str:
    """The generator's own delay next to the latency table: how late any stamp of this run may be."""
    u = summary.get("timing_uncertainty") or {}
    if u.get("loop_lag_p99_ms") is None:
        return ""
    return (
        "<p>Timing uncertainty: the generator's event loop ran late by "
        f"p50 {_num(u.get('loop_lag_p50_ms'))} ms, p99 {_num(u.get('loop_lag_p99_ms'))} ms, "
        f"max {_num(u.get('loop_lag_max_ms'))} ms; any timestamp above may be late by about that much.</p>"
    )


def _invariants_section(summary: Mapping[str, Any]) -> str:
    """The conformance invariants judged on a sample of live answers (``--check-sample``), per check id."""
    checks = summary.get("invariants") or {}
    if not checks:
        return ""
    rows = "".join(
        f"<tr><td class=l><code>{_e(check)}</code></td><td>{_num(e.get('sampled'))}</td>"
        f"<td>{_num(e.get('failed'))}</td><td class=l>"
        + "<br>".join(
            f"<code>{_e(json.dumps(x, ensure_ascii=False)[:300])}</code>" for x in e.get("examples", [])
        )
        + "</td></tr>"
        for check, e in sorted(checks.items(), key=lambda kv: (-int(kv[1].get("failed", 0)), kv[0]))
    )
    return (
        "<h2>Invariants under load</h2><p>Conformance rules run on a sample of live answers "
        "(what only shows with batching: ids or usage crossing between streams, errors under pressure).</p>"
        + _box(
            "<table><tr><th class=l>check</th><th>sampled</th><th>failed</th><th class=l>examples</th></tr>"
            f"{rows}</table>"
        )
    )
