"""report.html: report.md for a browser, with interactive figures and traces of a sample call.

The page is made from the summary alone, like report.md: its text, tables and
verdicts are report.md's own markdown rendered to HTML (one source, no number
written twice), and its figures are drawn from the summary's rows with Plotly
(hover a point to read it, click a legend entry to hide a curve). Everything the
page needs is inside the file: Plotly's JavaScript is embedded, nothing is
loaded from the network when it is opened.

`write_sample_traces` writes Chrome traces of one `gettid` on the application
kernel and on the uniprocessor kernel (what `apkern run gettid 1 --trace FILE`
writes), which the page links with a note on opening them in Perfetto.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup

if TYPE_CHECKING:
    from ..profiles import Profile
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from .plots import FIGURES
from .report import report_markdown

# The sample call: (kernel, CPUs, file). One gettid, as `apkern run gettid 1 --kernel K --cpus N --trace FILE`.
SAMPLE_TRACES = (
    ("apkern", 2, "trace_gettid_apkern.json"),
    ("up", 1, "trace_gettid_up.json"),
)
FIGURE_NAMES = {151: "Figure 6", 451: "Figure 7", 4510: "Figure 8"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}}
VERDICTS = (  # the first word of a verdict cell, and how the page marks it
    (re.compile(r"^(agrees|ok)\b", re.I), "good"),
    (re.compile(r"^(differs|miss)\b", re.I), "bad"),
    (re.compile(r"^(cannot|not reached)\b", re.I), "open"),
)


# --- the sample call's traces -----------------------------------------------------------------------


def write_sample_traces(out: Path, costs: Profile | None = None) -> list[Path]:
    """Chrome traces of one `gettid` on each kernel of SAMPLE_TRACES, into `out`.

    Each trace's `otherData.sample_call` holds where the measured call lies (from the
    program's inspection points), so the page can say where to look.
    """
    from ..system import System
    from .chrome_trace import US_PER_INSTRUCTION, build_trace

    written = []
    for kernel, cpus, name in SAMPLE_TRACES:
        sim = System(kernel=kernel, cpus=cpus, seed=0, trace=True, costs=costs)
        proc = sim.spawn("gettid", ["gettid", "1"])
        sim.run()
        if proc.exit_status != 0:
            raise RuntimeError(f"the sample gettid failed on {kernel}: {sim.console(proc.pid)!r}")
        trace = build_trace(sim)
        # inspection points: two to calibrate, then one before and one after the call
        inspects = [m for m in sim.machine.tracer.marks if m.name == "inspect"]
        start, end = inspects[2].time + (inspects[1].time - inspects[0].time), inspects[3].time
        trace["otherData"]["sample_call"] = {
            "kernel": kernel,
            "cpus": cpus,
            "call": "gettid",
            "from_us": round(start * US_PER_INSTRUCTION, 4),
            "to_us": round(end * US_PER_INSTRUCTION, 4),
            "instructions": end - start,
            "command": f"apkern run gettid 1 --kernel {kernel} --cpus {cpus} --trace {name}",
        }
        path = out / name
        path.write_text(json.dumps(trace))
        written.append(path)
    return written


def _sample_traces(out: Path) -> list[dict[str, Any]]:
    """The sample traces present beside the page, with what their `otherData` says of the call."""
    found = []
    for kernel, cpus, name in SAMPLE_TRACES:
        path = out / name
        if not path.exists():
            continue
        other = json.loads(path.read_text()).get("otherData", {})
        call = other.get("sample_call") or {"kernel": kernel, "cpus": cpus, "call": "gettid"}
        found.append({"file": name, "size_kb": max(1, path.stat().st_size // 1024), **call})
    return found


# --- figures ----------------------------------------------------------------------------------------


def _hover(lines: list[str]) -> str:
    return "<br>".join(lines)


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _line(x: list[int], y: list[float], name: str, text: list[str], **style: Any) -> go.Scatter:
    return go.Scatter(
        x=x, y=y, name=name, text=text, mode="lines+markers", hovertemplate="%{text}<extra></extra>", **style
    )


def throughput_figure(summary: dict[str, Any], k: int) -> go.Figure | None:
    """Figure 6, 7 or 8 for call length k: speedup (top) and bootstrap load (bottom) against CPUs.

    A line per user share; the giant-lock SMP port's speedups (top) and lock-spin shares (bottom)
    dashed in the same colour, as in the PNG figures. Saturated points are diamonds.
    """
    rows = [r for r in summary["throughput"] if r["syscall_instr"] == k]
    if not rows:
        return None
    smp = [r for r in (summary.get("smp") or {}).get("throughput", []) if r["syscall_instr"] == k]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.06)
    palette = qualitative.Plotly
    for i, p in enumerate(sorted({r["user_pct"] for r in rows})):
        colour, group = palette[i % len(palette)], f"{p:g}%"
        head = f"<b>apkern, K={k}, {p:g}% user</b>"
        pts = sorted((r for r in rows if r["user_pct"] == p), key=lambda r: r["cpus"])
        fig.add_trace(
            _line(
                [r["cpus"] for r in pts],
                [r["speedup"] for r in pts],
                f"{p:g}% user",
                [
                    _hover(
                        [
                            head,
                            f"{r['cpus']} CPU{'s' if r['cpus'] > 1 else ''}: speedup {r['speedup']:.3f}",
                            f"bootstrap load {_num(r['bsp_load'])}",
                            f"{r['loops']} loops in the window" + (", saturated" if r["saturated"] else ""),
                        ]
                    )
                    for r in pts
                ],
                legendgroup=group,
                line={"color": colour},
                marker={"symbol": ["diamond" if r["saturated"] else "circle" for r in pts], "size": 8},
            ),
            row=1,
            col=1,
        )
        ak = [r for r in pts if r["cpus"] > 1 and r["bsp_load"] is not None]
        fig.add_trace(
            _line(
                [r["cpus"] for r in ak],
                [r["bsp_load"] for r in ak],
                f"{p:g}% load",
                [_hover([head, f"{r['cpus']} CPUs: bootstrap load {r['bsp_load']:.3f}"]) for r in ak],
                legendgroup=group,
                showlegend=False,
                line={"color": colour},
                marker={"symbol": ["diamond" if r["saturated"] else "circle" for r in ak], "size": 8},
            ),
            row=2,
            col=1,
        )
        port = sorted((r for r in smp if r["user_pct"] == p), key=lambda r: r["cpus"])
        if not port:
            continue
        head = f"<b>smp (giant lock), K={k}, {p:g}% user</b>"
        dashed = {"legendgroup": group, "line": {"color": colour, "dash": "dash", "width": 1}}
        dashed["marker"] = {"symbol": "x", "size": 7}
        fig.add_trace(
            _line(
                [1] + [r["cpus"] for r in port],
                [1.0] + [r["speedup"] for r in port],
                f"{p:g}% smp",
                [_hover([head, "1 CPU: the uniprocessor, speedup 1"])]
                + [
                    _hover(
                        [
                            head,
                            f"{r['cpus']} CPUs: speedup {r['speedup']:.3f} (apkern {r['apkern_speedup']:.3f})",
                            f"lock-spin share {r['lock_spin_share']:.3f}",
                            f"capacity bound {r['bound']:.2f}",
                        ]
                    )
                    for r in port
                ],
                **dashed,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            _line(
                [r["cpus"] for r in port],
                [r["lock_spin_share"] for r in port],
                f"{p:g}% smp spin",
                [_hover([head, f"{r['cpus']} CPUs: lock-spin share {r['lock_spin_share']:.3f}"]) for r in port],
                showlegend=False,
                **dashed,
            ),
            row=2,
            col=1,
        )
    plateau = (summary.get("saturation") or {}).get("plateau_load")
    if plateau is not None:  # where the saturated points' load settles, as observed
        fig.add_hline(
            y=plateau,
            line={"color": "grey", "dash": "dot", "width": 1},
            annotation_text="observed plateau",
            annotation_position="top left",
            row=2,
            col=1,
        )
    title = f"{FIGURE_NAMES.get(k, 'Figure')}: speedup and bootstrap load at {k}-instruction system calls"
    fig.update_layout(
        title={"text": title, "font": {"size": 15}},
        template="plotly_white",
        height=620,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"title": {"text": "user share" + (" (dashed: smp)" if smp else "")}},
        hovermode="closest",
    )
    fig.update_yaxes(title_text="speedup vs. uniprocessor", row=1, col=1)
    fig.update_yaxes(title_text="bootstrap load" + (" / lock spin" if smp else ""), range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="CPUs", dtick=1, row=2, col=1)
    fig.update_xaxes(dtick=1, row=1, col=1)
    return fig


def latency_figure(summary: dict[str, Any]) -> go.Figure | None:
    """The latency breakdown: one stacked bar per kernel and CPU count, a segment per stage."""
    rows = summary.get("latency") or []
    if not rows:
        return None
    labels = [f"{r['kernel']}, {r['cpus']} CPU{'s' if r['cpus'] > 1 else ''}" for r in rows]
    stages: list[str] = []
    for r in rows:
        stages += [s for s in r["breakdown"] if s not in stages]
    fig = go.Figure()
    for s in stages:
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[r["breakdown"].get(s, 0.0) for r in rows],
                name=s,
                orientation="h",
                hovertemplate=f"<b>{html.escape(s)}</b><br>%{{y}}: %{{x:.1f}} instructions<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        title={"text": "Latency of one gettid, by stage (instructions)", "font": {"size": 15}},
        template="plotly_white",
        height=250 + 32 * len(rows),
        margin={"l": 120, "r": 20, "t": 60, "b": 150},
        xaxis_title="instructions per call",
        yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "traceorder": "normal"},
    )
    return fig


def extensions_figure(summary: dict[str, Any]) -> go.Figure | None:
    """Section 4.3's extensions, off and on (the rows that are speedups), as `fig_extensions.png`."""
    ext = summary.get("extensions") or {}
    rows = [r for r in ext.get("rows", []) if r["measure"].endswith("speedup") or "speedup over" in r["measure"]]
    if not rows:
        return None
    labels = [r["extension"] + ": " + re.sub(r" \[.*?\]", "", r["measure"]).split(":")[0] for r in rows]
    fig = go.Figure()
    for state in ("off", "on"):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[r[state] for r in rows],
                name=state,
                orientation="h",
                customdata=[[r["note"]] for r in rows],
                hovertemplate=f"<b>%{{y}}</b>, {state}<br>speedup %{{x}}<br>%{{customdata[0]}}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        title={"text": "Section 4.3 extensions, off and on", "font": {"size": 15}},
        template="plotly_white",
        height=140 + 40 * len(rows),
        margin={"l": 20, "r": 20, "t": 60, "b": 40},
        xaxis_title="speedup over the uniprocessor kernel",
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return fig


