"""The report's one-file HTML page (jinja2, autoescaped; CSS inline, figures as data URIs)."""

from __future__ import annotations

from typing import Any

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LO2 run report: {{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#cfd8e3}
nav{padding:8px 28px;background:#e8edf2;font-size:13px} nav a{margin-right:14px;color:#243447}
main{padding:8px 28px 40px;max-width:1280px}
section{overflow-x:auto;background:#fff;border:1px solid #dde3ea;border-radius:6px;margin:18px 0;padding:12px 18px}
h2{font-size:18px;margin:6px 0 10px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #dde3ea;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f3f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.kv th{width:260px}
.banner{padding:8px 12px;border-radius:4px;margin:8px 0;font-size:13px}
.banner.ok{background:#e6f4ea;border:1px solid #9ccfa8}
.banner.warn{background:#fdecea;border:1px solid #f1a9a0}
.missing{background:#fff8e1;border:1px solid #f0d58c;padding:8px 12px;border-radius:4px;font-size:13px}
.missing code{background:#fff3c4}
.note{color:#555;font-size:12px}
img.fig{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px} .grid img{max-width:600px;width:48%}
.win{border-top:1px solid #dde3ea;padding-top:8px;margin-top:10px}
.err{background:#fdecea;font-weight:600} .absent{background:#fff3c4}
pre.lines{font-size:11px;white-space:pre-wrap;word-break:break-all;margin:4px 0;background:#f7f7f7;padding:6px}
pre.lines span{display:block}
.chip{display:inline-block;border:1px solid #ccd;border-radius:3px;padding:0 4px;margin:1px;font-size:11px;font-family:monospace}
</style>
</head>
<body>
<header>
<h1>LO2 run report</h1>
<p>{{ title }}: every figure below is computed from the hold-out runs only (split == "holdout"), from the artifacts the loader, detection and explainability phases wrote; no model was run for this page.</p>
</header>
<nav><a href="#data">Data</a><a href="#settings">Settings</a><a href="#leaderboard">Leaderboard</a><a href="#curves">Curves and scores</a><a href="#signatures">Recall per signature</a><a href="#shap">SHAP</a><a href="#windows">Top flagged windows</a></nav>
<main>
{% macro missing(items) -%}
{% if items %}<div class="missing"><strong>Missing input.</strong><ul>
{% for what, cmd in items %}<li>{{ what }}: produced by <code>{{ cmd }}</code></li>{% endfor %}
</ul></div>{% endif %}
{%- endmacro %}

<section id="data"><h2>Data summary</h2>
{{ missing(data.missing) }}
{% if data.facts %}
<table class="kv">{% for k, v in data.facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
<p class="note">Runs: {{ data.runs | join(", ") }}</p>
<h3>What was trimmed or dropped</h3>
<table class="kv">{% for k, v in data.trims %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
<h3>Input problems (skipped or read by a stated rule)</h3>
<table><tr><th>kind</th><th>count</th><th>what it means</th><th>examples</th></tr>
{% for p in data.problems %}<tr><td>{{ p.name }}</td><td class="num">{{ p.count }}</td><td>{{ p.description }}</td><td>{% for i in p.examples %}<div>{{ i }}</div>{% endfor %}{% if p.more %}<div class="note">... and {{ p.more }} more</div>{% endif %}</td></tr>{% endfor %}
</table>
{% endif %}
</section>

<section id="settings"><h2>Settings of the detection run</h2>
<table class="kv">{% for k, v in settings.rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
</section>

<section id="leaderboard"><h2>Leaderboard (hold-out runs)</h2>
<div class="banner {{ board.banner.level }}">{{ board.banner.text }}</div>
<p>Ranking rule: {{ board.rule }}.</p>
{{ missing(board.missing) }}
{% if board.rows %}<table><tr>{% for c in board.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in board.rows %}<tr>{% for v in r %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
</section>

<section id="curves"><h2>ROC and PR curves, score histograms</h2>
<p class="note">Hold-out rows only (split == "holdout"; {{ curves.rows }} rows per model). Histograms: <code>correct</code> rows, non-target rows (other services' rows of error cases) and target rows; the dashed line is the model's threshold.</p>
{{ missing(curves.missing) }}
{% if curves.curves %}<img class="fig" alt="ROC and PR curves" src="{{ curves.curves }}">{% endif %}
{% for n in curves.notes %}<p class="note">{{ n }}</p>{% endfor %}
<div class="grid">{% for h in curves.histograms %}<img alt="scores of {{ h.key }}" src="{{ h.src }}">{% endfor %}</div>
</section>

<section id="signatures"><h2>Recall per signature and per test case</h2>
{{ missing(sig.missing) }}
{% if sig.heat %}<p class="note">Basis: {{ sig.basis }}.</p><img class="fig" alt="signature recall heat map" src="{{ sig.heat }}">{% endif %}
{% if sig.recall_rows %}<h3>Per test case: recall of the target service's hold-out rows at each model's threshold</h3>
<table><tr>{% for c in sig.recall_cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in sig.recall_rows %}<tr>{% for v, style in r %}<td class="num"{% if style %} style="{{ style }}"{% endif %}>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
</section>

<section id="shap"><h2>SHAP</h2>
{{ missing(shap.missing) }}
{% if not shap.models %}<p>No SHAP output for this run's models.</p>{% endif %}
{% for m in shap.models %}<h3>{{ m.key }} <span class="note">(from the {{ m.source }} phase{% if m.rows %}; {{ m.rows }} hold-out rows{% endif %})</span></h3>
<div class="grid">{% if m.swarm %}<img alt="SHAP summary of {{ m.key }}" src="{{ m.swarm }}">{% else %}<p class="note">No per-row SHAP values for {{ m.key }}: bars only.</p>{% endif %}
{% if m.bars %}<img alt="mean |SHAP| of {{ m.key }}" src="{{ m.bars }}">{% endif %}</div>
{% endfor %}
</section>

<section id="windows"><h2>Top flagged hold-out windows and their nearest normal window</h2>
{{ missing(win.missing) }}
{% if win.windows %}<p class="note">{% if win.source %}The hold-out windows with the highest {{ win.source }} score that it flags{% if win.labelled %} ({{ win.labelled }} labelled anomalous; the others are false positives, shown as they are){% endif %}, nearest neighbour in {{ win.space or "its feature space" }}. {% endif %}From nn_mapping.csv: each window is compared with its most similar normal training window (cosine similarity of token counts). Counts are (this window / nearest normal). <span class="err">Error codes, ERROR lines and exceptions</span> come first, then <span class="absent">what the nearest normal window lacks</span>.</p>{% endif %}
{% for w in win.windows %}<div class="win">
<h3>#{{ w.rank }} {{ w.seq_id }}</h3>
<table class="kv"><tr><th>run / test case / service</th><td>{{ w.run }} / {{ w.test_case }} / {{ w.service }}</td></tr>
<tr><th>anomalous (label) / target service</th><td>{{ w.anomaly }} / {{ w.target_service }}</td></tr>
<tr><th>score</th><td>{{ w.score }}</td></tr>
<tr><th>nearest normal window</th><td>{{ w.neighbour_seq_id }} (cosine {{ w.cosine_similarity }}, {{ w.n_tokens_absent_in_neighbour }} token(s) absent there)</td></tr></table>
<div>Tokens: {% for t in w.tokens %}<span class="chip{% if t.error %} err{% elif t.absent %} absent{% endif %}">{{ t.text }} ({{ t.here }}/{{ t.there }})</span>{% endfor %}</div>
<div>Templates: {% for t in w.templates %}<div><span class="chip{% if t.error %} err{% elif t.absent %} absent{% endif %}">{{ t.name }} ({{ t.here }}/{{ t.there }})</span> {{ t.text }}</div>{% endfor %}</div>
<p class="note">{{ w.lines_note }}</p>
{% if w.lines %}<pre class="lines">{% for l in w.lines %}<span class="{% if l.error %}err{% elif l.absent %}absent{% endif %}">{{ l.line }} [{{ l.template }}] {{ l.text }}</span>{% endfor %}</pre>{% endif %}
</div>{% endfor %}
</section>
</main>
</body>
</html>
"""


def render(context: dict[str, Any]) -> str:
    """The page for ``context`` (every value escaped)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.from_string(TEMPLATE).render(**context)


__all__ = ["TEMPLATE", "render"]
