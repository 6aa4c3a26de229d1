"""Pieces of the Predict page (pages/5_predict.py): the model caches, one image's details
(verdict, top-k chart, Grad-CAM, feature maps, gate weights) and the export panel."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from cnnlab import explain, export, predict
from cnnlab.predict import Prediction, Predictor
from pages._ui import attempt, can_edit, plain

# ------------------------------------------------------------------------- caches


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def cached_predictor(run_id: str, checkpoint: str, version: tuple) -> Predictor:
    return Predictor(run_id, checkpoint).load()


def pixels_key(pixels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@st.cache_data(show_spinner=False, max_entries=256)
def cached_grad_cam(
    run_id, checkpoint, version, key: str, _pixels, layer: str, class_index: int
) -> np.ndarray:
    model = cached_predictor(run_id, checkpoint, version).model_
    return explain.grad_cam(model, _pixels, layer, class_index)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_feature_maps(run_id, checkpoint, version, key: str, _pixels, layer: str) -> np.ndarray:
    model = cached_predictor(run_id, checkpoint, version).model_
    return explain.feature_maps(model, _pixels, layer)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_gate_weights(run_id, checkpoint, version, key: str, _pixels) -> dict:
    model = cached_predictor(run_id, checkpoint, version).model_
    return explain.gate_weights(model, _pixels)


# --------------------------------------------------------------------- sections


def verdict(prediction: Prediction, threshold: float) -> None:
    if not prediction.ok:
        st.error(f"Could not read this file: {prediction.error}")
    elif prediction.unsure(threshold):
        st.warning(
            f"**Unsure**: the top guess, {plain(prediction.label)}, has only "
            f"{prediction.confidence:.1%}, under the {threshold:.0%} threshold."
        )
    else:
        st.success(f"**{plain(prediction.label)}** ({prediction.confidence:.1%})")


def details(
    prediction: Prediction, index: int, predictor: Predictor, threshold: float, version: tuple
) -> None:
    """Everything about one image: verdict, top-k chart, Grad-CAM, feature maps, gates."""
    verdict(prediction, threshold)
    if not prediction.ok:
        return
    model = predictor.model_
    run_id, checkpoint = predictor.run_id, predictor.checkpoint
    left, right = st.columns([1, 2])
    left.image(explain.display_image(prediction.image), caption=prediction.file)
    left.caption(f"Latency {prediction.latency_ms:.1f} ms")
    right.plotly_chart(
        predict.top_k_figure(prediction, threshold), key=f"pr_topk_{index}", width="stretch"
    )

    layers = explain.conv_layers(model)
    if not layers:
        st.caption("This model has no convolution layers to explain.")
        return
    key = pixels_key(prediction.pixels)
    cam_tab, maps_tab, *gate_tab = st.tabs(
        ["Grad-CAM", "Feature maps", *(["Gate weights"] if explain.gate_layers(model) else [])]
    )
    with cam_tab:
        cam_layer = st.session_state.get("pr_cam_layer", layers[-1])
        explained = st.session_state.get("pr_cam_class", "predicted")
        class_index = (
            prediction.class_index
            if explained == "predicted"
            else predictor.class_names_.index(explained)
        )
        heat = cached_grad_cam(
            run_id, checkpoint, version, key, prediction.pixels, cam_layer, class_index
        )
        columns = st.columns(2)
        columns[0].image(
            explain.overlay_heatmap(prediction.image, heat),
            caption=f"Grad-CAM for {predictor.class_names_[class_index]} at {cam_layer}",
        )
        quadrants = explain.heat_by_quadrant(heat)
        names = ("top left", "top right", "bottom left", "bottom right")
        hottest = int(np.argmax(quadrants))
        columns[1].caption(
            "Red: where raising the pixels would most raise this class's score. "
            f"Most heat ({quadrants.flat[hottest]:.0%}) in the {names[hottest]}."
            if quadrants.sum() > 0
            else "No location raises this class's score (the map is empty)."
        )
    with maps_tab:
        layer = st.session_state.get("pr_map_layer", layers[0])
        count = st.session_state.get("pr_map_count", 16)
        maps = cached_feature_maps(run_id, checkpoint, version, key, prediction.pixels, layer)
        height, width, channels = maps.shape
        st.image(
            explain.feature_map_grid(maps, max_channels=count),
            caption=f"{layer}: the first {min(count, channels)} of {channels} feature maps, "
            f"each {height}x{width} (bright = strong response)",
        )
    if gate_tab:
        with gate_tab[0]:
            weights = cached_gate_weights(run_id, checkpoint, version, key, prediction.pixels)
            labels = {name: explain.gate_branch_labels(model, name) for name in weights}
            st.plotly_chart(
                explain.gate_weights_figure(weights, labels), key=f"pr_gates_{index}",
                width="stretch",
            )  # fmt: skip
            st.caption("A gated block weighs its branches per image: which kernel it trusts.")


def export_panel(predictor: Predictor) -> None:
    if not can_edit():
        return  # the model is the workspace's to hand out: editors only
    run_id, checkpoint = predictor.run_id, predictor.checkpoint
    with st.expander("Export the model"):
        st.caption(
            "Every format takes raw 0-255 pixels of any size: resizing and rescaling are "
            "layers of the model, so other tools cannot get the preprocessing wrong. The "
            "parity check runs the exported model on the run's test images and compares it "
            "with the model used here."
        )
        st.download_button(
            f"Download {predictor.model_path_.name}",
            data=predictor.model_path_.read_bytes,
            file_name=f"{run_id}.keras",
            mime="application/octet-stream",
            key="pr_download_keras",
        )
        st.download_button(
            f"Download {export.LABELS_FILE}",
            data=export.labels_text(predictor.class_names_),
            file_name=f"{run_id}-{export.LABELS_FILE}",
            mime="text/plain",
            key="pr_download_labels",
            help="The class names, one per line: line i names the model's output i.",
        )
        fmt = st.radio(
            "Format", export.FORMATS, format_func=export.FORMAT_TITLES.get, horizontal=True,
            key="pr_export_format",
        )  # fmt: skip
        left, right = st.columns(2)
        marker = (run_id, checkpoint, fmt)
        if left.button("Export", key="pr_export_go"):
            with st.spinner(f"Exporting as {export.FORMAT_TITLES[fmt]}..."):
                result = attempt(
                    export.export_model, run_id, fmt, checkpoint, edits="export models"
                )
            if result:
                st.session_state["pr_export"] = (marker, result)
        if right.button("Check parity", key="pr_parity_go"):
            with st.spinner("Running the exported model on the test images..."):
                report = attempt(
                    export.check_export, run_id, fmt, checkpoint, predictor=predictor,
                    edits="export models",
                )  # fmt: skip
                result = report and attempt(export.export_model, run_id, fmt, checkpoint)
            if result:
                st.session_state["pr_parity"] = (marker, report)
                st.session_state["pr_export"] = (marker, result)
        stored = st.session_state.get("pr_export")
        if stored and stored[0] == marker:
            result = stored[1]
            name, mime = export.download_name(result)
            st.caption(f"Exported to `{result.path}` ({result.size_bytes / 2**20:.1f} MB).")
            st.download_button(
                f"Download {name}",
                data=lambda: export.download(result)[1],
                file_name=name,
                mime=mime,
                key="pr_download_export",
            )
        parity = st.session_state.get("pr_parity")
        if parity and parity[0] == marker:
            report = parity[1]
            columns = st.columns(3)
            columns[0].metric("Test images", report.images)
            columns[1].metric("Label agreement", f"{report.agreement:.1%}")
            columns[2].metric("Largest |Δp|", f"{report.max_abs_diff:.1e}")
            (st.success if report.passed else st.error)(report.summary())
            if report.skipped:
                st.caption(f"{report.skipped} test image(s) could not be read and were skipped.")
