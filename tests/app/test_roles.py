"""Every page for both roles: with an editor password set, a viewer sees no control
that changes shared state, and an editor sees them all (cnnlab.access, pages/_ui)."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnnlab import access, devices
from pages._ui import ROLE_KEY
from tests.conftest import REPO, make_dataset_on_disk, widget_keys
from tests.runs_fixture import make_trained_run

APP = str(REPO / "app.py")
TIMEOUT = 120

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset ``tiny`` and one completed run of it, shared by the tests here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("roles")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        yield make_trained_run("tiny", epochs=1)


@pytest.fixture
def protected(monkeypatch, tmp_path):
    monkeypatch.setattr(access, "SECRETS_FILES", (tmp_path / "none.toml",))
    monkeypatch.setenv(access.EDITOR_PASSWORD, "editor-secret")
    monkeypatch.delenv(access.VIEWER_PASSWORD, raising=False)


def labels(at: AppTest) -> str:
    return " ".join(str(getattr(tab, "label", "")) for tab in at.tabs)


# (page, state, keys only editors get, keys everyone gets)
PAGES = {
    "data": ("1_data.py", {"data_tab": "Gallery"},
             {"ingest_source", "gallery_delete_files"}, {"gallery_class"}),
    "architecture": ("2_architecture.py", {}, {"arch_save", "arch_save_name"}, {"arch_mode"}),
    "train": ("3_train.py", {}, {"train_start", "train_continue", "train_fork"},
              {"train_pick_run"}),
    "evaluate": ("4_evaluate.py", {}, {"ev_study_start"}, {"ev_run"}),
    "predict": ("5_predict.py", {}, {"pr_export_go", "pr_download_keras"}, {"pr_run"}),
    "experiments": ("6_experiments.py", {}, {"ex_save", "ex_delete", "ex_bundle"},
                    {"ex_open"}),
    # Without a study the page shows only its start form (to editors).
    "tune": ("7_tune.py", {}, {"tune_start", "tune_space"}, set()),
}  # fmt: skip


def open_page(name: str, run_id: str, role: str | None) -> AppTest:
    file, state, _, _ = PAGES[name]
    at = AppTest.from_file(str(REPO / "pages" / file), default_timeout=TIMEOUT)
    state = {"dataset": "tiny", "run": run_id, "ex_selected": [run_id], **state}
    if role:
        state[ROLE_KEY] = role
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


@pytest.mark.parametrize("name", list(PAGES))
def test_viewers_see_no_control_that_changes_shared_state(name, trained, protected, monkeypatch):
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: {"device": "CPU (no GPU found)"})
    _, _, editor_only, everyone = PAGES[name]
    viewer = open_page(name, trained, None)
    assert not viewer.exception
    assert everyone <= widget_keys(viewer)
    assert not editor_only & widget_keys(viewer)
    assert "Manage" not in labels(viewer)

    editor = open_page(name, trained, access.EDITOR)
    assert not editor.exception
    assert editor_only | everyone <= widget_keys(editor)


def test_open_workspace_everyone_is_an_editor(trained, monkeypatch, tmp_path):
    monkeypatch.setattr(access, "SECRETS_FILES", (tmp_path / "none.toml",))
    monkeypatch.delenv(access.EDITOR_PASSWORD, raising=False)
    at = open_page("experiments", trained, None)
    assert {"ex_save", "ex_delete"} <= widget_keys(at)


def test_a_viewer_action_is_refused_even_if_reached(trained, protected):
    """The check is in the action path too, not only in what is drawn."""
    from cnnlab import runs

    at = AppTest.from_string(
        f"""
from cnnlab import runs
from pages._ui import act
act(runs.delete_run, {trained!r})
"""
    ).run()
    assert "Only editors can" in at.error[0].value
    assert runs.load_run(trained).status == "completed"


def app(monkeypatch, **state) -> AppTest:
    st.cache_resource.clear()
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: {"device": "CPU (no GPU found)"})
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_sidebar_sign_in_for_editors(trained, protected, monkeypatch):
    at = app(monkeypatch)
    assert "Viewing: sign in as an editor" in " ".join(c.value for c in at.sidebar.caption)
    field = at.sidebar.text_input(key="sign_in_password")
    assert field.proto.type == field.proto.PASSWORD  # typed, not shown
    signed = app(monkeypatch, **{ROLE_KEY: access.EDITOR})
    assert "Signed in as an editor." in " ".join(c.value for c in signed.sidebar.caption)
    assert signed.sidebar.button(key="sign_out")


# AppTest reruns only the page of a navigation app, so the sign-in forms are driven here
# as a script of their own (app.py calls the same functions).
SIGN_IN = """
import streamlit as st
from pages._ui import can_edit, sign_in_panel, viewing_gate
viewing_gate()
sign_in_panel()
st.write("editor" if can_edit() else "viewer")
"""


def sign_in_app() -> AppTest:
    st.cache_resource.clear()  # a fresh wrong-password count
    return AppTest.from_string(SIGN_IN, default_timeout=TIMEOUT).run()


def submit(at: AppTest, key: str, password: str) -> AppTest:
    at.text_input(key=key).input(password)
    return at.button[0].click().run()


def test_signing_in_as_an_editor_survives_reruns(protected):
    at = sign_in_app()
    assert at.markdown[-1].value == "viewer"
    submit(at, "sign_in_password", "wrong")
    assert "not right" in at.error[0].value and at.markdown[-1].value == "viewer"
    submit(at, "sign_in_password", "editor-secret")
    assert not at.exception and at.markdown[-1].value == "editor"
    at.run()  # another page change or rerun of the same session
    assert at.markdown[-1].value == "editor"
    at.button(key="sign_out").click().run()
    assert at.markdown[-1].value == "viewer"
    assert "editor-secret" not in str(at._tree)


def test_a_viewer_password_keeps_everything_behind_sign_in(protected, monkeypatch):
    monkeypatch.setenv(access.VIEWER_PASSWORD, "viewer-secret")
    at = sign_in_app()
    assert "asks for a password" in at.markdown[0].value
    assert "viewer" not in [m.value for m in at.markdown]  # the page itself never ran
    submit(at, "view_password", "nope")
    assert "not right" in at.error[0].value
    submit(at, "view_password", "viewer-secret")
    assert not at.exception and at.markdown[-1].value == "viewer"
    assert "viewer-secret" not in str(at._tree)


def test_wrong_passwords_are_rate_limited(protected, monkeypatch):
    monkeypatch.setattr(access, "BASE_DELAY_S", 60.0)  # longer than these reruns take
    at = sign_in_app()
    for _ in range(access.FREE_ATTEMPTS + 1):
        submit(at, "sign_in_password", "guess")
    submit(at, "sign_in_password", "editor-secret")
    assert "Too many wrong passwords" in at.error[0].value
    assert at.markdown[-1].value == "viewer"


def test_the_first_page_does_not_wait_for_device_detection(workspace, device_not_detected_yet):
    """Detecting devices imports TensorFlow (seconds cold): the page draws without it."""
    at = AppTest.from_file(APP, default_timeout=10).run()
    assert not at.exception
    assert "Data" in [title.value for title in at.title]
    assert "Device: detecting..." in " ".join(c.value for c in at.sidebar.caption)
