"""Plots for the load report as small hand-made inline SVG (no plotting library).

Written by hand on purpose: matplotlib's import and render cost about 1.8 s of CPU per report, which is
work outside the load window (the bench holds the whole invocation to 1.1x the window's CPU). These
charts need only axes with ticks, bars, lines and dots. Text stays text, every label is escaped, and
nothing is fetched from the network, so the report stays self-contained and offline.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence

Buckets = Sequence[tuple[int, int]]  # (value in µs, count), ascending

BLUE, ORANGE, GREEN, GREY, RED = "#3b6ea5", "#d08c2c", "#5a9e4b", "#b0b0b0", "#c0392b"
_L, _R, _T, _B = 52, 12, 22, 34  # margins: room for tick labels, title and axis label


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10_000:
        return f"{v / 1000:g}k"
    if a >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    mults = (1, 2, 5) if len(decades) <= 4 else (1,)
    ticks = [m * 10.0**d for d in decades for m in mults if lo <= m * 10.0**d <= hi]
    if len(ticks) < 3:  # a range inside one decade (all ITLs near 27 ms): plain ticks, placed on the log axis
        ticks = [t for t in _nice_ticks(lo, hi, 4) if t > 0]
    return ticks


class _Panel:
    """One chart: a plot area with scales, axes, ticks and labels; marks are added as SVG strings."""

    def __init__(
        self,
        width: int,
        height: int,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        xlog: bool = False,
    ) -> None:
        self.w, self.h, self.xlog = width, height, xlog
        x0, x1 = xlim
        if xlog:
            x0, x1 = math.log10(max(x0, 1e-9)), math.log10(max(x1, 1e-9))
        self.x0, self.x1 = (x0, x1) if x1 > x0 else (x0, x0 + 1.0)
        y0, y1 = ylim
        self.y0, self.y1 = (y0, y1) if y1 > y0 else (y0, y0 + 1.0)
        self.marks: list[str] = []
        self.legend: list[tuple[str, str]] = []  # drawn in the top margin, never over the data
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xticks = _log_ticks(*xlim) if xlog else _nice_ticks(*xlim)
        self.yticks = _nice_ticks(*ylim)

    def x(self, v: float) -> float:
        if self.xlog:
            v = math.log10(max(v, 1e-9))
        return _L + (v - self.x0) / (self.x1 - self.x0) * (self.w - _L - _R)

    def y(self, v: float) -> float:
        return self.h - _B - (v - self.y0) / (self.y1 - self.y0) * (self.h - _T - _B)

    def svg(self) -> str:
        w, h = self.w, self.h
        out = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
            "font-family='sans-serif' font-size='10' role='img'>",
            f"<title>{_e(self.title or self.ylabel)}</title>",
        ]
        for t in self.yticks:
            y = self.y(t)
            out.append(f"<line x1='{_L}' x2='{w - _R}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e4e4'/>")
            out.append(f"<text x='{_L - 4}' y='{y + 3:.1f}' text-anchor='end'>{_fmt(t)}</text>")
        for t in self.xticks:
            x = self.x(t)
            out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{_T}' y2='{h - _B}' stroke='#eeeeee'/>")
            out.append(f"<text x='{x:.1f}' y='{h - _B + 12}' text-anchor='middle'>{_fmt(t)}</text>")
        out.extend(self.marks)
        out.append(
            f"<rect x='{_L}' y='{_T}' width='{w - _L - _R}' height='{h - _T - _B}' "
            "fill='none' stroke='#888'/>"
        )
        if self.title:
            anchor, x = ("start", _L) if self.legend else ("middle", w / 2)
            out.append(
                f"<text x='{x:.0f}' y='14' text-anchor='{anchor}' font-size='11'>{_e(self.title)}</text>"
            )
        x = w - _R
        for label, color in reversed(self.legend):  # right-aligned, in the top margin above the plot
            out.append(
                f"<text class='legend' x='{x}' y='14' text-anchor='end' fill='{color}'>"
                f"&#9472;&#9472; {_e(label)}</text>"
            )
            x -= 6 * len(label) + 30
        if self.xlabel:
            out.append(
                f"<text x='{(w + _L) / 2:.0f}' y='{h - 6}' text-anchor='middle'>{_e(self.xlabel)}</text>"
            )
        if self.ylabel:
            cy = (h - _B + _T) / 2
            out.append(
                f"<text transform='translate(11,{cy:.0f}) rotate(-90)' text-anchor='middle'>"
                f"{_e(self.ylabel)}</text>"
            )
        out.append("</svg>")
        return "".join(out)

    def bars(self, edges: Sequence[float], counts: Sequence[float], color: str = BLUE) -> None:
        base = self.y(self.y0)
        for (a, b), c in zip(itertools.pairwise(edges), counts, strict=False):
            if c <= 0:
                continue
            x0, x1, top = max(self.x(a), _L), min(self.x(b), self.w - _R), self.y(c)  # clipped to the plot
            self.marks.append(
                f"<rect x='{x0:.1f}' y='{top:.1f}' width='{max(x1 - x0 - 0.5, 0.5):.1f}' "
                f"height='{base - top:.1f}' fill='{color}'/>"
            )

    def line(self, xs: Sequence[float], ys: Sequence[float | None], color: str, label: str = "") -> None:
        segments: list[list[str]] = [[]]
        for xv, yv in zip(xs, ys, strict=False):
            if yv is None or not math.isfinite(yv):
                segments.append([])
            else:
                segments[-1].append(f"{self.x(xv):.1f},{self.y(yv):.1f}")
        for seg in segments:
            if len(seg) > 1:
                pts = " ".join(seg)
                self.marks.append(
                    f"<polyline points='{pts}' fill='none' stroke='{color}' stroke-width='1.4'/>"
                )
            elif seg:
                cx, cy = seg[0].split(",")
                self.marks.append(f"<circle cx='{cx}' cy='{cy}' r='1.5' fill='{color}'/>")
        if label:
            self.legend.append((label, color))

    def dots(self, points: Sequence[tuple[float, float]], color: str = BLUE) -> None:
        self.marks.extend(
            f"<circle cx='{self.x(a):.1f}' cy='{self.y(b):.1f}' r='2' fill='{color}' fill-opacity='0.5'/>"
            for a, b in points
        )


def _hist(values: Sequence[float], weights: Sequence[float], edges: Sequence[float]) -> list[float]:
    counts = [0.0] * (len(edges) - 1)
    last = len(counts) - 1
    for v, w in zip(values, weights, strict=False):
        lo, hi = 0, last
        while lo < hi:  # the bin whose right edge is the first above v
            mid = (lo + hi) // 2
            if edges[mid + 1] < v:
                lo = mid + 1
            else:
                hi = mid
        counts[lo] += w
    return counts


def _weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The value below which a share ``q`` of the weight lies (``values`` ascending)."""
    total = sum(weights)
    acc = 0.0
    for v, w in zip(values, weights, strict=True):
        acc += w
        if acc >= q * total:
            return v
    return values[-1]


