"""The capacity plan as people read it: on the terminal, and as a section of the run's ``index.html``.

Rendering only: the numbers come from ``eyechart.plan.capacity``. The HTML section sits between marker
comments so planning again replaces it (re-planning with other SLOs is normal), and every string in it,
including the model name the server reported, is escaped.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eyechart.report import plots
from eyechart.report.style import PAGE_CSS

START, END = "<!-- eyechart-plan:start -->", "<!-- eyechart-plan:end -->"
_SECTION = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)


# -- terminal ---------------------------------------------------------------------------------------
def make_console(**kwargs: Any) -> Console:
    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, **kwargs)


def print_plan(plan: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or make_console()
    run = plan.get("run") or {}
    about = " · ".join(str(run[k]) for k in ("model", "workload") if run.get(k))
    console.print(f"[bold]capacity plan[/] {escape(about)}".rstrip())
    if plan["points"]:
        console.print(_points_table(plan))
    good = plan["max_goodput_rps"] is not None or plan["limiting_slo"] is not None
    console.print(f"[bold {'green' if good else 'red'}]{escape(plan['conclusion'])}[/]")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in key_figures(plan):
        grid.add_row(label, value)
    for note in plan["notes"]:
        grid.add_row("[yellow]note[/]", note)
    grid.add_row("method", f"[dim]{escape(plan['method'])}[/]")
    console.print(grid)


def _points_table(plan: Mapping[str, Any]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title="points (valid ones ordered by load)", title_justify="left")
    t.add_column("load", justify="right")
    t.add_column("sent req/s", justify="right")
    t.add_column("completed req/s", justify="right")
    slos = {s["slo"]: s for s in plan["slos"]}
    names = [s["name"] for s in slos.values()]
    for text, s in slos.items():
        t.add_column(s["name"] if names.count(s["name"]) == 1 else text, justify="right")
    t.add_column("state")
    for p in plan["points"]:
        cells = [_load(p), _n(_x(p)), _n(p["achieved_rps"])]
        for text, s in slos.items():
            o = p["slos"].get(text, {})
            mark = "" if o.get("holds") else " ✗"
            cells.append(escape(_value(o.get("observed"), s["unit"])) + mark)
        t.add_row(*cells, _state(p))
    return t


def key_figures(plan: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: the plan's answer in the order a reader asks for it."""
    out = [("max throughput", _rps(plan["max_throughput_rps"]))]
    est, low, high = plan["max_goodput_rps"], plan["max_goodput_rps_low"], plan["max_goodput_rps_high"]
    rng = f"range {_n(low)} – {_n(high) if high is not None else '?'}"
    goodput = "unknown (below the lowest point)" if est is None else f"{_rps(est)}"
    if est is not None and plan.get("max_goodput_is_lower_bound"):
        goodput = f"at least {_rps(est)}"
    out.append(("max goodput", f"{goodput} ({rng})"))
    if plan["limiting_slo"]:
        out.append(("limiting SLO", plan["limiting_slo"]))
    b = plan.get("bracket")
    if b and plan["limiting_slo"]:
        unit = next((s["unit"] for s in plan["slos"] if s["slo"] == plan["limiting_slo"]), "")
        ends = ["none" if e is None else f"{_rps(_x(e))} ({_value(e.get('observed'), unit)})" for e in b]
        out.append(("bracket", f"holds at {ends[0]}, breached at {ends[1]}"))
    if plan["target_rps"] is not None:
        head = f"{plan['headroom']:.0%} headroom"
        if plan["replicas"] is not None:
            span = f"{plan['replicas_low'] or '?'} – {plan['replicas_high'] or '?'}"
            out.append(
                ("replicas", f"{plan['replicas']} for {_rps(plan['target_rps'])} with {head} ({span})")
            )
        else:
            at_least = f"at least {plan['replicas_low']}" if plan["replicas_low"] else "unknown"
            out.append(("replicas", f"{at_least} for {_rps(plan['target_rps'])} with {head}"))
    if plan["gpu_hour_cost"] is not None:
        basis = f"{plan['gpu_hour_cost']:g}/GPU-hour x {plan['gpus_per_replica']} GPU per replica"
        if plan["cost_per_1k_requests"] is None:
            out.append(("cost", f"unknown: no rate holds the SLOs ({basis})"))
        else:
            per_img = plan["cost_per_1k_images"]
            imgs = f", {per_img:.4g} per 1k images" if per_img is not None else ""
            out.append(("cost", f"{plan['cost_per_1k_requests']:.4g} per 1k requests{imgs} ({basis})"))
    return out


