"""Evaluate page: a run's test metrics, the confusion matrix with a way into the errors
(click a cell, see those images), the imbalance panel and study, curves and the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cnnlab import eval_plots, runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import (
    Evaluation,
    class_distribution,
    errors_for_cell,
    evaluate_run,
    imbalance_ratio,
    most_confused,
    top_losses,
)
from cnnlab.report import REPORT_FILE, html_report, list_studies, load_study, start_imbalance_study
from pages._ui import current_run, select_run

GALLERY_COLUMNS = 6
STUDY_REFRESH_S = 5
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


def _follow_picker() -> None:
    select_run(st.session_state["ev_run"])


def pick_run(completed: list[runs.Run]) -> runs.Run:
    ids = [info.run_id for info in completed]
    current = current_run()
    if current not in ids:
        # Show the default completed run; the current run (e.g. one still training)
        # stays current until the user picks here.
        current = runs.default_run(completed).run_id
    st.session_state["ev_run"] = current
    by_id = {info.run_id: info for info in completed}
    st.selectbox(
        "Run",
        ids,
        key="ev_run",
        on_change=_follow_picker,
        format_func=lambda run_id: f"{by_id[run_id].label} · {by_id[run_id].dataset}",
    )
    return by_id[current]


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


def gallery(predictions, limit: int, empty: str) -> None:
    if not predictions:
        st.info(empty)
        return
    shown = predictions[:limit]
    st.caption(f"Showing {len(shown)} of {len(predictions)} image(s).")
    for start in range(0, len(shown), GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for column, prediction in zip(
            columns, shown[start : start + GALLERY_COLUMNS], strict=False
        ):
            with column:
                caption = (
                    f"true **{prediction.true}** · pred **{prediction.pred}** · "
                    f"{prediction.confidence:.0%} · loss {prediction.loss:.2f}"
                )
                if Path(prediction.file).exists():
                    st.image(prediction.file, width="stretch")
                else:
                    st.caption(f"(image gone: {Path(prediction.file).name})")
                st.markdown(caption)


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
    st.markdown(f"**{true_label} → {pred_label}** ({verdict}): {len(cell)} image(s)")
    gallery(cell, limit, f"No test image of {true_label} was predicted as {pred_label}.")


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


def per_class_section(evaluation: Evaluation) -> None:
    table = pd.DataFrame(evaluation.per_class_rows())
    averages = pd.DataFrame(
        [
            {"average": "macro", **evaluation.macro},
            {"average": "weighted", **evaluation.weighted},
        ]
    )
    st.caption("Click a column header to sort.")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="ev_per_class",
        column_config={
            name: st.column_config.NumberColumn(format="%.3f")
            for name in ("precision", "recall", "f1", "roc_auc", "average_precision")
        },
    )
    st.dataframe(averages, hide_index=True, width="stretch")
    st.plotly_chart(
        eval_plots.per_class_bars(
            {
                metric: {row["class"]: row[metric] for row in evaluation.per_class_rows()}
                for metric in ("precision", "recall", "f1")
            },
            evaluation.labels,
            "Per-class metrics",
            "score",
        ),
        width="stretch",
    )


def imbalance_section(info: runs.Run, evaluation: Evaluation) -> None:
    try:
        distribution = class_distribution(info.dataset)
    except CnnlabError as error:
        st.warning(str(error))
        distribution = {}
    if distribution:
        ratio = imbalance_ratio({label: row["train"] for label, row in distribution.items()})
        st.plotly_chart(eval_plots.class_distribution_figure(distribution), width="stretch")
        if ratio is not None:
            st.caption(f"Imbalance ratio of the train split: {ratio:.1f}:1 (largest/smallest).")
    weights = info.class_weights
    mode = info.train.get("class_weight", "none")
    oversample = info.train.get("oversample", False)
    st.markdown(
        f"This run used class weighting **{mode}**"
        + (" with **oversampling**" if oversample else "")
        + "."
    )
    if weights:
        st.dataframe(
            pd.DataFrame([{"class": k, "weight": v} for k, v in weights.items()]),
            hide_index=True,
        )

    st.markdown("#### Imbalance study")
    st.caption(
        "Train this run's configuration again with class weighting none, balanced, and "
        "oversampling, then compare per-class recall and F1. The runs are queued in the "
        "background; this run counts as the variant it already is."
    )
    if st.button("Start imbalance study", key="ev_study_start"):
        try:
            study_id = start_imbalance_study(info.run_id)
        except CnnlabError as error:
            st.error(str(error))
        else:
            st.success(f"Queued study {study_id}. Its runs appear on the Experiments page.")
    studies = list_studies(source=info.run_id)
    own = info.study  # this run was itself queued by a study
    if own and own not in studies:
        studies.append(own)
    if not studies:
        return
    study_id = st.selectbox("Study", studies, key="ev_study")
    try:
        active = load_study(study_id).active
    except CnnlabError as error:
        st.error(str(error))
        return
    if active:
        # Redraw only this panel while the study's runs train.
        st.fragment(show_study, run_every=STUDY_REFRESH_S)(study_id)
    else:
        show_study(study_id)


def show_study(study_id: str) -> None:
    study = load_study(study_id)
    st.dataframe(
        pd.DataFrame(
            [{"variant": v, "run": study.runs[v], "status": study.statuses[v]} for v in study.runs]
        ),
        hide_index=True,
        width="stretch",
    )
    if study.active:
        st.caption(f"Some runs are still training; this panel refreshes every {STUDY_REFRESH_S} s.")
    if len(study.f1) < 2:
        st.info("The comparison appears when at least two variants have completed.")
        return
    st.dataframe(
        pd.DataFrame(study.table()).style.format(precision=3),
        hide_index=True,
        width="stretch",
    )
    left, right = st.columns(2)
    left.plotly_chart(
        eval_plots.per_class_bars(study.recall, study.classes, "Recall per class", "recall"),
        width="stretch",
    )
    right.plotly_chart(
        eval_plots.per_class_bars(study.f1, study.classes, "F1 per class", "F1"),
        width="stretch",
    )
    deltas = study.deltas("f1")
    if deltas:
        st.plotly_chart(
            eval_plots.delta_heatmap(deltas, f"F1 change against '{study.baseline}'"),
            width="stretch",
        )


def curves_section(evaluation: Evaluation) -> None:
    st.plotly_chart(eval_plots.roc_figure(evaluation), width="stretch")
    st.plotly_chart(eval_plots.pr_figure(evaluation), width="stretch")
    st.plotly_chart(eval_plots.reliability_figure(evaluation), width="stretch")


def main() -> None:
    completed = completed_runs()
    if not completed:
        st.info("No completed run yet: train a model on the Train page, then come back.")
        return
    info = pick_run(completed)
    try:
        version = info.version()
        evaluation = cached_evaluation(info.run_id, version)
    except CnnlabError as error:
        st.error(str(error))
        return
    headline(evaluation)
    st.download_button(
        "Download HTML report",
        data=lambda: cached_report(info.run_id, version),
        file_name=f"{info.run_id}-{REPORT_FILE}",
        mime="text/html",
        key="ev_report",
    )
    tabs = st.tabs(["Confusion matrix", "Errors", "Per class", "Imbalance", "Curves"])
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


main()
