"""Plots for the load report as inline SVG strings (matplotlib, Agg backend).

Imported only when a report is written, never on the load generator's hot path: matplotlib takes
about a second to import. SVG text stays text (``svg.fonttype = none``) so the report is small and
searchable, and nothing is fetched from the network.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})

Buckets = Sequence[tuple[int, int]]  # (value in µs, count), ascending


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]


def distributions(named: dict[str, Buckets]) -> str:
    """One panel per latency: counts over log-spaced bins (ms), from the HDR histogram buckets."""
    shown = {k: v for k, v in named.items() if v}
    if not shown:
        return ""
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 2.8), squeeze=False)
    for ax, (name, buckets) in zip(axes[0], shown.items(), strict=True):
        values = [max(v, 1) / 1000 for v, _ in buckets]
        weights = [c for _, c in buckets]
        lo, hi = min(values), max(values)
        if hi <= lo:
            hi = lo * 1.1 + 0.001
        bins = [lo * (hi / lo) ** (i / 40) for i in range(41)]
        ax.hist(values, bins=bins, weights=weights, color="#3b6ea5")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("count")
        ax.set_title(name)
    return _svg(fig)


def time_series(rows: Sequence[dict[str, float]]) -> str:
    """Throughput, latency and errors against time since the first request (all stages)."""
    if not rows:
        return ""
    t = [r["t_s"] for r in rows]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8.5, 6.2), sharex=True)
    a.plot(t, [r["requests_per_s"] for r in rows], label="requests/s", color="#3b6ea5")
    a2 = a.twinx()
    a2.plot(t, [r["output_tokens_per_s"] for r in rows], label="output tokens/s", color="#d08c2c")
    a.set_ylabel("requests/s")
    a2.set_ylabel("output tokens/s")
    a.set_title("throughput (blue: requests/s, orange: output tokens/s)")
    lines = (
        ("ttft_mean_ms", "TTFT mean", "#3b6ea5"),
        ("e2e_mean_ms", "E2E mean", "#5a9e4b"),
        ("e2e_max_ms", "E2E max", "#b0b0b0"),
    )
    for key, label, color in lines:
        b.plot(t, [r[key] if r[key] is not None else math.nan for r in rows], label=label, color=color)
    b.set_ylabel("ms")
    b.legend(loc="upper left", fontsize=7)
    b.set_title("latency")
    c.bar(t, [r["errors_per_s"] for r in rows], width=rows[0].get("res_s", 1.0), color="#c0392b")
    c.set_ylabel("errors/s")
    c.set_xlabel("seconds since the first request")
    c.set_title("errors")
    return _svg(fig)


def tokens_per_chunk(values: Sequence[float]) -> str:
    if not values:
        return ""
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    ax.hist(values, bins=30, color="#3b6ea5")
    ax.set_xlabel("completion tokens per content chunk (per request)")
    ax.set_ylabel("requests")
    return _svg(fig)


def bytes_vs_ttft(points: Sequence[tuple[float, float]]) -> str:
    if not points:
        return ""
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.scatter([p[0] / 1024 for p in points], [p[1] for p in points], s=6, alpha=0.5, color="#3b6ea5")
    ax.set_xlabel("encoded image bytes per request (KiB)")
    ax.set_ylabel("TTFT (ms)")
    return _svg(fig)
