"""The Data page's Audit tab: drawn from a saved audit.json, with actions for editors."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import access, audit
from cnnlab.data import ingest
from cnnlab.data.dataset import load_dataset
from tests.conftest import REPO, make_dataset_on_disk, widget_keys
from tests.unit.test_audit import by_colour

PAGE = str(REPO / "pages" / "1_data.py")


@pytest.fixture
def audited(workspace, monkeypatch):
    """A dataset with one training cat labelled dog, audited (quick stand-in models)."""
    name = make_dataset_on_disk("pets", {"cat": 12, "dog": 12, "fox": 12}, splits=(8, 2, 2))
    cat = next(r for r in load_dataset(name).split("train") if r.label == "cat")
    ingest.relabel_images(name, {cat.file: "dog"})
    monkeypatch.setattr(audit, "_fit_predict", by_colour)
    audit.audit_dataset(name, folds=2)
    return name


def open_tab(name: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = name
    at.session_state["data_tab"] = "Audit"
    return at.run()


def test_audit_tab_shows_issues_and_keep_hides_one(audited):
    at = open_tab(audited)
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "cat\\_0\\.png" in captions and "dog → cat" in captions
    assert "Likely label errors** (1" in " ".join(m.value for m in at.markdown)
    keys = widget_keys(at)
    assert {"audit_relabel_0", "audit_remove_0", "audit_keep_0", "audit_start"} <= keys
    at.button(key="audit_keep_0").click().run()
    assert not at.exception
    assert audit.load_audit(audited)["label_issues"] == []
    assert "audit_keep_0" not in widget_keys(at)


def test_relabel_to_the_suggested_class(audited):
    at = open_tab(audited)
    at.button(key="audit_relabel_0").click().run()
    assert not at.exception
    record = next(r for r in load_dataset(audited).records if r.source == "cat_0.png")
    assert record.label == "cat"


def test_viewer_sees_results_without_actions(audited, monkeypatch, tmp_path):
    monkeypatch.setattr(access, "SECRETS_FILES", (tmp_path / "none.toml",))
    monkeypatch.setenv(access.EDITOR_PASSWORD, "editor-secret")
    monkeypatch.delenv(access.VIEWER_PASSWORD, raising=False)
    at = open_tab(audited)
    assert not at.exception
    assert "dog → cat" in " ".join(c.value for c in at.caption)
    keys = widget_keys(at)
    assert not {k for k in keys if k.startswith(("audit_relabel", "audit_remove", "audit_keep"))}
    assert "audit_start" not in keys


def test_outliers_can_be_removed_or_kept(audited):
    from cnnlab import workspace

    dataset = load_dataset(audited)
    odd, other = [r for r in dataset.records if r.label == "fox"][:2]
    saved = workspace.read_json(dataset.path / audit.AUDIT_FILE)
    saved["outliers"] = [
        {"file": r.file, "source": r.upload_name, "label": r.label, "split": r.split, "score": s}
        for r, s in ((odd, 9.5), (other, 4.0))
    ]
    workspace.atomic_write_json(dataset.path / audit.AUDIT_FILE, saved)
    at = open_tab(audited)
    assert not at.exception, at.exception
    assert "Outliers** (2" in " ".join(m.value for m in at.markdown)
    at.button(key="audit_outlier_remove_0").click().run()
    assert not at.exception, at.exception
    assert odd.file not in {r.file for r in load_dataset(audited).records}
    at.button(key="audit_outlier_keep_0").click().run()  # the other one, now first
    assert audit.load_audit(audited)["outliers"] == []
    assert "Outliers** (0" in " ".join(m.value for m in at.markdown)
