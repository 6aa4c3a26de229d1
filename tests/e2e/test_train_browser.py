"""In a real browser: the Train page while a run trains. The browser updates the run's
bars and numbers itself every second, and the page's parts redraw on their own timers
(Streamlit fragments: the panel every 10 s, the curves and the queue every 30 s), none
of which AppTest runs. Picking another run in the list must still show that run's
panel, and not the live one's."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import make_dataset_on_disk
from tests.e2e.conftest import wait_idle
from tests.runs_fixture import prepared_run

pytestmark = pytest.mark.browser


def test_picking_another_run_while_one_trains_shows_that_run(live_app, page, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(live_app.home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))
    older = prepared_run("tiny")
    live = prepared_run("tiny", status="running", epochs_done=1)  # its worker: this process

    page.goto(f"{live_app.url}/train")
    wait_idle(page)
    page.get_by_text(f"{live} · running").wait_for()  # a new session shows the live run
    page.get_by_text("Batch 2 of 4 (epoch 2)").wait_for()
    # The sidebar redraws the page once the device is known: pick after that.
    page.locator("[data-testid='stSidebar']").get_by_text("Device: CPU").wait_for()
    wait_idle(page)

    option = page.get_by_role("option", name=f"{older} (completed)")
    for _ in range(3):  # a redraw of the page can close the list as it opens: open again
        page.get_by_label("Watch a run").click()
        try:
            option.wait_for(timeout=5_000)
            option.click()
            break
        except PlaywrightTimeout:
            continue
    page.get_by_text(f"{older} · completed").wait_for(timeout=15_000)
    page.get_by_text("0.833").wait_for()  # the older run's test accuracy
    assert page.get_by_text(f"{live} · running").count() == 0
    page.watch.assert_clean()


def test_the_browser_updates_the_bars_between_redraws(live_app, page, monkeypatch):
    """The bars and numbers follow the run's progress every second, fetched by the
    browser from the server's route (cnnlab.live), while the page itself redraws only
    every 10 s; a link with a wrong token is refused."""
    from cnnlab import runs

    monkeypatch.setenv("CNNLAB_HOME", str(live_app.home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10}, splits=(6, 2, 2))
    run_id = prepared_run("tiny", status="running", epochs_done=1)

    page.goto(f"{live_app.url}/train")
    page.get_by_text("Batch 2 of 4 (epoch 2)").wait_for()
    wait_idle(page)
    batch = {"type": "batch", "epoch": 2, "epochs": 5, "batch": 3, "batches": 4}
    runs.append_event(runs.run_path(run_id), batch | {"images_per_s": 777.0, "eta_s": 20.0})
    page.get_by_text("Batch 3 of 4 (epoch 2)").wait_for(timeout=5_000)
    page.get_by_text("777").wait_for(timeout=2_000)
    newest = page.evaluate("() => window.cnnlabLive && window.cnnlabLive.newest")
    assert newest and newest["run_id"] == run_id and newest["batch"]["fraction"] == 0.75
    page.watch.assert_clean()

    refused = page.evaluate(  # the browser logs the 403 as an error: after the check
        "async (url) => (await fetch(url)).status",
        f"{live_app.url}/api/runs/{run_id}/progress?token=0",
    )
    assert refused == 403