def _load(p: Mapping[str, Any]) -> str:
    if p.get("offered_rps") is not None:
        return f"{_n(p['offered_rps'])} req/s"
    if p.get("users") is not None:
        return f"{p['users']} users"
    return "–"


def _x(p: Mapping[str, Any]) -> float | None:
    """Where a point sits on the SLO curves: its arrival rate (plans written before it: achieved)."""
    x = p.get("sent_rps")
    return float(x) if isinstance(x, int | float) else p.get("achieved_rps")


def _state(p: Mapping[str, Any]) -> str:
    if not p["valid"]:
        return "invalid (left out)"
    return "saturated" if p["saturated"] else "past knee" if p.get("past_knee") else "ok"


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "fraction":
        return f"{v:.2%}"
    if unit == "ms":
        return f"{v:,.4g} ms" if v < 10_000 else f"{v:,.0f} ms"
    return f"{v:.4g}{unit}"


def _n(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _rps(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g} req/s"


# -- index.html -------------------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def render_section(plan: Mapping[str, Any]) -> str:
    """The plan as one escaped HTML section (no scripts, nothing fetched)."""
    good = plan["max_goodput_rps"] is not None
    figures = "".join(
        f"<tr><th class=l>{_e(label)}</th><td class=l>{_e(text)}</td></tr>"
        for label, text in key_figures(plan)
    )
    parts = [
        "<section id='capacity-plan'>",
        "<h2>Capacity plan</h2>",
        _about_html(plan.get("run") or {}),
        f"<p>SLOs: {', '.join(f'<code>{_e(s)}</code>' for s in plan['slo'])}</p>",
        f"<p class='verdict {'ok' if good else 'bad'}'>{_e(plan['conclusion'])}</p>",
        f"<table>{figures}</table>",
        chart(plan),
        _points_html(plan),
    ]
    if plan["notes"]:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in plan["notes"]) + "</ul>")
    parts += [f"<p><small>Method: {_e(plan['method'])}</small></p>", "</section>"]
    return "\n".join(p for p in parts if p)


def _about_html(run: Mapping[str, Any]) -> str:
    words = {"model": "model", "workload": "workload", "base_url": "target"}
    parts = [f"{label} <code>{_e(run[k])}</code>" for k, label in words.items() if run.get(k)]
    return f"<p>{', '.join(parts)}</p>" if parts else ""


def _points_html(plan: Mapping[str, Any]) -> str:
    if not plan["points"]:
        return ""
    slos = plan["slos"]
    head = "".join(f"<th>{_e(s['slo'])}</th>" for s in slos)
    rows = []
    for p in plan["points"]:
        cells = []
        for s in slos:
            o = p["slos"].get(s["slo"], {})
            cls = "pass" if o.get("holds") else "fail"
            cells.append(f"<td class={cls}>{_e(_value(o.get('observed'), s['unit']))}</td>")
        rows.append(
            f"<tr><td>{_e(_load(p))}</td><td>{_e(_n(_x(p)))}</td><td>{_e(_n(p['achieved_rps']))}</td>"
            f"{''.join(cells)}"
            f"<td class=l>{_e(_state(p))}</td></tr>"
        )
    return (
        "<div class=scroll><table><tr><th>load</th><th>sent req/s</th><th>completed req/s</th>"
        f"{head}<th class=l>state</th></tr>{''.join(rows)}</table></div>"
    )


