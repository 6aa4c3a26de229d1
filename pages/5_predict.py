"""Predict page: drop images on a trained run's model and see what it thinks, how sure it
is, and where it looked (Grad-CAM, feature maps, gate weights); export the model."""

from __future__ import annotations

import hashlib
import statistics

import numpy as np
import pandas as pd
import streamlit as st

from cnnlab import explain, export, predict, runs
from cnnlab.errors import CnnlabError
from cnnlab.predict import Prediction, Predictor
from pages._ui import current_run, select_run

# Images shown with every detail; more are listed in a table with one picked to inspect.
DETAIL_LIMIT = 4
CHECKPOINT_TITLES = {"best": "Best epoch", "last": "Last epoch"}

st.title("Predict")


# ------------------------------------------------------------------------- caches


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def cached_predictor(run_id: str, checkpoint: str, version: tuple) -> Predictor:
    return Predictor(run_id, checkpoint).load()


@st.cache_data(show_spinner="Predicting...", max_entries=32)
def cached_predictions(
    run_id: str, checkpoint: str, version: tuple, files: tuple[tuple[str, bytes], ...], top_k: int
) -> list[Prediction]:
    predictor = cached_predictor(run_id, checkpoint, version)
    # Streamlit calls keras.backend.clear_session() after every script run, which empties
    # TensorFlow's kernel cache; rebuild it first so the latency shown is the model's.
    predictor.warm_up()
    return predictor.predict_many(files, top_k=top_k, keep_images=True)


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


# ---------------------------------------------------------------------- widgets


def _follow_picker() -> None:
    select_run(st.session_state["pr_run"])


def pick_run(available: list[runs.Run]) -> runs.Run:
    """The run picker: the current run when it has a model, else the latest completed."""
    ids = [info.run_id for info in available]
    current = current_run()
    if current not in ids:
        current = predict.default_run_id(available)
        select_run(current)
    st.session_state["pr_run"] = current
    by_id = {info.run_id: info for info in available}
    st.selectbox(
        "Run",
        ids,
        key="pr_run",
        on_change=_follow_picker,
        format_func=lambda run_id: (
            f"{by_id[run_id].label} · {by_id[run_id].dataset} · {by_id[run_id].status}"
        ),
    )
    return by_id[current]


def uploaded_files() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader(
        "Images (any format and size; several at once for a table of predictions)",
        accept_multiple_files=True,
        key="pr_files",
    )
    files = [(upload.name, upload.getvalue()) for upload in uploads or []]
    if st.toggle("Take a photo with the camera", key="pr_use_camera"):
        photo = st.camera_input("Camera", key="pr_camera")
        if photo is not None:
            files.append((photo.name or "camera.jpg", photo.getvalue()))
    return files


# --------------------------------------------------------------------- sections


def verdict(prediction: Prediction, threshold: float) -> None:
    if not prediction.ok:
        st.error(f"Could not read this file: {prediction.error}")
    elif prediction.unsure(threshold):
        st.warning(
            f"**Unsure**: the top guess, {prediction.label}, has only "
            f"{prediction.confidence:.1%}, under the {threshold:.0%} threshold."
        )
    else:
        st.success(f"**{prediction.label}** ({prediction.confidence:.1%})")


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


def explanation_controls(predictor: Predictor) -> None:
    layers = explain.conv_layers(predictor.model_)
    if not layers:
        return
    with st.expander("Explanation settings"):
        columns = st.columns(4)
        columns[0].selectbox("Grad-CAM layer", layers, index=len(layers) - 1, key="pr_cam_layer")
        columns[1].selectbox(
            "Grad-CAM class", ["predicted", *predictor.class_names_], key="pr_cam_class"
        )
        columns[2].selectbox("Feature-map layer", layers, index=0, key="pr_map_layer")
        columns[3].slider("Feature maps shown", 4, 64, 16, step=4, key="pr_map_count")


def summary(predictions: list[Prediction], threshold: float) -> None:
    done = [p for p in predictions if p.ok]
    columns = st.columns(4)
    columns[0].metric("Images", len(predictions))
    columns[1].metric("Unsure", sum(p.unsure(threshold) for p in done))
    columns[2].metric("Unreadable", len(predictions) - len(done))
    if done:
        median = statistics.median(p.latency_ms for p in done)
        columns[3].metric(
            "Latency (median)",
            f"{median:.1f} ms",
            help="From the file's bytes to the probabilities (decode, resize, model); in a "
            "batch the model call is shared among its images. Not included: the one-off "
            "warm-up after each page rerun, when Streamlit has cleared TensorFlow's caches.",
        )


