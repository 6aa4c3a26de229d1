"""In a real browser: open the Evaluate page of a trained run, click a confusion-matrix
cell, and see exactly that cell's test images in the gallery."""

from __future__ import annotations

import re

import pytest

from cnnlab.evaluate import errors_for_cell, evaluate_run, most_confused
from tests.conftest import make_dataset_on_disk
from tests.e2e.conftest import click_heatmap_cell, screenshot, wait_idle
from tests.runs_fixture import make_trained_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def trained_run(live_app, monkeypatch):
    """A trained run in the live app's workspace, made before the browser navigates."""
    monkeypatch.setenv("CNNLAB_HOME", str(live_app.home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    return make_trained_run("tiny", epochs=2)


def gallery_captions(page, truth: str, pred: str):
    return page.get_by_text(re.compile(rf"^true {truth} · pred {pred} · \d+% · loss"))


def test_click_a_confusion_cell_and_see_its_images(live_app, page, trained_run):
    evaluation = evaluate_run(trained_run)
    default = most_confused(evaluation, 1)
    default = default[0][:2] if default else (evaluation.labels[0],) * 2
    # A cell with images that is not the one shown first, so the click must change it.
    cells = [
        (evaluation.labels[t], evaluation.labels[p])
        for t in range(len(evaluation.labels))
        for p in range(len(evaluation.labels))
        if evaluation.confusion[t, p] > 0
    ]
    truth, pred = next(cell for cell in cells if cell != default)
    expected = errors_for_cell(evaluation, truth, pred)

    # From the root and through the sidebar: a deep link makes the frontend probe
    # /evaluate/_stcore/... first, which logs 404s in the console.
    page.goto(live_app.url)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav']").get_by_text("Evaluate", exact=True).click()
    wait_idle(page)
    page.get_by_text("Confusion matrix (counts)").first.wait_for()
    page.get_by_text(f"{default[0]} → {default[1]}").first.wait_for()

    click_heatmap_cell(page, truth, pred)
    page.get_by_text(re.compile(rf"{truth} → {pred}.*{len(expected)} image\(s\)")).first.wait_for()
    wait_idle(page)
    captions = gallery_captions(page, truth, pred)
    if truth != pred:
        # Errors also appear in the top-losses tab; count only the visible cell gallery.
        captions = page.get_by_role("tabpanel").first.get_by_text(
            re.compile(rf"^true {truth} · pred {pred} · \d+% · loss")
        )
    assert captions.count() == len(expected)
    shown = [captions.nth(i).inner_text() for i in range(captions.count())]
    assert [int(re.search(r"(\d+)%", text).group(1)) for text in shown] == [
        round(p.confidence * 100) for p in expected
    ]
    panel = page.get_by_role("tabpanel").first
    assert panel.locator("[data-testid='stImage'] img").count() >= len(expected)
    screenshot(page, "evaluate-cell-gallery")
    page.watch.assert_clean()
