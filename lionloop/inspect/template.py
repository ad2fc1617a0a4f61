"""The report's HTML page (Jinja2, autoescaped): summary, chart cards, hardest cases, lineages."""

from __future__ import annotations

import time
from typing import Any

from jinja2 import DictLoader, Environment
from markupsafe import Markup

from lionloop.inspect.fmt import gap, pct

MACROS = r"""{% macro node(n) -%}
<span class="node">{% if n.missing %}<span class="id">{{ n.id }}</span> <span class="meta">(not in the pool)</span>{% else -%}
{% if n.id in anchors %}<a class="id" href="#lineage-{{ n.id }}">{{ n.id }}</a>{% else %}<span class="id">{{ n.id }}</span>{% endif %}
 {{ n.text }}{% if n.input %} <span class="muted">| {{ n.input }}</span>{% endif %}
 <span class="meta">{{ n.origin }}, round {{ n.round_born }}, {{ n.split }}</span>
{% for v in n.verdicts %} <span class="badge {{ 'none' if v.hard is none else ('hard' if v.hard else 'easy') }}" title="round {{ v.round }}">r{{ v.round }} {{ 'unjudged' if v.hard is none else ('hard' if v.hard else 'easy') }}{% if v.diff is not none %} {{ gap(v.diff) }}{% endif %}</span>{% endfor %}
{% if not n.verdicts %} <span class="meta">never judged</span>{% endif %}{% endif %}</span>
{%- endmacro %}

{% macro subtree(kids) -%}
{% if kids %}<ul class="tree">{% for k in kids %}<li>{{ node(k) }}{{ subtree(k.children) }}</li>{% endfor %}</ul>{% endif %}
{%- endmacro %}

{# ancestors root-first, one nested list per generation, down to the focus node and its descendants #}
{% macro chain(nodes, kids, top) -%}
<ul class="tree{% if top %} top{% endif %}"><li{% if nodes|length == 1 %} class="focus"{% endif %}>{{ node(nodes[0]) }}
{%- if nodes|length == 1 %}{{ subtree(kids) }}{% else %}{{ chain(nodes[1:], kids, false) }}{% endif %}</li></ul>
{%- endmacro %}

{% macro lineage(lin) -%}
{{ chain(lin.ancestors + [lin.node], lin.descendants, true) }}
{%- endmacro %}
"""

