"""Real-browser fixtures: the live app (`scripts/serve.py`, as `scripts/run.sh` starts
it) on a fresh workspace, and Chromium driven by Playwright.

Chromium comes from the system (Debian's `chromium` package; `.ci/run` installs it).
Without it these tests skip on a developer's machine, but under CI=true they fail:
browser tests must never be skipped silently in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.live import CHROMIUM_FLAGS, CHROMIUM_MISSING, REPO, LiveServer, chromium_executable

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = chromium_executable()
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CHROMIUM_MISSING} Browser tests must run in CI.")
        pytest.skip(CHROMIUM_MISSING)
    return path


class LiveApp(LiveServer):
    """The app's server as ``scripts/run.sh`` starts it, with its own CNNLAB_HOME,
    answering once constructed."""

    def __init__(self, home):
        super().__init__(home, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if self.wait_healthy(timeout=60) is None:
            raise RuntimeError(f"streamlit did not start; log: {self.log_text()}")


@pytest.fixture
def live_app(tmp_path, chromium_path):
    home = tmp_path / "cnnlab-home"
    home.mkdir()
    app = LiveApp(home)
    yield app
    app.stop()


@pytest.fixture
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


STREAMLIT_PROBES = ("/_stcore/health", "/_stcore/host-config")


class PageWatch:
    """Collects browser console errors and page errors so a test can fail on them."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message) -> None:
        url = message.location.get("url", "")
        # Opening a page by its URL (e.g. /train), Streamlit's front end first probes
        # /train/_stcore/health and /train/_stcore/host-config to find the server's
        # base path; those 404s are part of its normal start-up, not an app error.
        if url.endswith(STREAMLIT_PROBES) and "404" in message.text:
            return
        if message.type == "error":
            self.errors.append(f"{message.text} ({url})")

    def forgive_stale_media(self, since: int) -> None:
        """Drop image 404s logged since error number ``since``: leaving a page, Streamlit
        releases its images while the browser may still be fetching the old page's last
        ones (``/media/...`` then 404s). Used around a page switch only; a broken image
        anywhere else still fails the test."""
        self.errors[since:] = [error for error in self.errors[since:] if "/media/" not in error]

    def assert_clean(self) -> None:
        page = self.page
        assert page.locator("[data-testid='stException']").count() == 0, page.locator(
            "[data-testid='stException']"
        ).first.inner_text()
        assert "Traceback (most recent call last)" not in page.content()
        assert not self.errors, f"browser console errors: {self.errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_report = report


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = PageWatch(page)
    page.watch = watch
    yield page
    report = getattr(request.node, "call_report", None)
    if report is not None and report.failed:
        screenshot(page, f"failed-{request.node.name}")
    context.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has drawn the page and finished the current script run.

    Every page starts with a title, so an ``h1`` means the first run has drawn; the
    status widget ("Running...") must then stay away for half a second.
    """
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout)
    page.wait_for_function(
        """() => {
            const busy = document.querySelector('[data-testid="stStatusWidget"]');
            const now = Date.now();
            if (busy) { window.__cnnlabIdleSince = null; return false; }
            window.__cnnlabIdleSince = window.__cnnlabIdleSince || now;
            return now - window.__cnnlabIdleSince > 500;
        }""",
        timeout=timeout,
        polling=100,
    )


# Pixel centre of a plotly heatmap cell, from plotly's own axes (category -> pixel).
CELL_CENTRE_JS = """([pred, truth]) => {
    const plot = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
    const layout = plot._fullLayout;
    const box = plot.getBoundingClientRect();
    const x = layout.xaxis._offset + layout.xaxis.c2p(layout.xaxis.d2c(pred));
    const y = layout.yaxis._offset + layout.yaxis.c2p(layout.yaxis.d2c(truth));
    return [box.left + x, box.top + y];
}"""


def click_heatmap_cell(page, truth: str, pred: str) -> None:
    """Click the confusion-matrix cell (true ``truth``, predicted ``pred``)."""
    page.locator("[data-testid='stPlotlyChart'] .js-plotly-plot").first.wait_for()
    x, y = page.evaluate(CELL_CENTRE_JS, [pred, truth])
    page.mouse.move(x, y)
    page.mouse.click(x, y)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