def table(predictions: list[Prediction], threshold: float, run_id: str) -> None:
    rows = predict.predictions_table(predictions, threshold)
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config={"confidence": st.column_config.ProgressColumn(
            "confidence", min_value=0.0, max_value=1.0, format="percent")},
    )  # fmt: skip
    st.download_button(
        "Download predictions (CSV)",
        predict.predictions_csv(predictions, threshold),
        file_name=f"predictions-{run_id}.csv",
        mime="text/csv",
        key="pr_csv",
    )


def export_panel(predictor: Predictor) -> None:
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
        fmt = st.radio(
            "Format", export.FORMATS, format_func=export.FORMAT_TITLES.get, horizontal=True,
            key="pr_export_format",
        )  # fmt: skip
        left, right = st.columns(2)
        marker = (run_id, checkpoint, fmt)
        if left.button("Export", key="pr_export_go"):
            try:
                with st.spinner(f"Exporting as {export.FORMAT_TITLES[fmt]}..."):
                    st.session_state["pr_export"] = (
                        marker, export.export_model(run_id, fmt, checkpoint))  # fmt: skip
            except CnnlabError as error:
                st.error(str(error))
        if right.button("Check parity", key="pr_parity_go"):
            try:
                with st.spinner("Running the exported model on the test images..."):
                    report = export.check_export(run_id, fmt, checkpoint, predictor=predictor)
                    st.session_state["pr_parity"] = (marker, report)
                    st.session_state["pr_export"] = (
                        marker, export.export_model(run_id, fmt, checkpoint))  # fmt: skip
            except CnnlabError as error:
                st.error(str(error))
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


# ------------------------------------------------------------------------- page


def main() -> None:
    available = predict.runs_with_model()
    if not available:
        st.info(
            "No run has a trained model yet. Train one on the Train page (or with "
            "`python -m cnnlab train`), then come back to try it on your images."
        )
        return
    info = pick_run(available)
    checkpoints = info.saved_models()
    controls = st.columns([1, 1, 2])
    checkpoint = controls[0].selectbox(
        "Model", checkpoints, format_func=CHECKPOINT_TITLES.get, key="pr_checkpoint"
    )
    # Changes when the model file is rewritten, so the cached model follows.
    version = info.version(checkpoint)
    try:
        predictor = cached_predictor(info.run_id, checkpoint, version)
    except CnnlabError as error:
        st.error(str(error))
        return
    classes = predictor.class_names_
    top_k = controls[1].slider(
        "Top k", 1, max(2, min(10, len(classes))), min(3, len(classes)), key="pr_top_k"
    )
    threshold = controls[2].slider(
        "Unsure below", 0.0, 1.0, 0.5, step=0.05, key="pr_threshold",
        help="A prediction whose top probability is under this is shown as unsure.",
    )  # fmt: skip
    st.caption(
        f"Dataset **{info.dataset}** · {len(classes)} classes · "
        f"{predictor.image_size_}x{predictor.image_size_} "
        f"{'grayscale' if predictor.channels_ == 1 else 'colour'} · status {info.status}"
        + (" (still training: this is the best model so far)" if info.is_active else "")
    )

    files = uploaded_files()
    if not files:
        st.info("Drop one or more images above (or take a photo) to see what the model thinks.")
        export_panel(predictor)
        return
    predictions = cached_predictions(info.run_id, checkpoint, version, tuple(files), top_k)
    summary(predictions, threshold)
    explanation_controls(predictor)
    if len(predictions) > 1:
        table(predictions, threshold, info.run_id)
    if len(predictions) <= DETAIL_LIMIT:
        for index, prediction in enumerate(predictions):
            if len(predictions) > 1:
                st.subheader(prediction.file)
            details(prediction, index, predictor, threshold, version)
    else:
        names = [p.file for p in predictions]
        chosen = st.selectbox("Inspect one image", names, key="pr_inspect")
        index = names.index(chosen)
        details(predictions[index], index, predictor, threshold, version)
    export_panel(predictor)


main()