def sensitivity_figure(summary: dict[str, Any]) -> go.Figure | None:
    """The tornado figure of the sensitivity analysis (the overhead panel), as `fig_sensitivity.png`."""
    from .plots import tornado_rows

    sens = summary.get("sensitivity")
    if not sens or not sens["effects"]:
        return None
    rows = tornado_rows(sens)
    labels = [f"{r['key']} ({r['value']})" for r in rows]
    fig = go.Figure()
    for i, (factor, colour) in enumerate((("x0.5", "#1f77b4"), ("x2", "#d62728"))):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[r["overhead"][i] for r in rows],
                name=f"cost {factor}",
                orientation="h",
                marker_color=colour,
                customdata=[[r["forwarded_gettid"][i], r["speedup"][i]] for r in rows],
                hovertemplate=f"<b>%{{y}}</b> {factor}<br>overhead %{{x:+.1f}}<br>forwarded gettid "
                "%{customdata[0]:+.1f}<br>speedup %{customdata[1]:+.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="overlay",
        title={
            "text": f"Overhead per forwarded call: each cost halved and doubled (baseline "
            f"{sens['base']['overhead']:.0f})",
            "font": {"size": 15},
        },
        template="plotly_white",
        height=140 + 30 * len(rows),
        margin={"l": 20, "r": 20, "t": 60, "b": 40},
        xaxis_title="change of the overhead (instructions)",
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return fig


