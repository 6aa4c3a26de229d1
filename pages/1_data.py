"""Data page: create or extend a dataset, read its health report, browse it, and preview
augmentation exactly as training will apply it."""

from __future__ import annotations

import dataclasses

import streamlit as st

from cnnlab.data import augment, ingest
from cnnlab.data.dataset import get_orientation_matters, list_datasets, set_orientation_matters
from cnnlab.data.versions import dataset_versions
from cnnlab.train.recipe import auto_augmentation, auto_image_size
from pages._audit_parts import audit_panel
from pages._data_parts import (
    add_images_panel,
    cached_dataset,
    cached_preview,
    health_panel,
    show_report,
)
from pages._ui import (
    act,
    attempt,
    attempt_later,
    can_edit,
    current_dataset,
    dataset_version,
    plain,
    select_dataset,
    show_outcome,
    spec_widget,
)

PAGE_SIZE = 48


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
        f"{len(rows)} image(s) of class {plain(label)}" + ("" if split == "all" else f" in {split}")
    )
    if shown:
        # Each image by the name it was uploaded under (its folder is the class).
        st.image(
            [str(dataset.path / record.file) for record in shown],
            caption=[
                f"{record.upload_name.rsplit('/', 1)[-1]} · {record.split} · "
                f"{record.width}x{record.height}"
                for record in shown
            ],
            width=96,
        )
    if not can_edit():
        return
    with st.expander("Delete images or this class"):
        names = {record.file: record.upload_name for record in shown}
        doomed = st.multiselect(
            "Images on this page to delete",
            list(names),
            format_func=names.get,
            key="gallery_delete_files",
        )
        if doomed and st.button(f"Delete {len(doomed)} image(s)", key="gallery_delete_go"):
            act(ingest.delete_images, name, doomed)
        confirm = st.checkbox(
            f"Yes, delete the whole class {plain(label)}", key="gallery_confirm_class"
        )
        if st.button(
            f"Delete class {plain(label)}", disabled=not confirm, key="gallery_delete_class"
        ):
            act(ingest.delete_class, name, label)


def save_orientation(name: str) -> None:
    attempt_later(
        "orientation_outcome",
        set_orientation_matters,
        name,
        st.session_state["orientation_matters"],
        edits="change a dataset's settings",
    )


def orientation_toggle(name: str) -> bool:
    # Shown from dataset.json on every run (the callback saves a change first), so a
    # value never carries over from another dataset.
    show_outcome("orientation_outcome")
    saved = attempt(get_orientation_matters, name)
    if saved is not None:
        st.session_state["orientation_matters"] = saved
    return st.toggle(
        "Orientation matters (no mirror flips)",
        key="orientation_matters",
        on_change=save_orientation,
        args=(name,),
        disabled=not can_edit(),
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
    spec = attempt(augment.AugmentSpec.from_dict, values)
    if spec is None:
        return
    train = dataset.split("train") or dataset.records
    if not train:
        st.info("This dataset has no images yet: add some above to preview augmentation.")
        return
    left, middle, right = st.columns([3, 2, 1])
    choice = left.selectbox(
        "Image",
        range(min(len(train), 200)),
        format_func=lambda i: f"{train[i].label} · {train[i].upload_name}",
        key="aug_image",
    )
    count = middle.slider("Variants", 1, 15, 7, key="aug_count")
    if right.button("Reseed", key="aug_reseed"):
        st.session_state["aug_seed"] = st.session_state.get("aug_seed", 0) + 1
    seed = st.session_state.get("aug_seed", 0)
    path = str(dataset.path / train[choice].file)
    # At the size training resizes to, so the preview is what the model sees.
    size = st.session_state.get("arch_image_size") or auto_image_size(dataset)
    applied = spec.for_orientation(orientation)
    variants = attempt(cached_preview, path, applied.to_dict(), count, seed, int(size))
    if variants is None:
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
    if spec != saved and can_edit():
        if st.button("Save as this dataset's default", type="primary", key="aug_save"):
            act(augment.save_augment, name, spec)


def versions_panel(name: str) -> None:
    st.caption(
        "Every change (adding images, a fix, a relabel, a removal) makes a new version; "
        "none is edited. A run trains, and is evaluated, on the version it started on."
    )
    rows = attempt(dataset_versions, name) or []
    st.dataframe(rows[::-1], hide_index=True, width="stretch")


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
if can_edit():
    with st.expander("Create a dataset or add images", expanded=name is None):
        add_images_panel(name)
else:
    st.caption("Viewing only: sign in as an editor (sidebar) to add or change images.")

if name:
    st.subheader(name)
    # Stateful tabs: the open tab survives reruns (and the report above coming and
    # going), and only its content runs, so a 5,000-image gallery costs nothing while
    # the health report is shown.
    titles = ["Health report", "Gallery", "Augmentation", "Audit", "Versions"]
    titles += ["Manage"] if can_edit() else []
    health_tab, gallery_tab, augment_tab, audit_tab, versions_tab, *manage_tab = st.tabs(
        titles, key="data_tab", on_change="rerun"
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
    if audit_tab.open:
        with audit_tab:
            audit_panel(name, cached_dataset(name, dataset_version(name)))
    if versions_tab.open:
        with versions_tab:
            versions_panel(name)
    if manage_tab and manage_tab[0].open:
        with manage_tab[0]:
            manage_panel(name)
