"""A sweep's reports: the top-level summary.json and an index.html with the load curves.

Latency quantiles and goodput are drawn against offered load and against achieved load, the knee as a
vertical line and the latency SLOs as horizontal ones; each point's own report is linked. Self-contained
like the single-run page (inline SVG and CSS, nothing fetched, every string escaped).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eyechart.exitcodes import ExitCode
from eyechart.load.gates import GateError, parse_slo
from eyechart.report import plots
from eyechart.report.style import PAGE_CSS

_QUANTILES = (("ttft", "p50", plots.BLUE), ("ttft", "p95", "#7aa6d6"), ("e2e", "p50", plots.ORANGE),
              ("e2e", "p95", "#e8b877"), ("itl", "p95", plots.GREEN))  # fmt: skip


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def write_sweep_report(run_dir: Path, summary: Mapping[str, Any]) -> None:
    run_dir = Path(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(_finite(summary), indent=2, ensure_ascii=False) + "\n")
    (run_dir / "index.html").write_text(render_sweep_html(summary), "utf-8")


def _slo_lines(summary: Mapping[str, Any]) -> dict[str, float]:
    """Latency SLO thresholds (ms) by metric, from the run's --slo."""
    text = (summary.get("run") or {}).get("slo") or ""
    try:
        slos = parse_slo(text) if text else []
    except GateError:
        return {}
    return {f"{s.metric} {s.stat}": s.threshold for s in slos if s.unit == "ms" and s.stat}