def figures(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of the page: {id, html, png}, where png is the static figure it matches (or None)."""
    made: list[tuple[str, go.Figure | None, str | None]] = [
        (Path(png).stem, throughput_figure(summary, k), png) for k, png in FIGURES.items()
    ]
    made += [("fig-latency", latency_figure(summary), None)]
    made += [("fig-extensions", extensions_figure(summary), "fig_extensions.png")]
    made += [("fig-sensitivity", sensitivity_figure(summary), "fig_sensitivity.png")]
    return [
        {
            "id": div,
            "html": Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div, config=PLOT_CONFIG)),
            "png": png,
        }
        for div, fig, png in made
        if fig is not None
    ]


# --- the markdown, as HTML --------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def markdown_sections(text: str, out: Path | None = None) -> tuple[str, list[dict[str, Any]]]:
    """report.md as (title, [{id, title, html}]), one section per `##` heading.

    Verdict cells get a class by their first word (agrees/ok, differs/MISS, cannot), and
    code spans naming a file beside the page become links to it.
    """
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    title = ""
    sections: list[dict[str, Any]] = [{"id": "overview", "title": "Overview", "text": "Overview", "tokens": []}]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open" and tok.tag in ("h1", "h2"):
            heading = tokens[i + 1].content
            if tok.tag == "h1" and not title:
                title = heading
            else:
                rendered = Markup(md.renderInline(heading))
                sections.append({"id": _slug(heading), "title": rendered, "text": rendered.striptags(), "tokens": []})
            i += 3
            continue
        sections[-1]["tokens"].append(tok)
        i += 1
    out_sections = []
    for s in sections:
        if s["id"] == "overview" and not s["tokens"]:
            continue
        body = md.renderer.render(s["tokens"], md.options, {})
        out_sections.append({**{k: s[k] for k in ("id", "title", "text")}, "html": Markup(_decorate(body, out))})
    return title, out_sections


def _decorate(body: str, out: Path | None) -> str:
    def cell(m: re.Match[str]) -> str:
        text = m.group(2)
        plain = re.sub(r"<[^>]+>", "", text).strip()
        for pattern, cls in VERDICTS:
            if pattern.match(plain):
                return f'<td{m.group(1)} class="verdict {cls}">{text}</td>'
        return m.group(0)

    body = re.sub(r"<td([^>]*)>(.*?)</td>", cell, body, flags=re.S)

    def link(m: re.Match[str]) -> str:
        name = html.unescape(m.group(1))
        if out is not None and re.fullmatch(r"[\w.-]+\.(png|csv|json|md)", name) and (out / name).exists():
            return f'<a href="{html.escape(name)}"><code>{m.group(1)}</code></a>'
        return m.group(0)

    return re.sub(r"<code>([^<]+)</code>", link, body)


# --- the page ---------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg: #1d2330; --muted: #5b6474; --line: #d9dee7; --accent: #2457a6; }
  body { margin: 0; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         background: #f6f7f9; }
  header { background: #1d2a44; color: #fff; padding: 1.4em 2em 1.2em; }
  header h1 { margin: 0 0 .3em; font-size: 1.6em; }
  header p { margin: 0; color: #c9d3e6; }
  header code { background: #34425f; color: #fff; }
  nav { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid var(--line);
        padding: .5em 2em; font-size: .9em; display: flex; flex-wrap: wrap; gap: .2em 1.1em; }
  nav a { color: var(--accent); text-decoration: none; }
  nav a:hover { text-decoration: underline; }
  main { max-width: 1200px; margin: 0 auto; padding: 1em 2em 3em; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6em 1.6em 1.2em;
            margin: 1.2em 0; scroll-margin-top: 110px; }
  h2 { font-size: 1.25em; border-bottom: 1px solid var(--line); padding-bottom: .3em; }
  .table-wrap { overflow-x: auto; }
  table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
  th, td { border: 1px solid var(--line); padding: .35em .6em; vertical-align: top; text-align: left; }
  th { background: #eef1f6; }
  tr:nth-child(even) td { background: #fafbfc; }
  td.verdict { font-weight: 600; }
  td.verdict.good { background: #e3f4e6 !important; color: #17602a; }
  td.verdict.bad { background: #fbe7e4 !important; color: #8a2518; }
  td.verdict.open { background: #fdf4dc !important; color: #7a5a00; }
  code { background: #f0f2f6; padding: .05em .3em; border-radius: 3px; font-size: .92em; }
  .figure { margin: 1em 0 1.6em; }
  .figure .note, .muted { color: var(--muted); font-size: .88em; }
  .plot { min-height: 200px; }
  ul.traces li { margin: .5em 0; }
  footer { color: var(--muted); font-size: .85em; text-align: center; padding: 1em; }
</style>
<script>{{ plotlyjs }}</script>
</head>
<body>
<header>
  <h1>{{ title }}</h1>
  <p>Made by <code>apkern reproduce</code> from <a href="summary.json" style="color:#fff">summary.json</a>;
     the same text as <a href="report.md" style="color:#fff">report.md</a>, with interactive figures.</p>
</header>
<nav>
  {% for s in sections[:1] %}<a href="#{{ s.id }}">{{ s.text }}</a>{% endfor %}
  {% if figures %}<a href="#figures">Figures</a>{% endif %}
  {% if traces %}<a href="#traces">Traces of one call</a>{% endif %}
  {% for s in sections[1:] %}<a href="#{{ s.id }}">{{ s.text }}</a>{% endfor %}
</nav>
<main>
{% for s in sections %}
<section id="{{ s.id }}">
  {% if s.id != "overview" %}<h2>{{ s.title }}</h2>{% endif %}
  <div class="table-wrap">{{ s.html }}</div>
</section>
{% if loop.index == insert_after %}
{% if figures %}
<section id="figures">
  <h2>Figures</h2>
  <p class="muted">Hover a point to read it; click a legend entry to hide its curve, double-click to show it
  alone; drag to zoom, double-click the plot to zoom back. Diamonds mark saturated points.</p>
  {% for f in figures %}
  <div class="figure">
    <div class="plot">{{ f.html }}</div>
    {% if f.png %}<div class="note">Static version: <a href="{{ f.png }}">{{ f.png }}</a></div>{% endif %}
  </div>
  {% endfor %}
</section>
{% endif %}
{% if traces %}
<section id="traces">
  <h2>Traces of one call</h2>
  <p>A single <code>gettid</code>, traced instruction by instruction on every CPU (Chrome trace-event JSON):</p>
  <ul class="traces">
  {% for t in traces %}
    <li><a href="{{ t.file }}" download><code>{{ t.file }}</code></a> ({{ t.size_kb }} KB):
      <b>{{ t.kernel }}</b> on {{ t.cpus }} CPU{{ "s" if t.cpus > 1 else "" }}
      {% if t.instructions is defined %}&mdash; the measured call runs from {{ t.from_us }} &micro;s to
      {{ t.to_us }} &micro;s ({{ t.instructions }} instructions){% endif %}.
      {% if t.command is defined %}<br>
      <span class="muted">Made again with <code>{{ t.command }}</code>.</span>{% endif %}
    </li>
  {% endfor %}
  </ul>
  <p><b>Opening a trace:</b> go to <a href="https://ui.perfetto.dev" target="_blank" rel="noopener">ui.perfetto.dev</a>,
  choose <i>Open trace file</i> and pick the file (Perfetto reads it in the browser; it is not uploaded).
  <code>chrome://tracing</code> in Chromium opens it too. Browsers do not let a page hand a local file to
  another site, so the link above downloads the file rather than opening Perfetto with it.</p>
  <p class="muted">One track per CPU with user, kernel, spin and idle slices; instant marks for the kernels' trace
  points; and on the application kernel a flow arrow per forwarded call: the trap on the application
  processor, the bootstrap thread's re-issue and the activation on the bootstrap processor, the resume.
  Timestamps are microseconds at the nominal 100 MIPS (one instruction is 0.01 &micro;s).</p>
</section>
{% endif %}
{% endif %}
{% endfor %}
</main>
<footer>apkern: the application kernel approach, simulated. Time is counted in instructions.</footer>
</body>
</html>
"""


def render_html(summary: dict[str, Any], out: Path | None = None) -> str:
    """The page for `summary`; `out` is the folder it goes into (for links to the files there)."""
    title, sections = markdown_sections(report_markdown(summary), out)
    title = re.sub(r"`([^`]*)`", r"\1", title)
    env = Environment(autoescape=True, keep_trailing_newline=True)
    return env.from_string(PAGE).render(
        title=title or "apkern report",
        sections=sections,
        insert_after=min(2, len(sections)),  # after the overview and the statements-and-verdicts table
        figures=figures(summary),
        traces=_sample_traces(out) if out is not None else [],
        plotlyjs=Markup(get_plotlyjs()),
    )


def write_html(summary: dict[str, Any], path: Path) -> Path:
    """Write report.html for `summary` at `path` (links point at the files beside it)."""
    path = Path(path)
    path.write_text(render_html(summary, path.parent), encoding="utf-8")
    return path
