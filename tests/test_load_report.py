"""Load reports: summary.json validates, junit has one case per gate, HTML escapes server text."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import xml.etree.ElementTree as ET

import jsonschema

from eyechart.load.gates import evaluate, parse_slo
from eyechart.load.records import RequestRecord
from eyechart.load.stats import LoadStats
from eyechart.report.load import SCHEMA_PATH, finalize_summary, make_console, print_summary, write_reports

MS = 1_000_000
HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
RUN = {
    "target": "http://127.0.0.1:9",
    "model": "m",
    "workload": "ocr-documents",
    "arrival": "poisson",
    "rate": 5.0,
    "processes": 1,
    "api_key": "sk-never-shown",
    "measure_duration_s": 8.0,
}


def _run() -> LoadStats:
    rng = random.Random(2)
    stats = LoadStats({"ttft": 300, "itl": 50}, reservoir_size=100)
    t0 = 10**12
    for i in range(120):
        stage = "warmup" if i < 20 else "measure"
        t_sched = t0 + i * 80 * MS
        t_send = t_sched + int(rng.random() * MS)
        itl = [int(rng.lognormvariate(0, 0.3) * 15 * MS) for _ in range(15)]
        ttft = int(rng.lognormvariate(0, 0.4) * 200 * MS)
        if i % 17 == 0:
            r = RequestRecord(
                f"r{i}",
                stage,
                "doc",
                True,
                "url",
                t_sched,
                t_send,
                t_head=t_send + MS,
                status=500,
                error_class="5xx",
                error=HOSTILE,
            )
            stats.add(r, [])
            continue
        r = RequestRecord(
            f"r{i}",
            stage,
            "doc",
            True,
            "url",
            t_sched,
            t_send,
            t_head=t_send + MS,
            t_first=t_send + ttft,
            t_end=t_send + ttft + sum(itl),
            status=200,
            content_chunks=16,
            prompt_tokens=800,
            completion_tokens=32,
            images=1,
            pixels=640 * 480,
            image_bytes=rng.randrange(20_000, 400_000),
        )
        stats.add(r, itl)
    return stats


def test_reports_are_written_valid_and_safe(tmp_path) -> None:
    stats = _run()
    summary = stats.summary(RUN)
    slos = parse_slo("ttft_p95<=10s,error_rate<=1%,goodput>=50%")
    verdict = evaluate(summary, slos, histograms=stats.hists)
    assert verdict.exit_code == 1  # 6 of 100 measured requests failed: error_rate breached
    stages = [{"name": "warmup", "planned_s": 1.6}, {"name": "measure", "planned_s": 8.0, "rate": 5.0}]
    write_reports(tmp_path, summary, verdict, stats, stages)

    doc = json.loads((tmp_path / "summary.json").read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    assert doc["verdict"] == {"exit_code": 1, "passed": False}
    assert doc["run"]["workload"] == "ocr-documents" and doc["metrics"]["ttft"]["count"] == 94

    # An invalid summary is caught by the schema (it is not a rubber stamp).
    bad = dict(doc, errors={"total": 1, "rate": 2.0, "by_class": {}})
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [r.name for r in verdict.results]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"error_rate"} and suite.get("failures") == "1"

    page = (tmp_path / "index.html").read_text()
    assert HOSTILE not in page and "<script" not in page
    assert html_escaped(HOSTILE) in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|<link|@import", page)  # nothing fetched
    assert page.count("<svg") >= 4
    assert "time to first token" in page  # the metric definitions are printed

    rows = list(csv.DictReader((tmp_path / "stages.csv").open()))
    assert [r["stage"] for r in rows] == ["warmup", "measure"]
    assert rows[1]["requests"] == "100" and rows[1]["errors_5xx"] == "6" and rows[1]["rate"] == "5.0"

    hist = json.loads((tmp_path / "histograms.json").read_text())
    assert {"ttft", "itl", "e2e"} <= set(hist["histograms"])
    for f in tmp_path.iterdir():
        assert "sk-never-shown" not in f.read_text(errors="replace")


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_terminal_summary_without_colour(monkeypatch) -> None:
    stats = _run()
    summary = stats.summary(RUN)
    verdict = evaluate(summary, parse_slo("ttft_p95<=10s"), histograms=stats.hists)
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    console = make_console(file=buf, force_terminal=True, width=120)
    print_summary(finalize_summary(summary, verdict), verdict, console)
    out = buf.getvalue()
    assert "ttft" in out and "exit 0" in out and "goodput" in out
    assert not re.search(r"\x1b\[[0-9;]*(3|9)[0-7]m", out)  # no colour codes (bold is fine)


def test_plots_are_well_formed_svg_that_show_the_data() -> None:
    from eyechart.report import plots

    # 3 buckets of 10, 20 and 70 requests: three bars whose heights keep the proportions
    svg = plots.distributions({"ttft": [(1_000, 10), (10_000, 20), (100_000, 70)], "itl": []})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [float(r.get("height", 0)) for r in root.iter(f"{ns}rect") if r.get("fill") != "none"]
    assert len(bars) == 3 and abs(bars[2] / bars[0] - 7.0) < 0.05 and abs(bars[1] / bars[0] - 2.0) < 0.05
    assert plots.distributions({"itl": []}) == ""
    rows = [
        {"t_s": float(t), "res_s": 1.0, "requests_per_s": 5.0, "output_tokens_per_s": 50.0,
         "ttft_mean_ms": None if t == 2 else 100.0, "e2e_mean_ms": 300.0, "e2e_max_ms": 400.0,
         "errors_per_s": 1.0 if t == 3 else 0.0}
        for t in range(6)
    ]  # fmt: skip
    series = plots.time_series(rows)
    panels = [ET.fromstring(p) for p in series.split("<br>")]
    assert len(panels) == 4
    lines = [pl for pl in panels[2].iter(f"{ns}polyline")]
    assert len(lines) == 4  # TTFT broken by its missing sample into two lines, E2E mean, E2E max
    assert len([r for r in panels[3].iter(f"{ns}rect") if r.get("fill") == plots.RED]) == 1
    scatter = ET.fromstring(plots.bytes_vs_ttft([(2048.0, 10.0), (4096.0, 20.0)]))
    assert len(list(scatter.iter(f"{ns}circle"))) == 2
    assert "&lt;b&gt;" in plots._Panel(100, 100, (0, 1), (0, 1), title="<b>").svg()
