"""``index.html`` of a conformance run: one self-contained page, readable offline.

Rendered from the already scrubbed ``conformance.json`` document, so it can never show more than the
JSON does. Every string that came from the server (messages, bodies, headers) is HTML-escaped; there
is no external asset; the one inline script only filters what is shown (by status, severity and a
search over ids and messages) and the page reads the same without it. Layout: the verdict, a matrix of
areas × statuses, the filters, then every check with failures first, each finding with its evidence and
curl reproducer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from html import escape
from typing import Any

from eyechart.conform.results import STATUSES as _STATUSES
from eyechart.exitcodes import VERDICTS

_VERDICT = {int(code): text for code, text in VERDICTS.items()}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
 color:#1d1d1f;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} .meta{color:#555}
table{border-collapse:collapse;margin:1rem 0}
th,td{padding:.25rem .6rem;text-align:left;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.fail,.flaky{color:#b00020;font-weight:600}.not_judged{color:#a15c00}.error{color:#a15c00;font-weight:600}.warn{color:#7b3fa0}.skip{color:#777}.pass{color:#17803d}
.badge{display:inline-block;padding:0 .45rem;border-radius:.3rem;font-size:.8rem;
 border:1px solid currentColor}
.verdict-0{color:#17803d}.verdict-1{color:#b00020}.verdict-4{color:#a15c00}
details{border:1px solid #ddd;border-radius:.4rem;margin:.35rem 0;padding:.3rem .6rem}
details[open]{background:#fafafa} summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-all;background:#f3f3f3;padding:.5rem;border-radius:.3rem;font-size:12px}
code{font-size:12px;overflow-wrap:anywhere} .clause{color:#555;font-size:.9rem}
*{box-sizing:border-box} .scroll{overflow-x:auto;max-width:100%}
.filters{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;margin:1rem 0;padding:.5rem .6rem;
 border:1px solid #ddd;border-radius:.4rem;background:#fafafa}
.filters fieldset{border:0;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.2rem .7rem}
.filters legend{float:left;font-weight:600;margin-right:.4rem}
.filters input[type=search]{flex:1 1 12rem;min-width:0;max-width:100%;padding:.2rem .4rem}
.hidden{display:none}
"""