TEMPLATE = r"""{% from "macros.html" import lineage %}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lionloop report · {{ run.run_id }}</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --hard: #d62728; --easy: #2ca02c; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif;
         color: var(--fg); background: var(--bg); }
  header, main { max-width: 1480px; margin: 0 auto; padding: 0 24px; }
  header { padding-top: 20px; }
  h1 { font-size: 22px; margin: 0 0 2px; }
  h2 { font-size: 16px; margin: 0 0 2px; }
  h3 { font-size: 14px; margin: 0 0 6px; }
  .muted, .about { color: var(--muted); }
  .about { margin: 0 0 6px; font-size: 12.5px; }
  nav a { margin-right: 14px; }
  a { color: #175cd3; text-decoration: none; } a:hover { text-decoration: underline; }
  .kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 18px; }
  .kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 150px; }
  .kpi b { display: block; font-size: 19px; }
  .kpi span { color: var(--muted); font-size: 12px; }
  .grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
  .card.wide { grid-column: 1 / -1; }
  .empty { color: var(--muted); padding: 40px 0; text-align: center; }
  @media (max-width: 1000px) { .grid { grid-template-columns: 1fr; } }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: #fafbfc; font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
  .badge { display: inline-block; border-radius: 4px; padding: 0 5px; font-size: 11.5px; margin-right: 3px;
           color: #fff; white-space: nowrap; }
  .badge.hard { background: var(--hard); } .badge.easy { background: var(--easy); }
  .badge.none { background: #98a2b3; }
  section { margin: 22px 0; }
  .lineage { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin-bottom: 12px; }
  .lineage:target { outline: 3px solid #fdb022; }
  ul.tree { list-style: none; margin: 0; padding-left: 18px; border-left: 1px dashed #d0d5dd; }
  ul.tree.top { border-left: none; padding-left: 0; }
  ul.tree li { margin: 3px 0; }
  .focus > .node { background: #fff4d6; border-radius: 4px; padding: 1px 4px; }
  .node .meta { color: var(--muted); font-size: 12px; }
  footer { max-width: 1480px; margin: 0 auto; padding: 10px 24px 30px; color: var(--muted); font-size: 12px; }
</style>
<script>{{ plotly_js }}</script>
</head>
<body>
<header>
  <h1>lionloop report · <span class="id">{{ run.run_id }}</span></h1>
  <div class="muted">run directory <code>{{ run.run_dir }}</code> · generated {{ generated }}</div>
  <nav><a href="#charts">charts</a><a href="#bootstrap">data</a><a href="#plot-map">pool map</a><a href="#hardest">hardest instructions</a><a href="#lineages">lineages</a></nav>
  <div class="kpis">
    {% for k in kpis %}<div class="kpi"><b>{{ k.value }}</b><span>{{ k.label }}</span></div>{% endfor %}
  </div>
</header>
<main>
<section id="charts" class="grid">
{% for c in charts %}
  <div class="card{% if c.wide %} wide{% endif %}" id="card-{{ c.id }}">
    <h2>{{ c.title }}</h2>
    <p class="about">{{ c.about }}</p>
    {% if c.html %}{{ c.html }}{% else %}<div class="empty">nothing to plot yet</div>{% endif %}
  </div>
{% endfor %}
</section>

{% if boot %}
<section id="bootstrap">
  <h2>Data and bootstrap</h2>
  <p class="about">What the run started from, how its held-out set is scored, and every row the teacher could not answer (left out of the pool).</p>
  <div class="card">
    <p>{{ boot.seeds }} seeds in the train pool, {{ boot.cache }} in the cache pool, {{ boot.eval }} eval rows · held-out set scored by <b>{{ metric }}</b>{% if boot.eval_scoring == "both" %} (and the referee's relative score){% endif %}.</p>
    {% if data %}<p>data: <code>{{ data.train }}</code>{% if data.eval %} · eval: <code>{{ data.eval }}</code>{% endif %}
      · {{ data.rows.train }} rows read{% if data.rows.eval is defined %} + {{ data.rows.eval }} eval rows{% endif %}
      {% for k, v in (data.duplicates or {}).items() %}{% if v %} · {{ v }} duplicate {{ k }} rows dropped{% endif %}{% endfor %}
      {% if data.overlap_removed %} · {{ data.overlap_removed }} seed rows also in the eval set removed{% endif %}
      {% if data.held_out %} · {{ data.held_out }} rows held out for eval{% endif %}
      {% if data.multi_turn %} · {{ data.multi_turn }} chat rows cut to their first exchange{% endif %}</p>{% endif %}
    {% if dropped %}
    <p><b>{{ boot.seed_failures }} seed and {{ boot.eval_failures or 0 }} eval rows got no teacher answer</b> and are not in the pool:</p>
    <table><thead><tr><th>split</th><th>instruction</th><th>reason</th></tr></thead><tbody>
    {% for d in dropped %}<tr><td>{{ d.split }}</td><td>{{ d.text|truncate(120) }}</td><td><code>{{ d.reason|truncate(160) }}</code></td></tr>{% endfor %}
    </tbody></table>
    {% else %}<p class="muted">The teacher answered every row.</p>{% endif %}
  </div>
</section>
{% endif %}

<section id="hardest">
  <h2>Hardest instructions</h2>
  <p class="about">Instructions whose latest verdict is hard, largest teacher–student gap first, then the most rounds judged hard. Each links to its lineage.</p>
  {% if hardest %}
  <div class="card"><table>
    <thead><tr><th class="num">#</th><th>id</th><th>instruction</th><th>task</th><th>origin</th><th class="num">born</th>
      <th class="num">gap</th><th class="num">hard / judged</th><th>teacher</th><th>student</th><th class="num">descendants</th></tr></thead>
    <tbody>
    {% for h in hardest %}
      <tr><td class="num">{{ loop.index }}</td>
        <td><a class="id" href="#lineage-{{ h.id }}">{{ h.id }}</a></td>
        <td>{{ h.text }}{% if h.input %}<br><span class="muted">{{ h.input }}</span>{% endif %}</td>
        <td>{{ h.task }}</td><td>{{ h.origin }}</td><td class="num">{{ h.round_born }}</td>
        <td class="num">{{ gap(h.diff) }}</td><td class="num">{{ h.times_hard }} / {{ h.times_judged }}</td>
        <td><code>{{ h.teacher_answer|truncate(60) }}</code></td><td><code>{{ h.student_answer|truncate(60) }}</code></td>
        <td class="num">{{ h.lineage.descendant_count }}</td></tr>
    {% endfor %}
    </tbody>
  </table></div>
  {% else %}<div class="card empty">no instruction is judged hard (yet)</div>{% endif %}
</section>

<section id="lineages">
  <h2>Lineages of the hardest instructions</h2>
  <p class="about">Ancestors down to the instruction (highlighted), then everything generated from it; badges are the referee's call in each round (gap = teacher − student score).</p>
  {% for h in hardest %}
  <div class="lineage" id="lineage-{{ h.id }}">
    <h3>#{{ loop.index }} <span class="id">{{ h.id }}</span> · {{ h.text }}</h3>
    {{ lineage(h.lineage) }}
    <div class="meta muted">{{ h.lineage.ancestors|length }} ancestor(s), {{ h.lineage.descendant_count }} descendant(s){% if h.lineage.truncated %} (first {{ h.lineage.descendant_count }} shown){% endif %} · <a href="#hardest">back to the table</a></div>
  </div>
  {% endfor %}
</section>
</main>
<footer>lionloop · {{ stats.instructions }} instructions in the pool ({% for k, v in stats.by_split.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}) · map: {{ map_note }}</footer>
</body>
</html>
"""






