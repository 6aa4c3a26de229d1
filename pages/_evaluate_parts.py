"""Pieces of the Evaluate page (pages/4_evaluate.py): the image gallery, the per-class
table, the imbalance panel and study, and the curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cnnlab import eval_plots, runs
from cnnlab.data.dataset import load_dataset
from cnnlab.evaluate import Evaluation
from cnnlab.study import list_studies, load_study, start_imbalance_study
from pages._ui import attempt, can_edit, plain

GALLERY_COLUMNS = 6
STUDY_REFRESH_S = 5


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
                    f"true **{plain(prediction.true)}** · pred **{plain(prediction.pred)}** · "
                    f"{prediction.confidence:.0%} · loss {prediction.loss:.2f}"
                )
                # The image by the name it was uploaded under; the stored name on hover.
                name = prediction.source or Path(prediction.file).name
                if Path(prediction.file).exists():
                    st.image(prediction.file, width="stretch")
                else:
                    name = f"(image gone: {name})"
                st.markdown(caption)
                st.caption(plain(name), help=f"Stored as {prediction.file}")


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
    # The dataset's health report (as the Data page shows it): images per class and split.
    dataset = attempt(load_dataset, info.dataset)
    health = dataset.health() if dataset else {}
    if health.get("classes"):
        st.plotly_chart(eval_plots.class_distribution_figure(health["classes"]), width="stretch")
        st.caption(
            f"Imbalance ratio: {health['imbalance_ratio']:.1f}:1 (largest class / smallest); "
            "the splits keep each class's share."
        )
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
    if can_edit() and st.button("Start imbalance study", key="ev_study_start"):
        study_id = attempt(start_imbalance_study, info.run_id, edits="start runs")
        if study_id:
            st.success(f"Queued study {study_id}. Its runs appear on the Experiments page.")
    studies = list_studies(source=info.run_id)
    own = info.study  # this run was itself queued by a study
    if own and own not in studies:
        studies.append(own)
    if not studies:
        return
    study_id = st.selectbox("Study", studies, key="ev_study")
    study = attempt(load_study, study_id)
    if study is None:
        return
    if study.active:
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