def distributions(named: dict[str, Buckets]) -> str:
    """One panel per latency: counts over log-spaced bins (ms), from the HDR histogram buckets."""
    out = []
    for name, buckets in named.items():
        if not buckets:
            continue
        values = [max(v, 1) / 1000 for v, _ in buckets]
        weights = [float(c) for _, c in buckets]
        # the axis spans the bulk (0.5 %..99.5 % of the samples): a few near-zero gaps must not stretch
        # an axis of 27 ms values down to 0.001 ms; the few outside are counted in the edge bins
        hi = _weighted_quantile(values, weights, 0.995)
        lo = max(_weighted_quantile(values, weights, 0.005), hi / 1000)  # at most 3 decades
        if hi <= lo * 1.2:
            lo, hi = lo / 1.25, hi * 1.25
        clamped = sum(w for v, w in zip(values, weights, strict=True) if v < lo or v > hi)
        values = [min(max(v, lo), hi) for v in values]
        edges = [lo * (hi / lo) ** (i / 40) for i in range(41)]
        counts = _hist(values, weights, edges)
        note = f" ({clamped:.0f} outside, in the edge bins)" if clamped else ""
        p = _Panel(320, 220, (lo, hi), (0, max(counts) * 1.05), title=name + note, xlabel=f"{name} (ms)",
                   ylabel="count", xlog=True)  # fmt: skip
        p.bars(edges, counts)
        out.append(p.svg())
    return "".join(out)


