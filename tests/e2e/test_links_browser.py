"""In a real browser: a link straight to a page, opened first on a fresh server (a
Predict link shared for a demo), gets the app's own navigation, sidebar and gate."""

from __future__ import annotations

import pytest

from tests.conftest import make_dataset_on_disk
from tests.e2e.conftest import wait_idle

pytestmark = pytest.mark.browser


def test_a_link_to_a_page_is_the_first_visit_and_still_goes_through_the_app(
    live_app, page, monkeypatch
):
    monkeypatch.setenv("CNNLAB_HOME", str(live_app.home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))

    page.goto(f"{live_app.url}/train")  # nobody has opened the root URL yet
    wait_idle(page)
    page.get_by_role("heading", name="Train").wait_for()
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("cnnlab", exact=True).wait_for()  # app.py's sidebar
    links = sidebar.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
    assert links == [
        "Data", "Architecture", "Train", "Evaluate", "Predict", "Experiments", "Tune"
    ]  # fmt: skip
    assert page.get_by_text("No dataset chosen").count() == 0  # the sidebar chose tiny
    page.watch.assert_clean()


def test_a_link_to_a_page_on_a_protected_fresh_server_meets_the_viewer_gate(
    tmp_path, page, monkeypatch
):
    """With a viewer password, a link to Predict opened first shows the sign-in, not the
    page (before the fix it ran the page alone, without the gate in app.py)."""
    from tests.e2e.conftest import LiveApp

    home = tmp_path / "cnnlab-home"
    home.mkdir()
    monkeypatch.setenv("CNNLAB_EDITOR_PASSWORD", "an editor secret")
    monkeypatch.setenv("CNNLAB_VIEWER_PASSWORD", "a viewer secret")
    app = LiveApp(home)
    try:
        page.goto(f"{app.url}/predict")
        wait_idle(page)
        page.get_by_text("This cnnlab asks for a password. Sign in to view it.").wait_for()
        assert page.get_by_text("Drop one or more images").count() == 0
        page.watch.assert_clean()
    finally:
        app.stop()