def render_sweep_html(summary: Mapping[str, Any]) -> str:
    sweep = summary["sweep"]
    points = [p for p in sweep["points"] if p["valid"]]
    knee = sweep.get("knee")
    code = int((summary.get("verdict") or {}).get("exit_code", ExitCode.INVALID_RUN))
    run = summary.get("run") or {}
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>eyechart sweep {_e(sweep['spec'])}"
        f"</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>Load sweep <code>{_e(sweep['spec'])}</code></h1>",
        f"<p>model <code>{_e(run.get('model', ''))}</code>, workload <code>{_e(run.get('workload', ''))}"
        f"</code>, target <code>{_e(run.get('base_url', ''))}</code></p>",
        f"<p class='verdict {'ok' if code == 0 else 'bad'}'>{_e(ExitCode(code).verdict)} (exit {code}): "
        f"{_e(_knee_text(sweep))}</p>",
    ]
    if points:
        offered = sweep["mode"] == "rate"
        xkey, xlabel = ("offered_rps", "offered requests/s") if offered else ("users", "users")
        parts.append(_curves(points, xkey, xlabel, knee, _slo_lines(summary)))
        parts.append(_curves(points, "achieved_rps", "achieved requests/s", knee, _slo_lines(summary)))
        parts.append(_goodput(points, xkey, xlabel, knee))
    parts.append(_table(sweep))
    if sweep.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in sweep["notes"]) + "</ul>")
    parts += [f"<p><small>{_e(sweep['definition'])}</small></p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _knee_text(sweep: Mapping[str, Any]) -> str:
    knee = sweep.get("knee")
    mt = sweep.get("max_throughput_rps")
    top = f"; max throughput {mt:.3g} req/s" if isinstance(mt, int | float) else ""
    if not knee:
        return "no knee: no point keeps up with its load on the low-load plateau" + top
    return f"knee at {knee['label']} ({(knee.get('achieved_rps') or 0):.3g} req/s achieved){top}"


def _x(p: Mapping[str, Any], key: str) -> float:
    return float(p.get(key) or 0.0)


def _panel(points: Sequence[Mapping[str, Any]], xkey: str, ys: Sequence[float], title: str, xlabel: str,
           ylabel: str) -> plots._Panel:  # fmt: skip
    xmax = max(_x(p, xkey) for p in points) * 1.08 or 1.0
    top = max([y for y in ys if math.isfinite(y)] or [1.0]) * 1.1 or 1.0
    return plots._Panel(560, 260, (0.0, xmax), (0.0, top), title=title, xlabel=xlabel, ylabel=ylabel)


def _vline(panel: plots._Panel, x: float, label: str, color: str) -> None:
    px = panel.x(x)
    panel.marks.append(
        f"<line x1='{px:.1f}' x2='{px:.1f}' y1='{panel.y(panel.y0):.1f}' y2='{panel.y(panel.y1):.1f}' "
        f"stroke='{color}' stroke-dasharray='4,3'/><text x='{px + 3:.1f}' y='{panel.y(panel.y1) + 10:.1f}' "
        f"fill='{color}'>{_e(label)}</text>"
    )


def _hline(panel: plots._Panel, y: float, label: str) -> None:
    py = panel.y(y)
    x0, x1 = panel.x(panel.x0), panel.x(panel.x1)
    panel.marks.append(
        f"<line x1='{x0:.1f}' x2='{x1:.1f}' y1='{py:.1f}' y2='{py:.1f}' stroke='{plots.RED}' "
        f"stroke-dasharray='5,3'/><text x='{x1 - 4:.1f}' y='{py - 3:.1f}' text-anchor='end' "
        f"fill='{plots.RED}'>{_e(label)}</text>"
    )


def _curves(points: Sequence[Mapping[str, Any]], xkey: str, xlabel: str, knee: Mapping[str, Any] | None,
            slos: Mapping[str, float]) -> str:  # fmt: skip
    """Latency quantiles against load; past-saturation values are clipped at 4x the calm maximum."""
    series = []
    for metric, stat, color in _QUANTILES:
        ys = [((p.get("metrics") or {}).get(metric) or {}).get(stat) for p in points]
        if any(isinstance(y, int | float) for y in ys):
            series.append((f"{metric} {stat}", ys, color))
    calm = [y for _, ys, _ in series for y, p in zip(ys, points, strict=True) if y and not p["saturated"]]
    cap = 4 * max(calm or [1.0])
    lines = {k: v for k, v in slos.items() if any(k == name for name, _, _ in series)}
    top = [min(y, cap) for _, ys, _ in series for y in ys if isinstance(y, int | float)] + list(
        lines.values()
    )
    panel = _panel(points, xkey, top, "latency", xlabel, "ms")
    xs = [_x(p, xkey) for p in points]
    for name, ys, color in series:
        panel.line(xs, [None if y is None else min(float(y), cap) for y in ys], color, name)
    for name, threshold in lines.items():
        _hline(panel, threshold, f"SLO {name} ≤ {threshold:g} ms")
    if knee is not None:
        k = next((p for p in points if p["label"] == knee["label"]), None)
        if k is not None:
            _vline(panel, _x(k, xkey), "knee", plots.GREEN)
    return panel.svg()


def _goodput(
    points: Sequence[Mapping[str, Any]], xkey: str, xlabel: str, knee: Mapping[str, Any] | None
) -> str:
    achieved = [float(p.get("achieved_rps") or 0.0) for p in points]
    good = [float(p.get("goodput_rps") or 0.0) for p in points]
    xs = [_x(p, xkey) for p in points]
    ys = achieved + good + (xs if xkey == "offered_rps" else [])
    panel = _panel(points, xkey, ys, "requests/s", xlabel, "requests/s")
    if xkey == "offered_rps":
        panel.line(xs, xs, plots.GREY, "offered")
    panel.line(xs, achieved, plots.BLUE, "achieved")
    panel.line(xs, good, plots.GREEN, "goodput")
    over = [(x, y) for x, y, p in zip(xs, achieved, points, strict=True) if p["saturated"]]
    panel.dots(over, plots.RED)
    if knee is not None:
        k = next((p for p in points if p["label"] == knee["label"]), None)
        if k is not None:
            _vline(panel, _x(k, xkey), "knee", plots.GREEN)
    note = "goodput: requests meeting every per-request SLO; red dots: saturated points (behind the load)"
    return panel.svg() + f"<p><small>{note}</small></p>"


def _n(x: Any, fmt: str = ".3g") -> str:
    return "-" if not isinstance(x, int | float) else format(x, fmt)


def _table(sweep: Mapping[str, Any]) -> str:
    knee = sweep.get("knee") or {}
    head = ("point", "offered req/s", "users", "achieved req/s", "goodput req/s", "errors", "429 share",
            "incomplete", "TTFT p50 ms", "TTFT p95 ms", "e2e p95 ms", "exit", "state")  # fmt: skip
    rows = []
    for p in sweep["points"]:
        m = p.get("metrics") or {}
        state = "invalid" if not p["valid"] else "saturated" if p["saturated"] else ""
        if p["label"] == knee.get("label"):
            state = "knee"
        cells = [
            f"<td class=l><a href='{_e(p['dir'])}/index.html'>{_e(p['label'])}</a></td>",
            *(
                f"<td>{_e(v)}</td>"
                for v in (
                    _n(p.get("offered_rps")),
                    _n(p.get("users")),
                    _n(p.get("achieved_rps")),
                    _n(p.get("goodput_rps")),
                    _n(p.get("error_rate"), ".1%"),
                    _n(p.get("overload_rate"), ".1%"),
                    p.get("incomplete", 0),
                    _n((m.get("ttft") or {}).get("p50"), ".1f"),
                    _n((m.get("ttft") or {}).get("p95"), ".1f"),
                    _n((m.get("e2e") or {}).get("p95"), ".1f"),
                    p.get("exit_code"),
                )
            ),
            f"<td class=l>{_e(state)}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<div class=scroll><table><tr>{heads}</tr>{''.join(rows)}</table></div>"