def time_series(rows: Sequence[dict[str, float]]) -> str:
    """Throughput, latency and errors against time since the first request (all stages)."""
    if not rows:
        return ""
    t = [r["t_s"] for r in rows]
    span = (min(t), max(t) if max(t) > min(t) else min(t) + 1)

    def panel(title: str, ylabel: str, series: Sequence[tuple[str, str, str]], xlabel: str = "") -> str:
        ymax = max((r[k] or 0 for k, _, _ in series for r in rows), default=0) or 1.0
        p = _Panel(660, 170, span, (0, ymax * 1.08), title=title, ylabel=ylabel, xlabel=xlabel)
        for key, label, color in series:
            p.line(t, [r[key] for r in rows], color, label if len(series) > 1 else "")
        return p.svg()

    errors = _Panel(660, 150, span, (0, max(r["errors_per_s"] for r in rows) * 1.08 or 1.0),
                    title="errors", ylabel="errors/s", xlabel="seconds since the first request")  # fmt: skip
    width = rows[0].get("res_s", 1.0) or 1.0
    for r in rows:
        errors.bars((r["t_s"] - width / 2, r["t_s"] + width / 2), (r["errors_per_s"],), RED)
    return "<br>".join(
        (
            panel("requests/s", "requests/s", [("requests_per_s", "requests/s", BLUE)]),
            panel("output tokens/s", "tokens/s", [("output_tokens_per_s", "output tokens/s", ORANGE)]),
            panel(
                "latency",
                "ms",
                [
                    ("ttft_mean_ms", "TTFT mean", BLUE),
                    ("e2e_mean_ms", "E2E mean", GREEN),
                    ("e2e_max_ms", "E2E max", GREY),
                ],
            ),
            errors.svg(),
        )
    )


def latency_percentiles(rows: Sequence[dict[str, float | None]]) -> str:
    """TTFT and E2E p50/p95/p99 per time bucket (from the per-request records), one panel each."""
    if not rows:
        return ""
    t = [float(r["t_s"] or 0) for r in rows]
    span = (min(t), max(t) if max(t) > min(t) else min(t) + 1)
    out = []
    for metric, title in (("ttft", "TTFT percentiles"), ("e2e", "E2E percentiles")):
        keys = [
            (f"{metric}_p50_ms", "p50", BLUE),
            (f"{metric}_p95_ms", "p95", ORANGE),
            (f"{metric}_p99_ms", "p99", RED),
        ]
        ymax = max((float(r[k] or 0) for k, _, _ in keys for r in rows), default=0) or 1.0
        p = _Panel(
            660,
            170,
            span,
            (0, ymax * 1.08),
            title=title,
            ylabel="ms",
            xlabel="seconds since the first request",
        )
        for key, label, color in keys:
            p.line(t, [r[key] for r in rows], color, label)
        out.append(p.svg())
    return "<br>".join(out)


def in_flight(rows: Sequence[dict[str, float | None]]) -> str:
    """Requests in flight (sent, not yet finished) over time: the load the target really carried."""
    if not rows:
        return ""
    t = [float(r["t_s"] or 0) for r in rows]
    span = (min(t), max(t) if max(t) > min(t) else min(t) + 1)
    ymax = max(float(r["in_flight"] or 0) for r in rows) or 1.0
    p = _Panel(660, 150, span, (0, ymax * 1.1), title="requests in flight (mean per bucket)",
               ylabel="requests", xlabel="seconds since the first request")  # fmt: skip
    p.line(t, [r["in_flight"] for r in rows], GREEN)
    return p.svg()


def tokens_per_chunk(values: Sequence[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = [lo + (hi - lo) * i / 30 for i in range(31)]
    counts = _hist(values, [1.0] * len(values), edges)
    p = _Panel(360, 220, (lo, hi), (0, max(counts) * 1.05),
               xlabel="completion tokens per content chunk (per request)", ylabel="requests")  # fmt: skip
    p.bars(edges, counts)
    return p.svg()


def bytes_vs_ttft(points: Sequence[tuple[float, float]]) -> str:
    if not points:
        return ""
    pts = [(a / 1024, b) for a, b in points]
    xs, ys = [a for a, _ in pts], [b for _, b in pts]
    xlim, ylim = (min(0.0, min(xs)), max(xs) * 1.05 or 1.0), (min(0.0, min(ys)), max(ys) * 1.05 or 1.0)
    p = _Panel(400, 250, xlim, ylim, xlabel="encoded image bytes per request (KiB)", ylabel="TTFT (ms)")
    p.dots(pts)
    return p.svg()
