"""Predict page: drop images on a trained run's model and see what it thinks, how sure it
is, and where it looked (Grad-CAM, feature maps, gate weights); export the model."""

from __future__ import annotations

import statistics

import pandas as pd
import streamlit as st

from cnnlab import explain, limits, predict, runs
from cnnlab.predict import Prediction, Predictor
from pages._predict_parts import cached_predictor, details, export_panel
from pages._ui import attempt, run_picker

# Images shown with every detail; more are listed in a table with one picked to inspect.
DETAIL_LIMIT = 4
CHECKPOINT_TITLES = {"best": "Best epoch", "last": "Last epoch"}

st.title("Predict")


# ------------------------------------------------------------------------- caches


@st.cache_data(show_spinner="Predicting...", max_entries=32)
def cached_predictions(
    run_id: str, checkpoint: str, version: tuple, files: tuple[tuple[str, bytes], ...], top_k: int
) -> list[Prediction]:
    predictor = cached_predictor(run_id, checkpoint, version)
    # Streamlit calls keras.backend.clear_session() after every script run, which empties
    # TensorFlow's kernel cache; rebuild it first so the latency shown is the model's.
    predictor.warm_up()
    return predictor.predict_many(files, top_k=top_k, keep_images=True)


# ---------------------------------------------------------------------- widgets


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


# ------------------------------------------------------------------------- page


def main() -> None:
    available = predict.runs_with_model()
    if not available:
        st.info(
            "No run has a trained model yet. Train one on the Train page (or with "
            "`python -m cnnlab train`), then come back to try it on your images."
        )
        return
    # A finished run by default: a training run's model changes with every checkpoint,
    # and each change reloads it (the load test measured 22 s per prediction so).
    finished = runs.default_run([info for info in available if not info.is_active])
    info = run_picker(available, "pr_run", status=True, default=finished)
    checkpoints = info.saved_models()
    controls = st.columns([1, 1, 2])
    checkpoint = controls[0].selectbox(
        "Model", checkpoints, format_func=CHECKPOINT_TITLES.get, key="pr_checkpoint"
    )
    # Changes when the model file is rewritten, so the cached model follows.
    version = info.version(checkpoint)
    predictor = attempt(cached_predictor, info.run_id, checkpoint, version)
    if predictor is None:
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
    if attempt(limits.check_predict_upload, files) is None:
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