def chart(plan: Mapping[str, Any]) -> str:
    """The limiting SLO's value against the arrival rate, with its threshold and the planned maximum."""
    slos = plan["slos"]
    s = next((x for x in slos if x["slo"] == plan["limiting_slo"]), slos[0] if slos else None)
    pts = [p for p in plan["points"] if p["valid"]]
    if s is None or len(pts) < 1:
        return ""
    data = [
        (x, y, p["saturated"])
        for p in pts
        if (x := _x(p)) is not None and (y := p["slos"][s["slo"]]["observed"]) is not None
    ]
    if not data:
        return ""
    thr = float(s["threshold"])
    calm = [y for _, y, sat in data if not sat] or [y for _, y, _ in data]
    top = max(max(calm), thr) * 1.25 or 1.0
    xmax = max([x for x, _, _ in data] + [plan["max_goodput_rps_high"] or 0.0]) * 1.05 or 1.0
    scale = 100.0 if s["unit"] == "fraction" else 1.0
    ylabel = {"fraction": "%", "ms": "ms"}.get(s["unit"], s["unit"] or "value")
    p = plots._Panel(560, 240, (0.0, xmax), (0.0, top * scale), title=f"{s['slo']} vs arrival rate",
                     xlabel="sent requests/s", ylabel=f"{s['name']} ({ylabel})")  # fmt: skip
    low, high, est = plan["max_goodput_rps_low"], plan["max_goodput_rps_high"], plan["max_goodput_rps"]
    if low is not None and (high is not None or est is not None):
        x0, x1 = p.x(low), p.x(high if high is not None else xmax)
        p.marks.append(
            f"<rect x='{x0:.1f}' y='{p.y(top * scale):.1f}' width='{max(x1 - x0, 0.5):.1f}' "
            f"height='{p.y(0) - p.y(top * scale):.1f}' fill='{plots.GREEN}' fill-opacity='0.12'/>"
        )
    clipped = [(x, min(y, top) * scale) for x, y, _ in data]
    p.line([x for x, _ in clipped], [y for _, y in clipped], plots.BLUE, s["name"])
    for (x, y), (_, raw, sat) in zip(clipped, data, strict=True):
        fill = plots.ORANGE if sat else plots.BLUE
        hollow = " fill-opacity='0' stroke='" + fill + "'" if raw > top else ""
        p.marks.append(f"<circle cx='{p.x(x):.1f}' cy='{p.y(y):.1f}' r='3' fill='{fill}'{hollow}/>")
    y = p.y(thr * scale)
    p.marks.append(
        f"<line x1='{p.x(0):.1f}' x2='{p.x(xmax):.1f}' y1='{y:.1f}' y2='{y:.1f}' stroke='{plots.RED}' "
        f"stroke-dasharray='5,3'/><text x='{p.x(xmax) - 4:.1f}' y='{y - 4:.1f}' text-anchor='end' "
        f"fill='{plots.RED}'>SLO {_e(s['slo'])}</text>"
    )
    if est is not None:
        x = p.x(est)
        p.marks.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{p.y(0):.1f}' y2='{p.y(top * scale):.1f}' "
            f"stroke='{plots.GREEN}' stroke-width='1.6'/>"
            f"<text x='{x + 4:.1f}' y='{p.y(top * scale) + 12:.1f}' "
            f"fill='{plots.GREEN}'>max goodput {_e(_n(est))} req/s</text>"
        )
    legend = "orange: past saturation; hollow: above the chart; band: the range the spacing and samples leave"
    return p.svg() + f"<p><small>{_e(legend)}</small></p>"


def insert_section(index: Path, section: str) -> None:
    """Put the plan section into ``index`` before ``</body>``, replacing an earlier plan section."""
    index = Path(index)
    text = index.read_text("utf-8") if index.exists() else _blank_page()
    block = f"{START}\n{section}\n{END}"
    if _SECTION.search(text):
        text = _SECTION.sub(lambda _: block, text, count=1)
    else:
        at = text.lower().rfind("</body>")
        text = text[:at] + block + "\n" + text[at:] if at >= 0 else text + "\n" + block + "\n"
    tmp = index.with_name(index.name + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(index)


def _blank_page() -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>eyechart capacity plan</title>"
        f"<style>{PAGE_CSS}</style></head><body>\n</body></html>\n"
    )
