"""In a real browser: open the Predict page on a workspace with a run, upload a PNG and
see the top-k chart, the verdict and the Grad-CAM tab."""

from __future__ import annotations

import pytest

from tests.conftest import make_dataset_on_disk
from tests.e2e.conftest import screenshot, wait_idle
from tests.unit.test_predict import png_bytes, random_pixels, save_model_run

pytestmark = pytest.mark.browser


def test_upload_an_image_and_see_the_top_k_chart(live_app, page, tmp_path, monkeypatch):
    # The run must exist before the page is opened: the server reads the same workspace.
    monkeypatch.setenv("CNNLAB_HOME", str(live_app.home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    save_model_run()
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(random_pixels(48, 64, seed=7)))

    # Through the navigation, as a person would: opening {url}/predict directly makes the
    # Streamlit client probe {url}/predict/_stcore/... first (404s in the console).
    page.goto(live_app.url)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a", has_text="Predict").click()
    page.wait_for_url(f"{live_app.url}/predict")
    wait_idle(page)
    page.get_by_text("Drop one or more images").wait_for()
    page.get_by_text("3 classes · 24x24 colour").wait_for()

    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(image))
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.wait_for()
    wait_idle(page)
    chart.get_by_text("Top 3").wait_for()
    for label in ("cat", "dog", "fox"):
        assert chart.locator("text", has_text=label).count() >= 1
    assert page.get_by_role("tab", name="Grad-CAM").is_visible()
    assert page.get_by_text("Latency").first.is_visible()
    verdicts = page.locator("[data-testid='stAlertContentSuccess'], "
                            "[data-testid='stAlertContentWarning']")  # fmt: skip
    assert verdicts.count() >= 1
    screenshot(page, "predict-page")
    page.watch.assert_clean()
