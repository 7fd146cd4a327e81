"""report.html: written beside report.md by `write_outputs`, from the same summary, and opened in Chromium.

The summary here is a real one made small: the reproduce code's own tasks and analysis on
one user share, one to three CPUs and short windows (seconds, not the quick grid's minutes).
The quick grid's report.html is opened too, in test_exp_reproduce.py.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from browserkit import ink, visit

from apkern.experiments import reproduce as rp
from apkern.experiments.html_report import SAMPLE_TRACES, markdown_sections, render_html
from apkern.experiments.report import report_markdown

PS = (95.0,)
FIRST_CURVE = "#fig6 .subplot.xy .scatterlayer .trace:first-of-type .point"  # the top plot: apkern speedups
CPUS = (1, 2, 3)


def small_summary() -> dict:
    tasks = [("latency", ("up", 1, 20, 0), 1.0), ("latency", ("apkern", 2, 20, 0), 1.0)]
    for k in rp.KS:
        for p in PS:
            for n in CPUS:
                warmup, window = rp.QUICK.warmup(k, p, n) // 4, rp.QUICK.window(k, p, n) // 4
                tasks += [("point", (k, p, n, warmup, window, s, s == 0, 0), 1.0) for s in range(2 if n <= 2 else 1)]
                if n > 1:
                    tasks.append(("smp_point", (k, p, n, warmup, window, 0, 0), 1.0))
    summary = rp.analyse(rp.run_tasks(tasks, jobs=1))
    summary["config"] = {
        "precision": "test",
        "jobs": 1,
        "seed": 0,
        "ks": rp.KS,
        "ps": PS,
        "cpus": CPUS,
        "procs": rp.throughput.DEFAULT_PROCS,
        "noise_seeds": rp.NOISE_SEEDS,
        "agreement": rp.AGREEMENT,
    }
    summary["wall_seconds"] = 0.0
    return summary


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    summary = small_summary()
    rp.write_outputs(out, summary)
    return out, summary


def test_the_page_is_report_md_with_figures_and_traces(report) -> None:
    out, summary = report
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert md == report_markdown(summary)
    # every section and every table cell of report.md is on the page: one text, rendered twice
    for heading in re.findall(r"^## (.*)$", md, re.M):
        rendered = re.sub(r"`([^`]*)`", r"<code>\1</code>", heading)
        assert f">{rendered}</h2>" in page, heading
    cells = {c.strip() for line in md.splitlines() if line.startswith("| ") for c in line.strip("|").split(" | ")}
    for cell in cells - {"", "---"}:
        if not re.search(r"[`*_]", cell):  # plain text: on the page as it is, HTML-escaped
            assert html.escape(cell, quote=False).replace('"', "&quot;") in page, cell
    # the verdicts are marked by their first word
    assert re.search(r'<td class="verdict (good|bad|open)">', page)
    # a figure per call length and the latency breakdown, drawn by the embedded Plotly
    for div in ("fig6", "fig7", "fig8", "fig-latency"):
        assert f'id="{div}"' in page
    assert not re.search(r"<script[^>]+src=", page), "every script is inside the page"
    assert not re.search(r"<link[^>]+href=\"http", page), "every style is inside the page"
    # links to the sample traces, with the note on Perfetto, and to the files beside the page
    for _, _, name in SAMPLE_TRACES:
        assert f'href="{name}"' in page
    assert "ui.perfetto.dev" in page and "Open trace file" in page
    assert '<a href="fig6.png"><code>fig6.png</code></a>' in page


def test_the_sample_traces_show_one_forwarded_gettid(report) -> None:
    out, _ = report
    traces = {kernel: json.loads((out / name).read_text()) for kernel, _, name in SAMPLE_TRACES}
    ak, up = traces["apkern"], traces["up"]
    call = ak["otherData"]["sample_call"]
    assert call["call"] == "gettid" and call["cpus"] == 2
    assert up["otherData"]["sample_call"]["instructions"] < call["instructions"]
    # the measured call is a forwarded one: a flow from the AP's trap to its resume lies inside it
    flows = [e for e in ak["traceEvents"] if e.get("cat") == "forward"]
    starts = {e["id"]: e["ts"] for e in flows if e["ph"] == "s"}
    ends = {e["id"]: e["ts"] for e in flows if e["ph"] == "f"}
    inside = [i for i in starts if i in ends and call["from_us"] <= starts[i] and ends[i] <= call["to_us"]]
    assert len(inside) == 1
    assert not [e for e in up["traceEvents"] if e.get("cat") == "forward"]


def test_the_page_renders_without_the_run_folder(report) -> None:
    _, summary = report
    page = render_html(summary)  # no folder: no file links, no traces section, the same text
    assert "Traces of one call" not in page and 'id="fig6"' in page
    title, sections = markdown_sections(report_markdown(summary))
    assert title.startswith("apkern") and sections[0]["id"] == "overview"


def test_report_html_in_chromium(report, tmp_path) -> None:
    out, _ = report
    v = visit(out / "report.html", tmp_path / "report.png", hover=FIRST_CURVE)
    assert v.errors == []
    assert [u for u in v.requests if not u.startswith(("file:", "data:"))] == [], "nothing from the network"
    assert v.plots == 4  # Figures 6-8 and the latency breakdown
    assert "speedup" in v.hover and "K=151" in v.hover
    dark, spread = ink(v.screenshot)
    assert dark > 0.02 and spread > 15, f"the page looks blank: {dark:.3f} not white, grey spread {spread:.1f}"