def _kpis(data: dict[str, Any]) -> list[dict[str, str]]:
    rounds = [r for r in data["stats"]["rounds"] if r["round"] > 0]
    ev = [r["eval_score"] for r in rounds if r.get("eval_score") is not None]
    metric = next((r["eval_metric"] for r in rounds if r.get("eval_metric")), "accuracy")
    audit = [r["agreement"] for r in rounds if r.get("agreement") and r["agreement"].get("agreement") is not None]
    hr = [r["hard_ratio"] for r in rounds if r["hard_ratio"] is not None]
    sizes = [r["pool_size"] for r in data["stats"]["rounds"]]
    t = data["stats"]["teacher"]
    return [
        {"label": "rounds", "value": str(len(rounds))},
        {"label": f"eval {metric}, first → last round", "value": f"{pct(ev[0])} → {pct(ev[-1])}" if ev else "-"},
        *([{"label": "referee agrees with verifier (last round)", "value": pct(audit[-1]["agreement"])}] if audit else []),
        {"label": "hard ratio, first → last round", "value": f"{pct(hr[0])} → {pct(hr[-1])}" if hr else "-"},
        {"label": "pool (train + cache), seeds → now", "value": f"{sizes[0]} → {sizes[-1]}" if sizes else "-"},
        {"label": "teacher calls (cache hits)", "value": f"{t['calls']} ({t['hits']})"},
        *([{"label": "estimated teacher cost", "value": f"{t['cost']:.4g}"}] if t.get("cost") else []),
        {"label": "candidates rejected", "value": str(sum(data["stats"]["rejections"].values()))},
    ]


def page(data: dict[str, Any], charts: list[dict[str, Any]], plotly_js: str) -> str:
    """The whole page; `charts` carry Plotly's HTML snippets, `plotly_js` is inlined once."""
    env = Environment(loader=DictLoader({"page.html": TEMPLATE, "macros.html": MACROS}),
                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(gap=gap, anchors={h["id"] for h in data["hardest"]})
    method = data["map"]["method"]
    map_note = (f"{len(data['map']['points'])} embeddings ({data['map'].get('model', '')}) projected with "
                f"{'t-SNE' if method == 'tsne' else 'PCA'}"
                + (f" (a sample of {data['map']['total']:,})" if data["map"].get("total", 0) > len(data["map"]["points"])
                   else "")) if method else data["map"]["note"]
    boot = (data["metrics"].get(0) or {}).get("bootstrap") or {}
    metric = next((r["eval_metric"] for r in data["stats"]["rounds"] if r.get("eval_metric")), "accuracy")
    return env.get_template("page.html").render(
        run=data["run"], stats=data["stats"], kpis=_kpis(data), hardest=data["hardest"],
        boot=boot if "seeds" in boot else None, data=boot.get("data"), dropped=boot.get("dropped") or [],
        metric=metric,
        charts=[{**c, "html": Markup(c["html"]) if c["html"] else None} for c in charts],
        plotly_js=Markup(plotly_js), map_note=map_note, generated=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
