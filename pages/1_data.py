"""Data page: create or extend a dataset, read its health report, browse it, and preview
augmentation exactly as training will apply it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from cnnlab import plots
from cnnlab.data import augment, ingest
from cnnlab.data.dataset import (
    get_orientation_matters,
    list_datasets,
    load_dataset,
    set_orientation_matters,
)
from cnnlab.errors import CnnlabError
from cnnlab.train.recipe import auto_augmentation, auto_image_size
from cnnlab.workspace import safe_name
from pages._ui import current_dataset, dataset_version, select_dataset, spec_widget

PAGE_SIZE = 48
SOURCES = ("Built-in sample", "Zip file", "Folder (directory upload)", "Images of one class")


@st.cache_data(show_spinner=False, max_entries=8)
def cached_dataset(name: str, version: float):
    """The dataset, re-read only when its index changes (``version`` is the index mtime)."""
    return load_dataset(name)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_preview(
    path: str, spec_json: dict, count: int, seed: int, image_size: int
) -> list[np.ndarray]:
    with Image.open(path) as image:
        pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return augment.preview(
        pixels, augment.AugmentSpec.from_dict(spec_json), n=count, seed=seed, image_size=image_size
    )


def show_report(report: ingest.IngestReport) -> None:
    st.success(
        f"Added {report.images} image(s) to **{report.dataset}**: "
        + ", ".join(f"{label} {count}" for label, count in report.classes.items())
    )
    if report.ignored:
        st.caption(f"Ignored {report.ignored} system file(s) (e.g. __MACOSX, .DS_Store).")
    if report.rejected:
        st.warning(f"{len(report.rejected)} file(s) were rejected; the rest were kept.")
        st.dataframe(pd.DataFrame(report.rejected), hide_index=True, width="stretch")


def run_ingest(action, *args, **kwargs) -> None:
    """Call an ingest function, show its report, and make its dataset current."""
    try:
        with st.spinner("Checking and storing images..."):
            report = action(*args, **kwargs)
    except CnnlabError as error:
        st.error(str(error))
        return
    st.session_state["last_ingest"] = report
    select_dataset(report.dataset)
    st.rerun()


def dataset_exists(name: str) -> bool:
    try:
        return safe_name(name, "dataset name") in list_datasets()
    except CnnlabError:
        return False  # an unusable name gets its message when used


def add_images_panel(existing: str | None) -> None:
    source = st.radio("Source", SOURCES, horizontal=True, key="ingest_source")
    target_new = True
    if existing:
        target_new = (
            st.radio(
                "Into",
                ("A new dataset", f"The current dataset ({existing})"),
                horizontal=True,
                key="ingest_target",
            )
            == "A new dataset"
        )
    name = existing
    taken = False
    if target_new:
        default = {"Built-in sample": "digits"}.get(source, "my-images")
        name = st.text_input("New dataset name", value=default, key="ingest_name")
        taken = dataset_exists(name)
        if taken:
            st.warning(
                f"A dataset named {name!r} exists: choose another name, or pick it in the "
                "sidebar and add to it with 'The current dataset'."
            )

    if source == "Built-in sample":
        sample = st.selectbox(
            "Sample",
            ("digits", "shapes"),
            key="ingest_sample",
            help="digits: scikit-learn's 1,797 handwritten digits (10 classes, grayscale). "
            "shapes: generated shapes on noisy backgrounds; raise the imbalance to demo "
            "class weighting.",
        )
        options = {}
        if sample == "shapes":
            left, middle, right = st.columns(3)
            options["count"] = left.number_input("Images of the largest class", 10, 5000, 200)
            options["image_size"] = middle.number_input("Image size (px)", 16, 256, 64)
            options["imbalance"] = right.slider(
                "Imbalance factor",
                1.0,
                10.0,
                1.0,
                help="Each class has this many times fewer images than the one before.",
            )
        if st.button("Load sample", type="primary", key="ingest_sample_go"):
            if target_new:
                run_ingest(ingest.ingest, f"sample:{sample}", name, options=options)
            else:
                st.error("A sample makes a dataset of its own: choose 'A new dataset'.")
    elif source == "Zip file":
        upload = st.file_uploader(
            "A .zip with one folder per class (optionally under train/ val/ test/)",
            type=["zip"],
            key="ingest_zip",
        )
        if upload is not None and st.button("Ingest zip", type="primary", key="ingest_zip_go"):
            if target_new:
                run_ingest(ingest.ingest, upload, name)
            else:
                run_ingest(ingest.add_source, name, upload)
    else:
        directory = source.startswith("Folder")
        uploads = st.file_uploader(
            "A folder with one sub-folder per class" if directory else "Images",
            accept_multiple_files="directory" if directory else True,
            key="ingest_files_dir" if directory else "ingest_files",
        )
        label = None
        if not directory:
            label = st.text_input("Class of these images", key="ingest_label")
        if uploads and st.button("Add images", type="primary", key="ingest_files_go"):
            if not directory and not (label or "").strip():
                st.error("Give these images a class name, e.g. `cat`.")
                return
            if taken:
                st.error(f"A dataset named {name!r} exists already; choose another name.")
                return
            files = [(upload.name, upload.getvalue()) for upload in uploads]
            run_ingest(ingest.add_files, name, files, label)


def health_panel(name: str) -> None:
    dataset = cached_dataset(name, dataset_version(name))
    health = dataset.health()
    counts = st.columns(4)
    counts[0].metric("Images", health.get("images", len(dataset.records)))
    counts[1].metric("Classes", len(dataset.class_names))
    counts[2].metric("Imbalance ratio", f"{health.get('imbalance_ratio') or 1:.1f}:1")
    counts[3].metric("Channels", "grayscale" if dataset.channels == 1 else "colour")
    for warning in health.get("warnings", []):
        st.warning(warning)
    left, middle, right = st.columns([2, 1, 1])
    left.plotly_chart(plots.class_balance_figure(health), key="balance_chart")
    middle.plotly_chart(plots.size_figure(dataset.records), key="size_chart")
    right.plotly_chart(plots.aspect_figure(dataset.records), key="aspect_chart")

    fixes = (
        (
            "label_conflicts",
            "Same image under two labels",
            ingest.fix_label_conflicts,
            "Remove conflicting images",
        ),
        ("leaks", "Same image in two splits", ingest.fix_leaks, "Move leaked copies to train"),
        (
            "duplicates",
            "Exact duplicates within a class",
            ingest.remove_duplicates,
            "Keep one copy of each",
        ),
    )
    for key, title, fix, button in fixes:
        problems = health.get(key) or []
        if not problems:
            continue
        with st.expander(f"{title}: {len(problems)}", expanded=key != "duplicates"):
            st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")
            if st.button(button, key=f"fix_{key}"):
                try:
                    changed = fix(name)
                except CnnlabError as error:
                    st.error(str(error))
                else:
                    st.toast(f"{button}: {changed} image(s) changed.")
                    st.rerun()


def gallery_panel(name: str) -> None:
    dataset = cached_dataset(name, dataset_version(name))
    left, middle, right = st.columns([2, 2, 1])
    label = left.selectbox("Class", dataset.class_names, key="gallery_class")
    split = middle.selectbox("Split", ("all", "train", "val", "test"), key="gallery_split")
    rows = [
        record
        for record in dataset.records
        if record.label == label and (split == "all" or record.split == split)
    ]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = right.number_input(f"Page (of {pages})", 1, pages, 1, key="gallery_page")
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    st.caption(
        f"{len(rows)} image(s) of class {label}" + ("" if split == "all" else f" in {split}")
    )
    if shown:
        st.image(
            [str(dataset.path / record.file) for record in shown],
            caption=[f"{record.split} · {record.width}x{record.height}" for record in shown],
            width=96,
        )
    with st.expander("Delete images or this class"):
        doomed = st.multiselect(
            "Images on this page to delete",
            [record.file for record in shown],
            format_func=lambda file: file.rsplit("/", 1)[-1],
            key="gallery_delete_files",
        )
        if doomed and st.button(f"Delete {len(doomed)} image(s)", key="gallery_delete_go"):
            act(ingest.delete_images, name, doomed)
        confirm = st.checkbox(f"Yes, delete the whole class {label}", key="gallery_confirm_class")
        if st.button(f"Delete class {label}", disabled=not confirm, key="gallery_delete_class"):
            act(ingest.delete_class, name, label)


def act(action, *args) -> None:
    try:
        action(*args)
    except CnnlabError as error:
        st.error(str(error))
    else:
        st.rerun()


def save_orientation(name: str) -> None:
    try:
        set_orientation_matters(name, st.session_state["orientation_matters"])
    except CnnlabError as error:
        st.session_state["orientation_error"] = str(error)


def orientation_toggle(name: str) -> bool:
    # Shown from dataset.json on every run (the callback saves a change first), so a
    # value never carries over from another dataset.
    if message := st.session_state.pop("orientation_error", None):
        st.error(message)
    try:
        st.session_state["orientation_matters"] = get_orientation_matters(name)
    except CnnlabError as error:
        st.error(str(error))
    return st.toggle(
        "Orientation matters (no mirror flips)",
        key="orientation_matters",
        on_change=save_orientation,
        args=(name,),
        help="On when mirroring or turning an image changes its meaning: digits, text, "
        "scans. Off for ordinary photos (a mirrored cat is still a cat). When on, "
        "augmentation leaves out flips and keeps rotation within 0.05 of a turn (18°).",
    )


def augmentation_panel(name: str) -> None:
    dataset = cached_dataset(name, dataset_version(name))
    saved = augment.load_augment(name)
    orientation = orientation_toggle(name)
    # Nothing saved yet: start from what the auto recipe would train with.
    start = augment.AugmentSpec.from_dict(auto_augmentation(dataset))
    start = start if saved.is_neutral() else saved
    st.caption(
        "These are the Keras preprocessing layers training applies to each image; "
        "the preview below is drawn by the same layers."
    )
    values = {}
    columns = st.columns(3)
    for i, field in enumerate(dataclasses.fields(augment.AugmentSpec)):
        with columns[i % 3]:
            values[field.name] = spec_widget(
                augment.AugmentSpec, field.name, getattr(start, field.name), key=f"aug_{field.name}"
            )
    try:
        spec = augment.AugmentSpec.from_dict(values)
    except CnnlabError as error:
        st.error(str(error))
        return
    train = dataset.split("train") or dataset.records
    if not train:
        st.info("This dataset has no images yet: add some above to preview augmentation.")
        return
    left, middle, right = st.columns([3, 2, 1])
    choice = left.selectbox(
        "Image",
        range(min(len(train), 200)),
        format_func=lambda i: f"{train[i].label} · {train[i].source or train[i].file}",
        key="aug_image",
    )
    count = middle.slider("Variants", 1, 15, 7, key="aug_count")
    if right.button("Reseed", key="aug_reseed"):
        st.session_state["aug_seed"] = st.session_state.get("aug_seed", 0) + 1
    seed = st.session_state.get("aug_seed", 0)
    path = str(dataset.path / train[choice].file)
    try:
        # At the size training resizes to, so the preview is what the model sees.
        size = st.session_state.get("arch_image_size") or auto_image_size(dataset)
        applied = spec.for_orientation(orientation)
        variants = cached_preview(path, applied.to_dict(), count, seed, int(size))
    except CnnlabError as error:
        st.error(str(error))
        return
    st.image(
        [path, *variants],
        caption=["original", *[f"variant {i + 1}" for i in range(len(variants))]],
        width=112,
        clamp=True,
    )
    if applied != spec:
        st.caption(
            "Flips are off and rotation is kept within 0.05 of a turn because orientation "
            "matters for this dataset."
        )
    if saved.is_neutral() and spec == start:
        st.caption(
            "Nothing saved for this dataset yet: these are what the auto recipe trains "
            "with. Save them, or your own, as the dataset's default."
        )
    elif spec == saved:
        st.caption("This is the dataset's saved default.")
    if spec != saved:
        if st.button("Save as this dataset's default", type="primary", key="aug_save"):
            act(augment.save_augment, name, spec)


def manage_panel(name: str) -> None:
    sure = st.checkbox(f"Yes, delete the dataset {name} and its images", key="delete_confirm")
    if st.button("Delete dataset", disabled=not sure, key="delete_dataset"):
        select_dataset(None)
        act(ingest.delete_dataset, name)


st.title("Data")
name = current_dataset()
report = st.session_state.pop("last_ingest", None)
if report is not None:
    show_report(report)

if not list_datasets():
    st.info(
        "No dataset yet. Load a built-in sample to explore right away, or upload your own "
        "images below: a zip with one folder per class is the quickest."
    )
with st.expander("Create a dataset or add images", expanded=name is None):
    add_images_panel(name)

if name:
    st.subheader(name)
    # Stateful tabs: the open tab survives reruns (and the report above coming and
    # going), and only its content runs, so a 5,000-image gallery costs nothing while
    # the health report is shown.
    health_tab, gallery_tab, augment_tab, manage_tab = st.tabs(
        ["Health report", "Gallery", "Augmentation", "Manage"], key="data_tab", on_change="rerun"
    )
    if health_tab.open:
        with health_tab:
            health_panel(name)
    if gallery_tab.open:
        with gallery_tab:
            gallery_panel(name)
    if augment_tab.open:
        with augment_tab:
            augmentation_panel(name)
    if manage_tab.open:
        with manage_tab:
            manage_panel(name)
