"""The conformance reports: ``conformance.json``, ``junit.xml``, ``index.html`` and the terminal summary.

All four are views of one :class:`~eyechart.conform.results.ConformanceRun`, which also decides the
status order and the exit code: this module only renders. ``conformance.json`` follows
``report/schemas/conformance.schema.json``. The API key never reaches a report: every string is
scrubbed of the run's secrets (``$EYECHART_API_KEY`` takes their place) before anything is written.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.table import Table
from rich.text import Text

from eyechart import __version__
from eyechart.conform.results import STATUSES, CheckResult, ConformanceRun, exit_code
from eyechart.report.conformance_html import render_html
from eyechart.secrets import scrub

SCHEMA_VERSION = 1


def to_json(run: ConformanceRun) -> dict[str, Any]:
    """The ``conformance.json`` document (valid against ``conformance.schema.json``)."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "eyechart", "version": __version__, "python": platform.python_version()},
        "run": {
            "target": run.target,
            "model": run.model,
            "profile": run.profile,
            "embedded_target": run.embedded,
            "strict": run.strict,
            "only": run.only,
            "skip": run.skip,
            "started": _iso(run.started),
            "finished": _iso(run.finished),
            "duration_s": round(run.duration_s, 3),
            "exit_code": int(exit_code(run)),
            "cut_short": run.cut_short or run.stopped_answering,
        },
        "headline": run.headline(),
        "counts": run.counts(),
        "counts_by_severity": run.counts_by_severity(),
        "deselected": run.deselected,
        "not_run": run.not_run,
        "checks": [r.to_dict() for r in run.ordered()],
    }
    return dict(scrub(doc, run.secrets))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def junit_xml(run: ConformanceRun) -> str:
    """JUnit XML, one testcase per check: MUST failures (and SHOULD under --strict) are failures;
    warnings stay passing test cases with the finding in properties and system-out."""
    counts = run.counts()
    suite = ET.Element(
        "testsuite",
        name="eyechart-conformance",
        tests=str(len(run.results)),
        failures=str(counts["fail"]),
        errors=str(counts["error"]),
        skipped=str(counts["skip"]),
        time=f"{run.duration_s:.3f}",
        timestamp=_iso(run.started),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", run.target), ("model", run.model), ("profile", run.profile)):
        ET.SubElement(props, "property", name=name, value=value)
    for r in run.ordered():
        case = ET.SubElement(
            suite, "testcase", classname=f"eyechart.{r.area}", name=r.id, time=f"{r.duration_s:.3f}"
        )
        cp = ET.SubElement(case, "properties")
        for name, value in (("severity", r.severity), ("status", r.status), ("clause", r.clause)):
            ET.SubElement(cp, "property", name=name, value=value)
        text = finding_text(r)
        if r.status == "fail" or (r.status == "flaky" and r.severity == "MUST"):  # a flaky MUST fails too
            ET.SubElement(case, "failure", message=r.message, type=r.severity).text = text
        elif r.status == "error":
            ET.SubElement(case, "error", message=r.message, type="harness").text = text
        elif r.status in ("skip", "not_judged"):
            ET.SubElement(case, "skipped", message=r.message)
        elif r.status == "warn":
            ET.SubElement(cp, "property", name="finding", value=r.message)
            ET.SubElement(case, "system-out").text = text
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    xml = ET.tostring(root, encoding="unicode", xml_declaration=True)
    return str(scrub(_xml_safe(xml), run.secrets))


def _xml_safe(text: str) -> str:
    # XML 1.0 cannot carry most control characters; servers send them.
    return "".join(c if c in "\t\n\r" or ord(c) >= 0x20 else f"\\x{ord(c):02x}" for c in text)


def finding_text(r: CheckResult) -> str:
    """A finding as plain text (JUnit bodies and pytest's failure output): evidence and reproducer."""
    ev = r.evidence
    lines = [f"[{r.severity}] {r.id}: {r.message}", f"clause: {r.clause}"]
    for key in ("expected", "got", "pointer"):
        if ev.get(key) is not None:
            lines.append(f"{key}: {_short(ev[key])}")
    ex = ev.get("exchange")
    if ex:
        req = ex.get("request", {})
        lines.append(f"request: {req.get('method', '')} {req.get('url', '')}")
        lines.append(f"status: {ex.get('status')}" + (f" ({ex['error']})" if ex.get("error") else ""))
        if ex.get("retried"):
            lines.append(f"sent twice: {ex['retried']}")
        if ex.get("body_head"):
            lines.append(f"body: {_short(ex['body_head'], 600)}")
    if ev.get("reproducer"):
        lines.append("reproduce:\n" + ev["reproducer"])
    return "\n".join(lines)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_lines(run: ConformanceRun, report_path: Path | str | None = None, limit: int = 12) -> list[str]:
    """A plain-text one-screen summary (pytest's terminal section uses it)."""
    c = run.counts()
    lines = [
        f"{run.target} · model {run.model} · profile {run.profile} · {run.duration_s:.1f} s",
        "  ".join(f"{k} {v}" for k, v in c.items()),
        *run.headline(),
    ]
    findings = run.findings()
    for r in findings[:limit]:
        lines.append(f"{r.status.upper():5} {r.severity:6} {r.id}: {_oneline(r.message)}")
    if len(findings) > limit:
        lines.append(f"… and {len(findings) - limit} more in the report")
    if report_path:
        lines.append(f"report: {report_path}")
    return [str(scrub(line, run.secrets)) for line in lines]


def _oneline(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_VERDICT_STYLE = {0: "bold green", 1: "bold red", 4: "bold yellow"}


def print_summary(
    run: ConformanceRun, console: Console, report_path: Path | str | None = None, limit: int = 15
) -> None:
    """The terminal summary with rich: counts by severity and status, the findings, the report path."""
    code = exit_code(run)
    console.print(
        Text.assemble((f"eyechart conform: {code.verdict}", _VERDICT_STYLE.get(int(code), "bold"))),
        soft_wrap=True,
    )
    embedded = " (embedded target)" if run.embedded else ""
    selection = "".join(f" --only {p}" for p in run.only) + "".join(f" --skip {p}" for p in run.skip)
    for key, value in (
        ("target", f"{scrub(run.target, run.secrets)}{embedded}"),
        ("model", run.model),
        ("profile", run.profile + (" · strict" if run.strict else "") + selection),
        ("checks", f"{len(run.results)} in {run.duration_s:.1f} s"),
    ):
        console.print(f"  {key:<8} {value}", markup=False, highlight=False, soft_wrap=True)
    for said in run.headline():
        console.print(f"  {scrub(said, run.secrets)}", style="bold yellow", highlight=False)
    table = Table(box=None, padding=(0, 2), show_edge=False)
    table.add_column("severity")
    styles = {"fail": "red", "flaky": "red", "error": "yellow", "not_judged": "yellow", "warn": "magenta"}
    styles |= {"skip": "dim", "pass": "green"}
    for s in STATUSES:
        table.add_column(s, justify="right", style=styles[s])
    for sev, counts in run.counts_by_severity().items():
        if any(counts.values()):
            table.add_row(sev, *(str(counts[s]) for s in STATUSES))
    console.print(table)
    findings = run.findings()
    shown = findings[:limit]
    core, chosen = [r for r in shown if not r.from_profile], [r for r in shown if r.from_profile]
    for group, rows in (("core contract", core), (f"follows from profile {run.profile}", chosen)):
        if rows and chosen:
            console.print(f"  {group}:", style="bold", highlight=False)
        for r in rows:
            line = Text(f"  {r.status.upper():5} ", style=styles[r.status])
            line.append(f"{r.severity:6} {r.id}", style="bold")
            if r.from_profile:
                line.append(
                    f"  [{r.attribution['knob']} = {json.dumps(r.attribution['value'])}]", style="cyan"
                )
            line.append(f"  {scrub(_oneline(r.message, 100), run.secrets)}")
            console.print(line, soft_wrap=True)
    if len(findings) > limit:
        console.print(f"  … and {len(findings) - limit} more findings in the report")
    for reason, ids in skipped_must_by_reason(run).items():
        console.print(
            f"  {len(ids)} MUST check{'s' if len(ids) > 1 else ''} skipped: {scrub(reason, run.secrets)}",
            style="dim",
            markup=False,
            soft_wrap=True,
        )
        console.print(f"      {', '.join(ids)}", style="dim", markup=False, soft_wrap=True)
    if run.not_run:
        console.print(
            f"  {len(run.not_run)} selected checks never reported (the run stopped early)", style="yellow"
        )
    if report_path:
        console.print(f"report: {report_path}")


def skipped_must_by_reason(run: ConformanceRun) -> dict[str, list[str]]:
    """Skipped MUST checks grouped by the reason they give, largest group first: a MUST that was not
    judged is a gap in the verdict, and the reason says what would close it."""
    groups: dict[str, list[str]] = {}
    for r in run.ordered():
        if r.status in ("skip", "not_judged") and r.severity == "MUST":
            groups.setdefault(_oneline(r.message, 400), []).append(r.id)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def write_reports(run: ConformanceRun, out_dir: Path) -> dict[str, Path]:
    """Write ``conformance.json``, ``junit.xml`` and ``index.html`` into ``out_dir``; their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "conformance.json",
        "junit": out_dir / "junit.xml",
        "html": out_dir / "index.html",
    }
    doc = to_json(run)
    paths["json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["junit"].write_text(junit_xml(run), encoding="utf-8")
    paths["html"].write_text(render_html(doc), encoding="utf-8")
    return paths


def schema_path() -> Path:
    return Path(__file__).resolve().parent / "schemas" / "conformance.schema.json"