# Filters the checks in place: status and severity boxes, and a case-insensitive search over id and
# message. Inline, no dependency; with scripts off every check stays visible.
_JS = """
(function(){
  var form=document.getElementById('filters'); if(!form) return;
  function apply(){
    var on=function(n){return Array.prototype.map.call(form.querySelectorAll('input[name='+n+']:checked'),
      function(i){return i.value;});};
    var st=on('status'), sv=on('severity'), q=form.querySelector('input[type=search]').value.toLowerCase();
    var shown=0;
    document.querySelectorAll('details.check').forEach(function(d){
      var ok=st.indexOf(d.dataset.status)>=0 && sv.indexOf(d.dataset.severity)>=0 &&
        (!q || d.dataset.text.indexOf(q)>=0);
      d.classList.toggle('hidden',!ok); if(ok) shown++;
    });
    document.querySelectorAll('section.area').forEach(function(s){
      s.classList.toggle('hidden',!s.querySelector('details.check:not(.hidden)'));
    });
    document.getElementById('shown').textContent=shown+' shown';
  }
  form.addEventListener('input',apply); form.addEventListener('submit',function(e){e.preventDefault();});
  apply();
})();
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    return escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _matrix(checks: list[dict[str, Any]]) -> str:
    by_area: dict[str, Counter[str]] = {}
    for c in checks:
        by_area.setdefault(c["area"], Counter())[c["status"]] += 1
    order = sorted(by_area, key=lambda a: (*(-by_area[a][s] for s in _STATUSES[:3]), a))
    head = "".join(f"<th class='{s}'>{s}</th>" for s in _STATUSES)
    rows = []
    for area in order:
        cells = "".join(
            f"<td class='n {s if by_area[area][s] else ''}'>{by_area[area][s] or ''}</td>" for s in _STATUSES
        )
        rows.append(f"<tr><td><a href='#area-{_e(area)}'>{_e(area)}</a></td>{cells}</tr>")
    return f"<div class=scroll><table><tr><th>area</th>{head}</tr>{''.join(rows)}</table></div>"


def _evidence(ev: dict[str, Any]) -> str:
    parts = []
    for key in ("expected", "got", "pointer"):
        if ev.get(key) is not None:
            parts.append(f"<div><b>{key}</b>: <code>{_e(ev[key])}</code></div>")
    ex = ev.get("exchange")
    if ex:
        req = ex.get("request") or {}
        parts.append(
            "<div><b>request</b>: <code>"
            f"{_e(req.get('method'))} {_e(req.get('url'))}</code> {_e(req.get('body_summary'))}</div>"
        )
        status = f"{_e(ex.get('status'))}" + (f" — {_e(ex.get('error'))}" if ex.get("error") else "")
        parts.append(f"<div><b>status</b>: {status}</div>")
        if ex.get("retried"):
            parts.append(f"<div><b>sent twice</b>: {_e(ex['retried'])}</div>")
        if ex.get("headers"):
            hdrs = "\n".join(f"{k}: {v}" for k, v in ex["headers"].items())
            parts.append(f"<div><b>response headers</b><pre>{_e(hdrs)}</pre></div>")
        if ex.get("body_head"):
            parts.append(f"<div><b>body (first bytes)</b><pre>{_e(ex['body_head'])}</pre></div>")
    if ev.get("reproducer"):
        parts.append(f"<div><b>reproduce</b><pre>{_e(ev['reproducer'])}</pre></div>")
    others = ev.get("exchanges") or []
    if len(others) > 1:
        items = "".join(
            f"<li><code>{_e(x.get('method'))} {_e(x.get('url'))}</code> → {_e(x.get('status'))}</li>"
            for x in others
        )
        parts.append(f"<div><b>all requests of this check</b><ul>{items}</ul></div>")
    if isinstance(ev.get("rerun"), dict):  # a flaky check: the re-run that passed, after the failure
        parts.append(f"<div><b>re-run (passed)</b>{_evidence(ev['rerun'])}</div>")
    return "".join(parts)


def _check(c: dict[str, Any]) -> str:
    status = c["status"]
    head = (
        f"<span class='badge {status}'>{status}</span> <b>{_e(c['severity'])}</b> "
        f"<code>{_e(c['id'])}</code> {_e(c['message'])}"
    )
    body = f"<div class='clause'>{_e(c['clause'])}</div>" + (
        _evidence(c.get("evidence") or {}) if status != "pass" else ""
    )
    why = c.get("attribution") or {}
    if why.get("source") == "profile" and status != "pass":
        head += (
            f" <span class='badge knob'>profile {_e(why.get('profile'))}: {_e(why.get('knob'))} = "
            f"{_e(why.get('value'))}</span>"
        )
    opened = " open" if status in ("fail", "error") else ""
    text = _e(f"{c['id']} {c['message']}".lower())
    return (
        f"<details class='check'{opened} data-status='{_e(status)}' data-severity='{_e(c['severity'])}' "
        f"data-text='{text}'><summary>{head}</summary>{body}</details>"
    )


def _unjudged_must(checks: list[dict[str, Any]]) -> str:
    """MUST checks that reached no verdict (skipped, not judged), grouped by the reason they give: the
    gaps in a PASS, and what would close each."""
    groups: dict[str, list[str]] = {}
    for c in checks:
        if c["severity"] == "MUST" and c["status"] in ("skip", "not_judged"):
            groups.setdefault(" ".join(str(c["message"]).split()), []).append(c["id"])
    if not groups:
        return ""
    items = "".join(
        f"<li>{len(ids)} × {_e(reason)}<br><small>"
        + ", ".join(f"<code>{_e(i)}</code>" for i in ids)
        + "</small></li>"
        for reason, ids in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    )
    n = sum(len(ids) for ids in groups.values())
    return f"<h2>MUST checks without a verdict ({n}), by reason</h2><ul>{items}</ul>"


def _filters(checks: list[dict[str, Any]]) -> str:
    """Status and severity boxes (all on) and a search field; the script above applies them."""
    statuses = [s for s in _STATUSES if any(c["status"] == s for c in checks)]
    severities = [v for v in ("MUST", "SHOULD", "INFO") if any(c["severity"] == v for c in checks)]
    severities += sorted({c["severity"] for c in checks} - set(severities))

    def boxes(name: str, values: Sequence[str]) -> str:
        items = "".join(
            f"<label><input type=checkbox name={name} value='{_e(v)}' checked> {_e(v)}</label>"
            for v in values
        )
        return f"<fieldset><legend>{name}</legend>{items}</fieldset>"

    return (
        "<form id=filters class=filters>"
        + boxes("status", statuses)
        + boxes("severity", severities)
        + "<input type=search placeholder='search check ids and messages' aria-label='search'>"
        + f"<span id=shown>{len(checks)} shown</span></form>"
    )


def _profile_made(checks: list[dict[str, Any]]) -> str:
    """Findings that follow from a profile knob, apart from the core contract's."""
    made = [
        c for c in checks if (c.get("attribution") or {}).get("source") == "profile" and c["status"] != "pass"
    ]
    if not made:
        return ""
    rows = "".join(
        f"<li><span class='{_e(c['status'])}'>{_e(c['status'])}</span> <code>{_e(c['id'])}</code>: "
        f"{_e(c['attribution'].get('knob'))} = {_e(c['attribution'].get('value'))} "
        f"({_e(c['attribution'].get('why'))})</li>"
        for c in made
    )
    return (
        f"<h2>Findings that follow from the profile ({len(made)})</h2><p class='meta'>Not the contract's "
        f"core: each follows from a knob of the chosen profile; another profile may expect otherwise.</p>"
        f"<ul>{rows}</ul>"
    )


