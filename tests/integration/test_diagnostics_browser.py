"""The diagnostics page in a real browser: headless Chromium, through real nginx (stock
fastcgi_params, at /), from a real fcgigw with no APP. At a desktop width (1280 px) and a
phone's (390 px) the page must not scroll sideways, and every link must go somewhere: an
anchor on the page or an absolute URL. A screenshot of the whole page at each width goes to
artifacts/ (which CI keeps) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, chromium_binary
from servers import REPO, RunningProcess, nginx_binary, run_fcgigw, run_nginx

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "artifacts"
#: Long values without a break (a path segment, a query string): the tables must wrap them.
PAGE_PATH = "/diagnostics/" + "a-long-path-segment-without-a-break" * 6 + "?q=" + "x" * 240
VIEWPORT_HEIGHT = 900

#: What the test needs to know of a page, measured in the browser.
MEASURE = """({
  title: document.title,
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  innerWidth: window.innerWidth,
  hrefs: Array.from(document.querySelectorAll("a[href]"), a => a.getAttribute("href")),
  ids: Array.from(document.querySelectorAll("[id]"), element => element.id),
})"""


@pytest.fixture(scope="module")
def site() -> Iterator[RunningProcess]:
    """nginx in front of fcgigw serving the diagnostics page."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    with run_fcgigw() as fcgigw, run_nginx(fcgigw.address) as nginx:
        yield nginx


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    with Browser(binary, tmp_path / "profile") as running:
        yield running


def measure(browser: Browser, url: str, width: int) -> dict[str, Any]:
    browser.open(url, width, VIEWPORT_HEIGHT, mobile=width < 600)
    measured: dict[str, Any] = browser.evaluate(MEASURE)
    return measured


def test_the_measurement_sees_a_page_wider_than_the_window(browser: Browser) -> None:
    """Positive control: the same measurement flags a page that scrolls sideways."""
    wide = measure(browser, "data:text/html,<p style='width:3000px'>wide</p>", 390)
    assert wide["scrollWidth"] > wide["clientWidth"]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_the_window_and_its_links_go_somewhere(
    site: RunningProcess, browser: Browser, width: int
) -> None:
    page = measure(browser, f"http://{site.address}{PAGE_PATH}", width)
    assert page["title"] == "fcgigw diagnostics"  # through nginx, not an error page
    assert page["innerWidth"] == width  # at a phone's width too (the viewport meta tag)
    assert page["scrollWidth"] <= page["clientWidth"], page
    assert len(page["hrefs"]) > 4
    for href in page["hrefs"]:
        if href.startswith("#"):
            assert href[1:] in page["ids"], href
        else:
            assert href == "data:," or href.startswith(("https://", "http://")), href

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"diagnostics-{width}px.png"
    screenshot.write_bytes(browser.screenshot())
    assert screenshot.read_bytes().startswith(b"\x89PNG")
