"""Open a page in headless Chromium (Debian's `chromium`, driven by Playwright) the way a person would.

The browser is the system's: Playwright's own browser builds are never downloaded. Without
chromium (or the playwright package) the tests that need it are skipped with the reason,
except in CI (`CI` set), where `.ci/run` installs chromium and its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The chromium executable, or skip (fail in CI) with the reason."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    missing = None
    if path is None:
        missing = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must run the browser test")
        pytest.skip(missing)
    return path


@dataclass
class Visit:
    screenshot: Path
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    plots: int = 0  # Plotly figures drawn
    hover: str = ""  # the hover label shown over the `hover` point


def visit(page_path: Path, screenshot: Path, hover: str | None = None) -> Visit:
    """Load the page, wait for its figures, screenshot it whole, and hover the last point `hover` selects."""
    from playwright.sync_api import sync_playwright

    exe = chromium()
    v = Visit(screenshot=screenshot)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: v.errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: v.errors.append(f"page error: {e}"))
            page.on("request", lambda r: v.requests.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))",
                timeout=30_000,
            )
            v.plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
            page.screenshot(path=str(screenshot), full_page=True)
            if hover:
                point = page.locator(hover).last
                point.evaluate("e => e.scrollIntoView({block: 'center'})")
                box = point.bounding_box()
                assert box is not None, f"no point to hover: {hover}"
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                label = page.locator(".hoverlayer .hovertext")
                label.first.wait_for(timeout=5_000)
                v.hover = " ".join(t or "" for t in label.all_text_contents())
        finally:
            browser.close()
    return v


def ink(screenshot: Path) -> tuple[float, float]:
    """(share of pixels that are not near-white, standard deviation of the grey levels) of a screenshot."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    return float((grey < 235).mean()), float(grey.std())
