"""The Evaluate page's embedding map (pages/4_evaluate.py): the run's penultimate-layer
features of every image of its dataset, projected to 2-D, with outliers ringed; a click
on a point (or picking an image below the map) shows its image and nearest neighbours.

Plotly cannot put an image inside a hover box, so the clicked image is shown under the
map instead of on hover.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from cnnlab import embedding, runs
from cnnlab.embedding import Embedding
from cnnlab.embedding_plots import embedding_figure, point_from_selection
from pages._ui import attempt, dataset_version, plain

# t-SNE takes minutes beyond a few thousand points on a CPU: larger sets are sampled.
TSNE_LIMIT = 3000
NEIGHBOURS = 8
THUMB_COLUMNS = 8
METHODS = {"pca": "PCA", "tsne": "t-SNE"}
COLOURS = {"label": "label", "prediction": "prediction", "correct": "right / wrong"}
POINT_KEY = "ev_map_point"


@st.cache_data(show_spinner=False, max_entries=4)
def cached_embedding(run_id: str, version: tuple) -> Embedding:
    return embedding.features(run_id)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_map(run_id: str, version: tuple, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(indices of the images drawn, their 2-D points)``."""
    features = cached_embedding(run_id, version)
    shown = np.arange(len(features))
    if method == "tsne":
        shown = embedding.stratified_sample(features.labels, TSNE_LIMIT)
    return shown, embedding.project(features.features[shown], method)


def selected_index(selection, shown: Sequence[int]) -> int | None:
    """The embedding index of the clicked point (points are numbered as drawn)."""
    position = point_from_selection(selection, len(shown))
    return None if position is None else int(shown[position])


def audited_label_issues(dataset: str) -> set[str]:
    """Stored names of the dataset's open label issues (its last audit's), to mark."""
    from cnnlab.audit import load_audit

    audit = attempt(load_audit, dataset) or {}
    return {issue["file"] for issue in audit.get("label_issues", [])}


def embedding_section(info: runs.Run, label_issues: Collection[str] | None = None) -> None:
    """The map of ``info``'s features; ``label_issues`` are stored names to mark (the
    dataset's last audit's when not given)."""
    if label_issues is None:
        label_issues = audited_label_issues(info.dataset)
    st.caption(
        "Each point is an image of the dataset (every split), placed by what the model's "
        "last hidden layer makes of it: images the model finds alike sit together. "
        "Click a point to see the image and its nearest neighbours."
    )
    version = (*info.version("best"), dataset_version(info.dataset))
    with st.spinner("Running the model over the dataset's images..."):
        features = attempt(cached_embedding, info.run_id, version)
    if features is None:
        return
    if not len(features):
        st.info("The dataset has no images to map.")
        return
    left, right = st.columns(2)
    method = left.radio(
        "Projection", list(METHODS), format_func=METHODS.get, horizontal=True,
        key="ev_map_method",
        help="PCA keeps overall distances and is instant; t-SNE keeps neighbourhoods "
        "(clusters) and takes longer.",
    )  # fmt: skip
    colour_by = right.radio(
        "Colour by", list(COLOURS), format_func=COLOURS.get, horizontal=True, key="ev_map_colour"
    )
    with st.spinner(f"Projecting {len(features)} images with {METHODS[method]}..."):
        shown, points = cached_map(info.run_id, version, method)
    if len(shown) < len(features):
        st.caption(
            f"t-SNE on a stratified sample of {len(shown)} of {len(features)} images "
            "(each class keeps its share); PCA shows them all."
        )
    found = embedding.find_outliers(features)
    outlier_files = {row["file"] for row in found}
    subset = features.subset(shown)
    figure = embedding_figure(
        points,
        subset.labels,
        subset.predictions,
        subset.sources,
        subset.files,
        colour_by=colour_by,
        outliers=outlier_files,
        label_issues=label_issues,
        title=f"Embedding map ({METHODS[method]})",
    )
    event = st.plotly_chart(
        figure, key="ev_map", on_select="rerun", selection_mode="points", width="stretch"
    )
    clicked = selected_index(getattr(event, "selection", None), shown)
    if clicked is not None and clicked != st.session_state.get("ev_map_clicked"):
        st.session_state["ev_map_clicked"] = clicked
        st.session_state[POINT_KEY] = clicked
    st.caption(
        f"Ringed: {len(found)} outlier(s), images unlike the rest of their class "
        f"(robust z-score of the distance to their class above {embedding.OUTLIER_Z})."
    )
    outlier_table(found)
    point_section(features)


def outlier_table(found: list[dict]) -> None:
    if not found:
        return
    with st.expander(f"Outliers ({len(found)})"):
        st.dataframe(
            pd.DataFrame(found)[["source", "label", "split", "score", "file"]],
            hide_index=True,
            width="stretch",
        )


def point_section(features: Embedding) -> None:
    """The picked image, its label and prediction, and its nearest neighbours."""
    count = len(features)
    if st.session_state.get(POINT_KEY) not in range(count):
        st.session_state.pop(POINT_KEY, None)
    index = st.selectbox(
        "Image", range(count), index=None, key=POINT_KEY,
        format_func=lambda i: f"{features.sources[i]} ({features.labels[i]})",
        placeholder="Click a point of the map, or pick an image",
    )  # fmt: skip
    if index is None:
        return
    predictions = features.predictions
    image, text = st.columns([1, 3])
    picture = features.path(index)
    if picture.exists():
        image.image(str(picture), width="stretch")
    text.markdown(
        f"**{plain(features.sources[index])}** ({features.splits[index]})  \n"
        f"label **{plain(features.labels[index])}** · predicted "
        f"**{plain(predictions[index])}** · {features.confidence[index]:.0%}"
    )
    text.caption(plain(f"Stored as {features.files[index]}"))
    st.markdown("#### Nearest neighbours")
    st.caption("The images whose features point the most the same way (cosine similarity).")
    near = embedding.neighbours(features, index, NEIGHBOURS)
    columns = st.columns(THUMB_COLUMNS)
    for column, (other, similarity) in zip(columns, near, strict=False):
        with column:
            path = features.path(other)
            if path.exists():
                st.image(str(path), width="stretch")
            st.caption(
                f"{plain(features.sources[other])} · {plain(features.labels[other])} · "
                f"{similarity:.2f}",
                help=f"Stored as {features.files[other]}; predicted {predictions[other]}",
            )
