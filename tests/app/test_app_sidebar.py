"""The app shell: navigation and the shared sidebar (dataset, run, device)."""

import streamlit as st
from streamlit.testing.v1 import AppTest

from cnnlab import devices
from cnnlab.data import ingest
from tests.conftest import REPO

APP = str(REPO / "app.py")


def app(monkeypatch, device: dict | None = None) -> AppTest:
    st.cache_resource.clear()
    fake = device or {"device": "CPU (no GPU found)", "gpus": [], "gpu_count": 0}
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: fake)
    return AppTest.from_file(APP, default_timeout=120).run()


def captions(at) -> str:
    return "\n".join(c.value for c in at.sidebar.caption)


def test_empty_workspace(workspace, monkeypatch):
    at = app(monkeypatch)
    assert not at.exception
    assert "No dataset yet" in captions(at)
    assert "Device: CPU (no GPU found)" in captions(at)


def test_gpu_is_shown_when_present(workspace, monkeypatch):
    gpu = {"device": "GPU: NVIDIA A100", "gpus": ["NVIDIA A100"], "gpu_count": 1}
    at = app(monkeypatch, gpu)
    assert "Device: GPU: NVIDIA A100" in captions(at)


def test_sidebar_follows_datasets(workspace, image_folders, monkeypatch):
    ingest.ingest(image_folders, "pets")
    ingest.ingest(image_folders, "digits")
    at = app(monkeypatch)
    box = at.sidebar.selectbox(key="sidebar_dataset")
    assert box.options == ["digits", "pets"]
    assert box.value == "digits"  # the sample is the default when present
    box.set_value("pets").run()
    assert at.session_state["dataset"] == "pets"


def test_sidebar_shows_what_a_page_chose(workspace, image_folders, monkeypatch):
    # AppTest drops the sidebar of a navigation app after its first run, so each step
    # here is a fresh first run with the state a page would have left behind.
    ingest.ingest(image_folders, "pets")
    ingest.ingest(image_folders, "digits")
    st.cache_resource.clear()
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: {"device": "CPU (no GPU found)"})
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dataset"] = "pets"
    at.run()
    assert at.sidebar.selectbox(key="sidebar_dataset").value == "pets"
    assert "No run of this dataset yet" in captions(at)
