"""Evaluate page: a run's test metrics, the confusion matrix with a way into the errors
(click a cell, see those images), the imbalance panel and study, curves and the report."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import eval_plots, runs
from cnnlab.evaluate import Evaluation, errors_for_cell, evaluate_run, most_confused, top_losses
from cnnlab.report import REPORT_FILE, html_report
from pages._embedding_parts import embedding_section
from pages._evaluate_parts import curves_section, gallery, imbalance_section, per_class_section
from pages._ui import attempt, plain, run_picker

SORTS = {"loss": "Most wrong first (loss)", "confidence": "Most confident first"}

st.title("Evaluate")


@st.cache_data(show_spinner="Scoring the test split...", max_entries=8)
def cached_evaluation(run_id: str, version: tuple) -> Evaluation:
    return evaluate_run(run_id)


@st.cache_data(show_spinner=False, max_entries=4)
def cached_report(run_id: str, version: tuple) -> str:
    return html_report(run_id)


def completed_runs() -> list[runs.Run]:
    return [info for info in runs.list_runs() if info.status == "completed"]


def headline(evaluation: Evaluation) -> None:
    columns = st.columns(5)
    columns[0].metric("Accuracy", f"{evaluation.accuracy:.1%}")
    columns[1].metric("Balanced accuracy", f"{evaluation.balanced_accuracy:.1%}")
    columns[2].metric("Macro F1", f"{evaluation.macro_f1:.3f}")
    if evaluation.top_k:
        k = min(evaluation.top_k)
        columns[3].metric(f"Top-{k} accuracy", f"{evaluation.top_k[k]:.1%}")
    else:
        columns[3].metric("Test images", len(evaluation.y_true))
    columns[4].metric(
        "Calibration error (ECE)",
        f"{evaluation.calibration['ece']:.3f}",
        help="Expected calibration error: mean gap between confidence and accuracy.",
    )
    st.caption(
        f"{len(evaluation.y_true)} test images, {evaluation.errors} misclassified. "
        "Metrics from scikit-learn on the dataset's test split."
    )


def confusion_section(evaluation: Evaluation) -> None:
    labels = evaluation.labels
    mode = st.radio(
        "Show", ["counts", "row-normalised"], horizontal=True, key="ev_cm_mode",
        help="Row-normalised: each row sums to 1, the diagonal is each class's recall.",
    )  # fmt: skip
    figure = eval_plots.confusion_figure(evaluation, normalised=mode == "row-normalised")
    event = st.plotly_chart(
        figure, key="ev_cm", on_select="rerun", selection_mode="points", width="stretch"
    )
    clicked = eval_plots.cell_from_selection(getattr(event, "selection", None), labels)
    if clicked != st.session_state.get("ev_clicked"):
        st.session_state["ev_clicked"] = clicked
        if clicked:
            st.session_state["ev_true"], st.session_state["ev_pred"] = clicked
    pairs = most_confused(evaluation, 1)
    default = (pairs[0][0], pairs[0][1]) if pairs else (labels[0], labels[0])
    for key, value in (("ev_true", default[0]), ("ev_pred", default[1])):
        if st.session_state.get(key) not in labels:
            st.session_state[key] = value

    st.markdown("#### Images of a cell")
    st.caption("Click a cell of the matrix, or pick it here.")
    left, middle, right = st.columns([2, 2, 3])
    true_label = left.selectbox("True class", labels, key="ev_true")
    pred_label = middle.selectbox("Predicted class", labels, key="ev_pred")
    sort = right.radio("Order", list(SORTS), format_func=SORTS.get, horizontal=True, key="ev_sort")
    limit = st.slider("Images to show", 6, 120, 24, step=6, key="ev_limit")
    cell = errors_for_cell(evaluation, true_label, pred_label, sort=sort)
    verdict = "correct" if true_label == pred_label else "errors"
    st.markdown(f"**{plain(true_label)} → {plain(pred_label)}** ({verdict}): {len(cell)} image(s)")
    gallery(
        cell,
        limit,
        f"No test image of {plain(true_label)} was predicted as {plain(pred_label)}.",
    )


def errors_section(evaluation: Evaluation) -> None:
    pairs = most_confused(evaluation, 10)
    st.markdown("#### Most confused pairs")
    if pairs:
        st.dataframe(
            pd.DataFrame(pairs, columns=["true", "predicted", "images"]),
            hide_index=True,
            width="stretch",
        )
    else:
        st.success("No test image is misclassified.")
    st.markdown("#### Top losses")
    st.caption("Every misclassified test image, the most confidently wrong first.")
    limit = st.slider("Images to show", 6, 120, 18, step=6, key="ev_top_limit")
    gallery(top_losses(evaluation), limit, "No errors to show.")


def main() -> None:
    completed = completed_runs()
    if not completed:
        st.info("No completed run yet: train a model on the Train page, then come back.")
        return
    info = run_picker(completed, "ev_run")
    version = info.version()
    evaluation = attempt(cached_evaluation, info.run_id, version)
    if evaluation is None:
        return
    headline(evaluation)
    st.download_button(
        "Download HTML report",
        data=lambda: cached_report(info.run_id, version),
        file_name=f"{info.run_id}-{REPORT_FILE}",
        mime="text/html",
        key="ev_report",
    )
    # The tabs rerun the page when switched, so the map's pass over the dataset only
    # runs while its tab is open.
    names = ["Confusion matrix", "Errors", "Per class", "Imbalance", "Curves", "Embedding map"]
    tabs = st.tabs(names, key="ev_tab", on_change="rerun")
    with tabs[0]:
        confusion_section(evaluation)
    with tabs[1]:
        errors_section(evaluation)
    with tabs[2]:
        per_class_section(evaluation)
    with tabs[3]:
        imbalance_section(info, evaluation)
    with tabs[4]:
        curves_section(evaluation)
    with tabs[5]:
        if tabs[5].open:
            embedding_section(info)


main()
