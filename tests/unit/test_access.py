"""Roles, passwords and sign-in throttling (cnnlab.access), without Streamlit."""

import pytest

from cnnlab import access
from cnnlab.access import EDITOR, NOBODY, VIEWER, Access, Throttle
from cnnlab.errors import CnnlabError


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch, tmp_path):
    """No password from the machine running the tests: only what a test sets."""
    monkeypatch.delenv(access.EDITOR_PASSWORD, raising=False)
    monkeypatch.delenv(access.VIEWER_PASSWORD, raising=False)
    monkeypatch.setattr(access, "SECRETS_FILES", (tmp_path / "secrets.toml",))
    return tmp_path / "secrets.toml"


def test_open_when_no_password_is_configured():
    config = Access.configured()
    assert not config.protected and config.starting_role() == EDITOR


def test_protected_visitors_start_as_viewers_or_nobody(monkeypatch):
    monkeypatch.setenv(access.EDITOR_PASSWORD, "s3cret")
    assert Access.configured().starting_role() == VIEWER
    monkeypatch.setenv(access.VIEWER_PASSWORD, "look")
    config = Access.configured()
    assert config.starting_role() == NOBODY
    assert (config.role_for("s3cret"), config.role_for("look")) == (EDITOR, VIEWER)
    assert config.role_for("S3cret") is None and config.role_for("") is None
    assert "s3cret" not in repr(config) and "look" not in repr(config)


def test_the_secrets_file_is_read_and_the_environment_wins(monkeypatch, no_secrets):
    no_secrets.write_text(f'{access.EDITOR_PASSWORD} = "from-file"\n')
    assert Access.configured().role_for("from-file") == EDITOR
    monkeypatch.setenv(access.EDITOR_PASSWORD, "from-env")
    assert Access.configured().role_for("from-file") is None
    no_secrets.write_text("not toml [")  # a broken file is not a password
    monkeypatch.delenv(access.EDITOR_PASSWORD)
    assert not Access.configured().protected


def test_only_editors_change_shared_state():
    access.require_editor(EDITOR, "delete runs")
    with pytest.raises(CnnlabError, match="Only editors can delete runs. Sign in as an editor"):
        access.require_editor(VIEWER, "delete runs")


def test_wrong_passwords_are_throttled_per_client():
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    config = Access(editor_password="right")
    for _ in range(access.FREE_ATTEMPTS):
        with pytest.raises(CnnlabError, match="not right"):
            access.sign_in(config, throttle, "1.2.3.4", "wrong")
    with pytest.raises(CnnlabError, match="not right"):
        access.sign_in(config, throttle, "1.2.3.4", "wrong")
    # Now even the right password waits, doubling with each further failure.
    with pytest.raises(CnnlabError, match=r"Too many wrong passwords: try again in 2 s"):
        access.sign_in(config, throttle, "1.2.3.4", "right")
    assert access.sign_in(config, throttle, "5.6.7.8", "right") == EDITOR  # another client
    now[0] += 2.0
    with pytest.raises(CnnlabError, match="not right"):
        access.sign_in(config, throttle, "1.2.3.4", "wrong")
    assert throttle.wait_s("1.2.3.4") == pytest.approx(4.0)
    now[0] += 4.0
    assert access.sign_in(config, throttle, "1.2.3.4", "right") == EDITOR
    assert throttle.wait_s("1.2.3.4") == 0.0  # success clears the count