def render_html(doc: dict[str, Any]) -> str:
    """The page for a ``conformance.json`` document."""
    run = doc["run"]
    checks: list[dict[str, Any]] = doc["checks"]
    code = run["exit_code"]
    counts = " · ".join(f"<span class='{s}'>{doc['counts'][s]} {s}</span>" for s in _STATUSES)
    sections = []
    areas: dict[str, list[dict[str, Any]]] = {}
    for c in checks:  # already ordered failures first
        areas.setdefault(c["area"], []).append(c)
    rank = {s: i for i, s in enumerate(_STATUSES)}
    for area in sorted(areas, key=lambda a: (min(rank[c["status"]] for c in areas[a]), a)):
        sections.append(
            f"<section class=area><h2 id='area-{_e(area)}'>{_e(area)}</h2>"
            + "".join(_check(c) for c in areas[area])
            + "</section>"
        )
    strict = " · strict" if run.get("strict") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>eyechart conformance: {_e(_VERDICT.get(code, code))}</title><style>{_CSS}</style></head><body>
<h1>eyechart conformance: <span class="verdict-{_e(code)}">{_e(_VERDICT.get(code, code))}</span></h1>
<div class="meta">target <code>{_e(run["target"])}</code> · model <code>{_e(run["model"])}</code> ·
profile <code>{_e(run["profile"])}</code>{" (embedded target)" if run.get("embedded_target") else ""} ·
{_e(run["started"])} · {_e(run["duration_s"])} s · exit code {_e(code)}{strict}</div>
{"".join(f"<p class='headline'><b>{_e(h)}</b></p>" for h in doc.get("headline") or [])}
<p>{counts}</p>
{_matrix(checks)}
{_profile_made(checks)}
{_unjudged_must(checks)}
{_filters(checks)}
{"".join(sections)}
<p class="meta">eyechart {_e(doc["tool"]["version"])}. Severity: MUST fails the run; SHOULD is a warning
(fails only with --strict); INFO is recorded.
Reproducers read the key from <code>$EYECHART_API_KEY</code>.</p>
<script id="filters-script">{_JS}</script>
</body></html>
"""
