"""The Data page under streamlit's AppTest, on a real workspace in a temp dir."""

import io
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.data import ingest
from cnnlab.data.dataset import list_datasets, load_dataset
from tests.conftest import REPO, widget_keys, write_image_folders

PAGE = str(REPO / "pages" / "1_data.py")
TIMEOUT = 120


def zip_bytes(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix())
        zf.writestr("cat/broken.png", b"not an image at all")
    return buffer.getvalue()


def page(dataset=None, tab=None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if dataset:
        at.session_state["dataset"] = dataset
    if tab:
        at.session_state["data_tab"] = tab
    return at.run()


@pytest.fixture
def pets(workspace, image_folders):
    ingest.ingest(image_folders, "pets")
    return "pets"


def text_of(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.success] + [e.value for e in at.warning]
    parts += [e.value for e in at.info] + [e.value for e in at.error]
    return "\n".join(str(part) for part in parts)


def test_empty_workspace_offers_samples(workspace):
    at = page()
    assert not at.exception
    assert "No dataset yet" in text_of(at)
    assert at.button(key="ingest_sample_go").label == "Load sample"


def test_upload_zip_creates_dataset_and_reports_rejections(workspace, image_folders):
    at = page()
    at.radio(key="ingest_source").set_value("Zip file").run()
    at.text_input(key="ingest_name").set_value("pets").run()
    at.file_uploader(key="ingest_zip").set_value(
        ("pets.zip", zip_bytes(image_folders), "application/zip")
    ).run()
    at.button(key="ingest_zip_go").click().run()
    assert not at.exception
    assert list_datasets() == ["pets"]
    assert at.session_state["dataset"] == "pets"
    shown = text_of(at)
    assert "Added 24 image(s) to **pets**" in shown
    assert "1 file(s) were rejected" in shown
    assert [m.value for m in at.metric][:2] == ["24", "3"]


def test_unusable_zip_shows_message_not_traceback(workspace):
    at = page()
    at.radio(key="ingest_source").set_value("Zip file").run()
    at.file_uploader(key="ingest_zip").set_value(("x.zip", b"not a zip", "application/zip")).run()
    at.button(key="ingest_zip_go").click().run()
    assert not at.exception
    assert at.error, "expected an error message"
    assert list_datasets() == []


def test_loose_files_need_a_class(pets, tmp_path):
    at = page("pets")
    at.radio(key="ingest_source").set_value("Images of one class").run()
    at.radio(key="ingest_target").set_value("The current dataset (pets)").run()
    png = (next(iter((tmp_path / "upload" / "cat").glob("*.png")))).read_bytes()
    at.file_uploader(key="ingest_files").set_value(("new.png", png, "image/png")).run()
    at.button(key="ingest_files_go").click().run()
    assert "Give these images a class name" in at.error[0].value
    at.text_input(key="ingest_label").set_value("owls/hawks").run()
    at.button(key="ingest_files_go").click().run()
    assert not at.exception
    assert "path separator" in at.error[0].value and "e.g. 'owls - hawks'" in at.error[0].value
    at.text_input(key="ingest_label").set_value("snowy owl").run()
    at.button(key="ingest_files_go").click().run()
    assert not at.exception
    assert "snowy owl" in load_dataset("pets").class_names


def test_health_gallery_and_preview(pets):
    at = page("pets")
    assert not at.exception
    assert [m.label for m in at.metric] == ["Images", "Classes", "Imbalance ratio", "Channels"]
    # Only the open tab runs.
    assert "gallery_class" not in at.session_state
    at = page("pets", tab="Gallery")
    assert at.selectbox(key="gallery_class").options == ["cat", "dog", "fox"]
    at = page("pets", tab="Augmentation")
    # Nothing saved yet: the preview starts from the auto recipe's mild defaults.
    assert at.slider(key="aug_rotation").value == pytest.approx(0.05)
    assert "Nothing saved for this dataset yet" in text_of(at)
    # Reseeding draws new variants without errors; the spec widgets come from AugmentSpec.
    at.slider(key="aug_rotation").set_value(0.2).run()
    at.button(key="aug_reseed").click().run()
    assert not at.exception
    assert at.session_state["aug_seed"] == 1
    at.button(key="aug_save").click().run()
    from cnnlab.data.augment import load_augment

    assert load_augment("pets").rotation == pytest.approx(0.2)


def test_delete_class_needs_confirmation(pets):
    at = page("pets", tab="Gallery")
    assert at.button(key="gallery_delete_class").disabled
    at.checkbox(key="gallery_confirm_class").check().run()
    at.button(key="gallery_delete_class").click().run()
    assert not at.exception
    assert load_dataset("pets").class_names == ["dog", "fox"]


def test_gallery_pages_stay_small(workspace, tmp_path):
    folder = write_image_folders(tmp_path / "many", {"a": 60, "b": 3}, size=16)
    ingest.ingest(folder, "many")
    at = page("many", tab="Gallery")
    assert not at.exception
    assert "60 image(s) of class a" in text_of(at)
    assert at.number_input(key="gallery_page").max == 2


def test_orientation_toggle_is_stored_and_honoured_by_the_preview(pets):
    at = page("pets", tab="Augmentation")
    assert not at.exception
    toggle = at.toggle(key="orientation_matters")
    assert toggle.value is False  # an uploaded folder of photos
    assert "Orientation matters" in toggle.label and "digits" in toggle.help
    # Photos start from flips; nothing is said about orientation.
    assert at.selectbox(key="aug_horizontal_flip").value is True
    assert "because orientation matters" not in text_of(at)

    toggle.set_value(True).run()
    assert not at.exception
    assert load_dataset("pets").meta["orientation_matters"] is True
    assert at.toggle(key="orientation_matters").value is True
    # The flip chosen above stays in the form, but the preview leaves it out and says so.
    assert "Flips are off" in text_of(at) and "because orientation matters" in text_of(at)

    # A fresh session shows the stored value; switching it off again saves that.
    at = page("pets", tab="Augmentation")
    assert at.toggle(key="orientation_matters").value is True
    at.toggle(key="orientation_matters").set_value(False).run()
    assert not at.exception
    assert load_dataset("pets").meta["orientation_matters"] is False
    assert "because orientation matters" not in text_of(at)


def test_orientation_toggle_follows_the_selected_dataset(pets, tmp_path):
    from cnnlab.data.dataset import set_orientation_matters

    folder = write_image_folders(tmp_path / "scans", {"a": 6, "b": 6}, mode="L")
    ingest.ingest(folder, "scans")
    set_orientation_matters("scans", True)
    at = page("scans", tab="Augmentation")
    assert at.toggle(key="orientation_matters").value is True
    # Nothing saved: the starting recipe has no flip where orientation matters.
    assert at.selectbox(key="aug_horizontal_flip").value is False
    at.session_state["dataset"] = "pets"
    at.run()
    assert not at.exception
    # pets' own value is shown, and the previous dataset's value was not written into it.
    assert at.toggle(key="orientation_matters").value is False
    assert load_dataset("pets").meta["orientation_matters"] is False
    assert load_dataset("scans").meta["orientation_matters"] is True


def test_augmentation_widgets_include_crop(pets):
    at = page("pets", tab="Augmentation")
    crop = at.slider(key="aug_crop")
    assert (crop.min, crop.max, crop.value) == (0.0, 0.5, 0.0)
    crop.set_value(0.3).run()
    assert not at.exception
    at.button(key="aug_save").click().run()
    from cnnlab.data.augment import load_augment

    assert load_augment("pets").crop == pytest.approx(0.3)


def test_findings_and_class_names_shown_as_uploaded(workspace, tmp_path):
    import shutil

    folder = write_image_folders(tmp_path / "up", {"golden retriever": 6, "cat_*x*": 6})
    shutil.copy(folder / "cat_*x*" / "cat_*x*_0.png", folder / "cat_*x*" / "same.png")
    ingest.ingest(folder, "named")
    at = page("named")
    assert not at.exception
    (table,) = [frame.value for frame in at.dataframe]
    # The duplicate pair by the names the user uploaded, the stored names last.
    assert list(table.columns) == ["images", "label", "stored as"]
    assert table["images"][0] == "cat_*x*/cat_*x*_0.png, cat_*x*/same.png"
    assert table["stored as"][0].startswith("images/cat_-x/")
    # Markdown specials in the names are shown as written, not as emphasis.
    assert any("cat\\_\\*x\\*/same\\.png" in w.value for w in at.warning)

    at = page("named", tab="Gallery")
    assert at.selectbox(key="gallery_class").options == ["cat_*x*", "golden retriever"]
    assert "7 image(s) of class cat\\_\\*x\\*" in text_of(at)
    files = at.multiselect(key="gallery_delete_files")
    assert "cat_*x*/same.png" in files.options


def test_near_duplicates_shown_side_by_side_and_fixed_by_editors(workspace, monkeypatch):
    from cnnlab import access
    from cnnlab.data.dataset import Dataset
    from tests.unit.test_similar import encoded, near_copy, picture

    files = [
        (f"train/{label}/{i}.png", encoded(picture(10 * k + i)))
        for k, label in enumerate(("cat", "dog"), start=1)
        for i in range(4)
    ]
    files += [("train/cat/b.png", encoded(picture(2))), ("train/dog/b-small.jpg", near_copy(2))]
    ingest.add_files("looks", files, None)
    at = page("looks")
    assert not at.exception
    assert "**conflict\\: cat, dog**" in text_of(at)
    captions = [c for image in at.get("image") for c in image.proto.imgs]
    assert [c.caption for c in captions] == [
        "train/cat/b.png · cat · train",
        "train/dog/b-small.jpg · dog · train",
    ]
    at.button(key="fix_near_conflict").click().run()
    assert not at.exception
    assert {r.source for r in Dataset("looks").records} == {name for name, _ in files[:-2]}

    ingest.add_files("looks", files[-2:], None)
    monkeypatch.setenv(access.EDITOR_PASSWORD, "editor-secret")
    viewer = page("looks")
    assert not viewer.exception
    assert "**conflict\\: cat, dog**" in text_of(viewer)
    assert "fix_near_conflict" not in widget_keys(viewer)
