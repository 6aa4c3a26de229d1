"""The Data page's Audit tab: start an audit (in a detached process), watch it, and act
on what it found: relabel, remove or keep each likely label error. Imported by
``pages/1_data.py``."""

from __future__ import annotations

import streamlit as st

from cnnlab import audit
from cnnlab.data.dataset import Dataset
from pages._ui import act, attempt, can_edit, plain

ISSUES_PER_PAGE = 12
POLL_S = 2.0


def audit_panel(name: str, dataset: Dataset) -> None:
    status = attempt(audit.audit_status, name) or {"state": "idle"}
    if status["state"] == "running":
        watch_audit(name)
    elif status["state"] == "failed":
        st.error(f"The last audit failed: {status.get('error')}")
    if can_edit() and status["state"] != "running":
        start_form(name)
    result = attempt(audit.load_audit, name)
    if result is None:
        st.info(
            "Not audited yet. An audit trains a few quick models (k-fold over train+val) "
            "so each image is judged by a model that did not learn from it, then lists "
            "the images whose label looks wrong, near-duplicates and outliers."
        )
        return
    st.caption(
        f"Last audit: {plain(result.get('finished', '?'))}, {result.get('folds')} folds, "
        f"{result.get('duration_s', 0):.0f} s."
        + ("" if result.get("current") else " The data changed since: audit again to update.")
    )
    for note in result.get("notes", []):
        st.caption(plain(note))
    issues_gallery(name, dataset, result["label_issues"])
    st.markdown("**Near-duplicates**")
    groups = result.get("near_duplicates", [])
    if groups:
        rows = [{"kind": g["kind"], "images": ", ".join(g["sources"])} for g in groups]
        st.dataframe(rows, hide_index=True, width="stretch", key="audit_duplicates")
        st.caption("The Health report tab shows them side by side, with their fixes.")
    else:
        st.caption("None found.")
    outliers_gallery(name, dataset, result.get("outliers", []))


def outliers_gallery(name: str, dataset: Dataset, outliers: list[dict]) -> None:
    st.markdown(f"**Outliers** ({len(outliers)}, unlike the rest of their class)")
    if not outliers:
        st.caption("None found (or none left to review).")
        return
    columns = st.columns(4)
    for rank, outlier in enumerate(outliers[:ISSUES_PER_PAGE]):
        with columns[rank % 4]:
            st.image(str(dataset.path / outlier["file"]), width=96)
            st.caption(f"{plain(outlier['source'])}  \nscore {outlier['score']:.1f}")
            if can_edit():
                remove, keep = st.columns(2)
                if remove.button("Remove", key=f"audit_outlier_remove_{rank}"):
                    act(audit.remove, name, [outlier["file"]])
                if keep.button("Keep", key=f"audit_outlier_keep_{rank}", help="Stop listing it"):
                    act(audit.keep, name, [outlier["file"]])


def start_form(name: str) -> None:
    low, high = audit.FOLDS_RANGE
    with st.form("audit_form", border=False):
        left, right = st.columns(2)
        folds = left.slider(
            "Folds (models trained)", low, high, audit.DEFAULT_FOLDS, key="audit_folds"
        )
        budget = right.number_input(
            "Budget (minutes, all folds)",
            0.5,
            1440.0,
            value=None,
            step=0.5,
            placeholder="none: each fold trains like the default run",
            help="Empty: every fold model trains as the dataset's default run would, so "
            "the audit takes about as many times that run as there are folds. Smaller "
            "budgets give weaker models, which find fewer wrong labels.",
            key="audit_budget",
        )
        if st.form_submit_button("Start audit", key="audit_start"):
            act(audit.start_audit, name, int(folds), None if budget is None else float(budget))


@st.fragment(run_every=POLL_S)
def watch_audit(name: str) -> None:
    """Redrawn every two seconds while the audit runs; the page redraws when it ends."""
    status = audit.audit_status(name)
    if status["state"] != "running":
        st.rerun()
    st.info(f"Auditing (started {plain(status.get('requested', ''))}): training the fold models…")


def issues_gallery(name: str, dataset: Dataset, issues: list[dict]) -> None:
    st.markdown(f"**Likely label errors** ({len(issues)}, most likely first)")
    if not issues:
        st.caption("None left to review.")
        return
    pages = max(1, -(-len(issues) // ISSUES_PER_PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="audit_page")
    first = (page - 1) * ISSUES_PER_PAGE
    editor = can_edit()
    columns = st.columns(4)
    for offset, issue in enumerate(issues[first : first + ISSUES_PER_PAGE]):
        rank = first + offset
        with columns[offset % 4]:
            st.image(str(dataset.path / issue["file"]), width=96)
            st.caption(
                f"{plain(issue['source'])}  \n{plain(issue['given'])} → "
                f"{plain(issue['suggested'])} · quality {issue['quality']:.3f}"
            )
            if editor:
                issue_actions(name, dataset, issue, rank)


def issue_actions(name: str, dataset: Dataset, issue: dict, rank: int) -> None:
    file, suggested = issue["file"], issue["suggested"]
    others = [label for label in dataset.class_names if label != issue["given"]]
    target = st.selectbox(
        "Relabel to",
        others,
        index=others.index(suggested) if suggested in others else 0,
        key=f"audit_target_{rank}",
        label_visibility="collapsed",
    )
    relabel, remove, keep = st.columns(3)
    if relabel.button("Relabel", key=f"audit_relabel_{rank}"):
        act(audit.relabel, name, file, target)
    if remove.button("Remove", key=f"audit_remove_{rank}"):
        act(audit.remove, name, [file])
    if keep.button("Keep", key=f"audit_keep_{rank}", help="The label is right: stop listing it"):
        act(audit.keep, name, [file])
