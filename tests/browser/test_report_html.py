"""report.html in a real headless browser (Debian's chromium): no console error, nothing fetched
from anywhere, the charts drawn, readable on a phone, printable. Screenshots and a PDF go to
test-artifacts/ (git-ignored).

CI runs this through `make browser-test`, which installs chromium first; elsewhere, without
chromium, it is skipped with the command that runs it (in CI, or with REQUIRE_BROWSER=1, a
missing chromium fails the test instead).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.browser.cdp import Browser, chromium_path
from tests.integration.test_report import build
from tests.report_world import build_week, chatwoot_week, put_metrics
from tests.support import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHARTS = ["chart-sla", "chart-escalations", "chart-volume", "chart-drafts"]


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("chromium is required here: `make browser-test` installs Debian's chromium")
        pytest.skip(
            "Debian's chromium is not installed: `make browser-test` installs it and runs this "
            "test (CI does)"
        )
    opened = Browser(executable)
    try:
        yield opened
    finally:
        opened.close()


def page(tmp_path: Path, html: bytes) -> str:
    path = tmp_path / "report.html"
    path.write_bytes(html)
    return path.as_uri()


def test_the_weeks_report_renders_cleanly_with_its_charts(browser, pipeline, chatwoot, tmp_path):
    build_week(pipeline)
    chatwoot_week(chatwoot)
    put_metrics(boto3.client("cloudwatch", region_name="us-east-1"))
    report = build(pipeline, chatwoot=chatwoot)
    url = page(tmp_path, report.files()["report.html"])
    browser.open(url)

    assert browser.problems() == []
    assert browser.requests() == [url]  # self-contained: the page itself, nothing else
    assert browser.evaluate("[...document.querySelectorAll('svg.chart')].map(s => s.id)") == CHARTS
    sizes = browser.evaluate(
        "[...document.querySelectorAll('svg.chart')].map(s => {"
        "const r = s.getBoundingClientRect(); return [r.width, r.height]})"
    )
    assert all(width > 300 and height > 60 for width, height in sizes), sizes
    assert browser.evaluate("document.querySelectorAll('#chart-sla rect.bar').length") == 5
    assert browser.evaluate("document.querySelectorAll('#chart-sla line.target').length") == 1
    assert browser.evaluate("document.querySelectorAll('#chart-volume polyline').length") == 4
    assert browser.evaluate("document.querySelectorAll('td.miss').length") >= 5
    assert "misses target" in browser.evaluate("document.body.innerText")
    browser.screenshot(ARTIFACTS / "report.png", width=1000)

    # A phone: the page itself never scrolls sideways (wide tables scroll in their own box).
    browser.screenshot(ARTIFACTS / "report-phone.png", width=390, mobile=True)
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390
    assert (
        browser.evaluate(
            "Math.max(...[...document.querySelectorAll('svg.chart')]"
            ".map(s => s.getBoundingClientRect().right))"
        )
        <= 390
    )

    # Printing: navigation hidden, tables not split, a PDF comes out.
    browser.call("Emulation.setEmulatedMedia", media="print")
    assert browser.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
    assert browser.evaluate("getComputedStyle(document.querySelector('table')).breakInside") in (
        "avoid",
        "avoid-page",
    )
    pdf = browser.call("Page.printToPDF", printBackground=False)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.pdf").write_bytes(base64.b64decode(pdf["data"]))
    assert (ARTIFACTS / "report.pdf").read_bytes().startswith(b"%PDF")
    assert browser.problems() == []


def test_an_empty_weeks_report_renders_cleanly_and_says_so(browser, pipeline, tmp_path):
    report = build(pipeline, week="2026-W41")
    browser.open(page(tmp_path, report.files()["report.html"]))
    assert browser.problems() == []
    text = browser.evaluate("document.body.innerText")
    assert "Nothing was recorded in this period" in text and "no data" in text
    assert "100.0 %" not in text
    charts = browser.evaluate("[...document.querySelectorAll('svg.chart')].map(s => s.id)")
    assert charts == ["chart-sla", "chart-volume"]  # nothing to draw for escalations or drafts
    assert browser.evaluate("document.querySelectorAll('#chart-sla rect.bar').length") == 0
    browser.screenshot(ARTIFACTS / "report-empty.png", width=1000)


def test_the_checks_do_see_errors_and_fetches(browser, tmp_path):
    """The detector itself: an external image and a script error are both caught."""
    html = (
        b'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        b'<img src="http://127.0.0.1:9/missing.png"><script>console.error("boom");'
        b"undefinedFunction();</script></body></html>"
    )
    url = page(tmp_path, html)
    browser.open(url)
    problems = " ".join(browser.problems())
    assert "boom" in problems and "undefinedFunction" in problems
    assert "http://127.0.0.1:9/missing.png" in browser.requests()
