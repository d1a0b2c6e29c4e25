"""The look every load, sweep and plan page shares: one style sheet, so the three read as one report
(and a fix for narrow screens, e.g. charts that scale with their width, lands in all of them)."""

PAGE_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
td{font-variant-numeric:tabular-nums}th{background:#f4f4f4}td.l,th.l{text-align:left;white-space:normal}
td.wrap{text-align:left;white-space:normal;overflow-wrap:anywhere}
td.id{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:flex-start}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c0392b;font-weight:600}
.verdict{font-size:1.2em;padding:.5em 1em;border-radius:4px;display:inline-block}
.ok{background:#e6f4ea}.bad{background:#fdecea}code,pre{background:#f6f8fa;padding:1px 4px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%}svg{max-width:100%;height:auto;display:block}
.head{color:#444}.head b{color:#222}
"""
