"""The whole journey a newcomer takes, in a real browser, on a fresh and empty workspace.

Data (load the digits sample, read the health report, reshuffle the augmentation
preview) -> Architecture (the `simple` preset and its analysis) -> Train (a short run,
watching progress; a refresh and a second browser show the same live run) -> Evaluate
(click a confusion-matrix cell, see its gallery) -> Predict (upload a digit: top-k chart,
Grad-CAM, feature maps) -> Experiments (compare two runs). It fails on any Streamlit
exception, traceback text or browser console error, and saves a screenshot of each page
(the README's screenshots come from here).
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.conftest import ARTIFACTS, click_heatmap_cell, screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def go_to(page, title: str) -> None:
    """Click a page in the sidebar, as a person would (and again if a rerun that was
    already under way, e.g. a live panel's final redraw, swallowed the click)."""
    heading = page.locator("[data-testid='stMain'] h1", has_text=title)
    errors_before = len(page.watch.errors)
    for _ in range(3):
        page.locator("[data-testid='stSidebarNav'] a", has_text=title).click()
        try:
            heading.wait_for(timeout=20_000)
            break
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError; try once more
            continue
    heading.wait_for()
    wait_idle(page)
    page.watch.forgive_stale_media(errors_before)


def shoot(page, name: str) -> None:
    page.watch.assert_clean()
    screenshot(page, name)


def train(page, epochs: int, before: tuple[str, ...] = ()) -> str:
    """Start a run of the auto recipe from the Train page; return the new run's id."""
    field = page.get_by_role("spinbutton", name="Epochs", exact=True)
    field.fill(str(epochs))
    field.press("Tab")
    page.get_by_role("button", name="Start training").click()
    pattern = re.compile(r"(\d{8}-\d{6}-\S+) · (queued|running|completed)")
    for _ in range(240):
        for text in page.get_by_text(pattern).all_inner_texts():
            run_id = pattern.search(text).group(1)
            if run_id not in before:
                return run_id
        page.wait_for_timeout(500)
    raise AssertionError("the new run never appeared on the Train page")


def wait_completed(page, run_id: str) -> None:
    page.get_by_text(re.compile(rf"{re.escape(run_id)} · completed")).first.wait_for(
        timeout=300_000
    )
    wait_idle(page)


def test_a_newcomers_journey(live_app, browser, page, tmp_path):
    # --- Data -------------------------------------------------------------------------
    page.goto(live_app.url)
    wait_idle(page)
    page.get_by_text("No dataset yet. Load a built-in sample").wait_for()
    page.get_by_role("button", name="Load sample").click()
    page.get_by_text("Added 1797 image(s) to").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_text("Images per class").first.wait_for()
    shoot(page, "1-data")
    page.get_by_role("tab", name="Augmentation").click()
    page.get_by_text("variant 1").first.wait_for()
    variant = page.get_by_role("tabpanel").locator("[data-testid='stImage'] img").nth(1)
    before = variant.get_attribute("src")
    page.get_by_role("button", name="Reseed").click()
    # Reseeding draws new variants: the first variant's image changes.
    for _ in range(60):
        if variant.get_attribute("src") != before:
            break
        page.wait_for_timeout(500)
    assert variant.get_attribute("src") != before, "reseeding should draw new variants"
    wait_idle(page)
    page.watch.assert_clean()

    # --- Architecture -----------------------------------------------------------------
    go_to(page, "Architecture")
    page.get_by_text("Parameters").first.wait_for()
    # `simple` at the digits' 32x32x1 input, 10 classes.
    page.get_by_text("Conv(32, 3x3)").first.wait_for()
    shoot(page, "2-architecture")

    # --- Train, watching; a refresh and a second browser see the same run ---------------
    go_to(page, "Train")
    run_id = train(page, epochs=6)
    page.get_by_text(re.compile(r"Epoch [1-9] of 6")).first.wait_for(timeout=180_000)
    page.reload()
    wait_idle(page)
    page.get_by_text(re.compile(rf"{re.escape(run_id)} · (running|completed)")).first.wait_for()
    second = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    second.goto(live_app.url)
    wait_idle(second)
    second.locator("[data-testid='stSidebarNav'] a", has_text="Train").click()
    wait_idle(second)
    second.get_by_text(re.compile(rf"{re.escape(run_id)} · (running|completed)")).first.wait_for()
    second.context.close()
    wait_completed(page, run_id)
    page.get_by_text("Test accuracy").first.wait_for()
    shoot(page, "3-train")

    # --- Evaluate: click a cell, see its images -----------------------------------------
    go_to(page, "Evaluate")
    page.get_by_text("Confusion matrix (counts)").first.wait_for()
    click_heatmap_cell(page, "3", "3")
    page.get_by_text(re.compile(r"3 → 3.*image\(s\)")).first.wait_for()
    wait_idle(page)
    page.get_by_text(re.compile(r"^true 3 · pred 3 · \d+%")).first.wait_for()
    shoot(page, "4-evaluate")

    # --- Predict: upload a digit ----------------------------------------------------------
    go_to(page, "Predict")
    digit = next((live_app.home / "datasets" / "digits" / "images" / "7").iterdir())
    upload = tmp_path / "a-seven.png"
    shutil.copy(digit, upload)
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(upload))
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.wait_for()
    wait_idle(page)
    chart.get_by_text("Top 3").wait_for()
    page.get_by_role("tab", name="Grad-CAM").click()
    page.get_by_text(re.compile(r"Grad-CAM for \d at conv_")).first.wait_for()
    page.get_by_role("tab", name="Feature maps").click()
    page.get_by_text(re.compile(r"feature maps, each \d+x\d+")).first.wait_for()
    wait_idle(page)
    shoot(page, "5-predict")

    # --- A second run, then compare the two on the Experiments page -------------------------
    go_to(page, "Train")
    second_run = train(page, epochs=1, before=(run_id,))
    wait_completed(page, second_run)
    go_to(page, "Experiments")
    picker = page.get_by_label("Runs to compare or manage")
    for run in (run_id, second_run):
        picker.click()
        page.get_by_role("option", name=re.compile(re.escape(run))).click()
        wait_idle(page)
    page.keyboard.press("Escape")
    page.get_by_text("Comparison").first.wait_for()
    wait_idle(page)
    shoot(page, "6-experiments")
    assert (ARTIFACTS / "6-experiments.png").exists()
