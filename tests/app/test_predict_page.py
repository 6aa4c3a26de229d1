"""The Predict page under streamlit's AppTest, on run folders in a temp workspace."""

from __future__ import annotations

import json
import math

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import runs
from cnnlab.predict import Predictor
from tests.conftest import REPO, make_dataset_on_disk
from tests.unit.test_predict import png_bytes, random_pixels, save_model_run

PAGE = str(REPO / "pages" / "5_predict.py")
TIMEOUT = 120


def page(run=None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if run:
        at.session_state["run"] = run
    return at.run()


def text_of(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.success] + [e.value for e in at.warning]
    parts += [e.value for e in at.info] + [e.value for e in at.error]
    parts += [caption for image in at.image for caption in image.captions]
    return "\n".join(str(part) for part in parts)


def upload(at, *files) -> AppTest:
    at.file_uploader(key="pr_files").set_value(
        [(name, data, "application/octet-stream") for name, data in files]
    )
    return at.run()


def png(seed=0, size=30):
    return png_bytes(random_pixels(size, size + 5, seed=seed))


@pytest.fixture
def a_run(workspace):
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    save_model_run("20260101-000000-tiny-simple-aaaa", created="2026-01-01T00:00:00+00:00")
    return save_model_run("20260102-000000-tiny-simple-bbbb", created="2026-01-02T00:00:00+00:00")


def test_no_trained_run_says_what_to_do(workspace):
    save_model_run(status="failed", checkpoints=())
    at = page()
    assert not at.exception
    assert "No run has a trained model yet" in text_of(at)


def test_one_image_shows_chart_verdict_grad_cam_and_feature_maps(a_run):
    image = png()
    expected = Predictor(a_run).load().predict_bytes(image, top_k=3, name="cat.png")
    label, confidence = expected.label, expected.confidence
    # Thresholds on the slider's 0.05 grid just under and just over the top probability.
    under = math.floor(confidence * 20) / 20
    over = round(under + 0.05, 2)
    assert under < confidence < over

    at = page()
    assert not at.exception
    assert at.selectbox(key="pr_run").value == a_run  # the latest completed run
    assert "run" not in at.session_state  # shown, not made current, until picked here
    assert "Drop one or more images" in text_of(at)
    at.slider(key="pr_threshold").set_value(under)
    at = upload(at, ("cat.png", image))
    assert not at.exception
    shown = text_of(at)
    # The page's verdict is the Predictor's top class and probability.
    assert [s.value for s in at.success] == [f"**{label}** ({confidence:.1%})"]
    assert not at.warning
    assert f"Grad-CAM for {label} at conv_2" in shown  # the predicted class by default
    assert "Latency" in shown
    assert "conv_1: the first 16 of 32 feature maps, each 22x22" in shown
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    bars = json.loads(charts[0].proto.spec)["data"][0]
    # Most probable on top: plotly draws the last bar of a horizontal chart at the top.
    assert bars["y"][::-1] == [name for name, _ in expected.top]
    assert bars["x"][::-1] == pytest.approx([p for _, p in expected.top], abs=1e-6)
    assert [tab.label for tab in at.tabs] == ["Grad-CAM", "Feature maps"]
    assert [m.label for m in at.metric][:4] == ["Images", "Unsure", "Unreadable",
                                                 "Latency (median)"]  # fmt: skip
    assert at.metric[0].value == "1" and at.metric[1].value == "0"

    # The settings change the explanation; a threshold over the top probability makes
    # the same prediction unsure.
    at.selectbox(key="pr_map_layer").set_value("conv_2").run()
    assert "conv_2: the first 16 of 64 feature maps, each 9x9" in text_of(at)
    at.selectbox(key="pr_cam_class").set_value("fox").run()
    assert "Grad-CAM for fox at conv_2" in text_of(at)
    at.slider(key="pr_threshold").set_value(over).run()
    assert not at.exception
    assert not at.success
    assert [w.value for w in at.warning] == [
        f"**Unsure**: the top guess, {label}, has only {confidence:.1%}, "
        f"under the {over:.0%} threshold."
    ]
    assert at.metric[1].value == "1"


def test_many_images_with_a_bad_file(a_run):
    at = page()
    files = [(f"img{i}.png", png(seed=i)) for i in range(5)]
    files.insert(2, ("notes.png", b"this is text, not a picture"))
    at = upload(at, *files)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == [name for name, _ in files]
    assert list(table["verdict"])[2] == "error"
    predictor = Predictor(a_run).load()
    for row, (_, data) in zip(table.to_dict("records"), files, strict=True):
        if row["verdict"] == "error":
            continue
        expected = predictor.predict_bytes(data, top_k=3)
        assert row["label"] == expected.label
        assert row["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
        assert row["verdict"] == ("unsure" if expected.confidence < 0.5 else "sure")
    assert "not an image" in table["error"][2]
    assert at.metric[2].value == "1"  # unreadable
    assert at.get("download_button")
    # More than the detail limit: one image is picked for the details.
    at.selectbox(key="pr_inspect").set_value("notes.png").run()
    assert "Could not read this file: not an image" in at.error[0].value
    at.selectbox(key="pr_inspect").set_value("img4.png").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1


def test_gated_model_shows_gate_weights(workspace):
    run_id = save_model_run(preset="gated_small")
    at = upload(page(), ("x.png", png()))
    assert not at.exception
    assert [tab.label for tab in at.tabs] == ["Grad-CAM", "Feature maps", "Gate weights"]
    assert run_id == at.selectbox(key="pr_run").value
    assert len(at.get("plotly_chart")) == 2  # top-k and gate weights


def test_damaged_model_is_a_message_not_a_traceback(workspace):
    run_id = save_model_run()
    (runs.run_path(run_id) / "best.keras").write_bytes(b"garbage")
    at = page()
    assert not at.exception
    assert "could not be loaded" in at.error[0].value
    # The last checkpoint still works.
    at.selectbox(key="pr_checkpoint").set_value("last").run()
    assert not at.exception and not at.error


def test_export_and_parity_check(a_run):
    at = page()
    at.radio(key="pr_export_format").set_value("keras").run()
    at.button(key="pr_export_go").click().run()
    assert not at.exception
    assert "Exported to" in text_of(at)
    at.button(key="pr_parity_go").click().run()
    assert not at.exception
    assert "parity holds" in at.success[0].value
    assert [m.label for m in at.metric] == ["Test images", "Label agreement", "Largest |Δp|"]
    assert at.metric[0].value == "6" and at.metric[1].value == "100.0%"


def test_an_upload_over_the_limits_is_refused_with_the_limit(a_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_PREDICT_MAX_FILES", "2")
    at = upload(page(), ("a.png", png()), ("b.png", png()), ("c.png", png()))
    assert not at.exception
    assert "3 images at once is more than the limit of 2" in at.error[0].value
    assert not at.get("plotly_chart")  # nothing was predicted
    at = upload(at, ("a.png", png()), ("b.png", png()))
    assert not at.error and len(at.get("plotly_chart")) == 2
