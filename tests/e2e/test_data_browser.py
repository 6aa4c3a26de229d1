"""In a real browser: open the app on an empty workspace, upload a zip on the Data page,
and see the health report."""

import zipfile

import pytest

from tests.conftest import write_image_folders
from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.browser


def make_zip(tmp_path):
    folders = write_image_folders(tmp_path / "pets", {"cat": 6, "dog": 6}, size=32)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folders.rglob("*.png")):
            zf.write(path, f"pets/{path.relative_to(folders)}")
        zf.writestr("__MACOSX/pets/._cat_0.png", b"junk")
        zf.writestr("pets/cat/notes.png", b"this is not an image")
    return archive


def test_upload_zip_and_see_health_report(live_app, page, tmp_path):
    archive = make_zip(tmp_path)
    page.goto(live_app.url)
    wait_idle(page)
    page.get_by_text("No dataset yet. Load a built-in sample").wait_for()

    page.get_by_text("Zip file", exact=True).click()
    wait_idle(page)
    page.get_by_label("New dataset name").fill("pets")
    page.get_by_label("New dataset name").press("Enter")
    wait_idle(page)
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(archive))
    page.get_by_role("button", name="Ingest zip").click()

    page.get_by_text("Added 12 image(s) to").wait_for()
    page.get_by_text("1 file(s) were rejected").wait_for()
    page.get_by_text("Images per class").wait_for()
    wait_idle(page)
    assert page.get_by_role("tab", name="Health report").is_visible()
    screenshot(page, "data-page")
    page.watch.assert_clean()
