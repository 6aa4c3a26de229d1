"""Pieces of the Data page: the cached dataset and preview, the add-images panel and the
health report. Imported by ``pages/1_data.py``."""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st
from PIL import Image

from cnnlab import plots
from cnnlab.data import augment, health, ingest
from cnnlab.data.dataset import list_datasets, load_dataset
from cnnlab.data.samples import SAMPLES
from cnnlab.errors import CnnlabError
from cnnlab.workspace import safe_name
from pages._ui import attempt, can_edit, dataset_version, plain, select_dataset, spec_widget

SAMPLE_LABELS = {
    "count": "Images of the largest class",
    "image_size": "Image size (px)",
    "imbalance": "Imbalance factor",
}
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
        f"Added {report.images} image(s) to **{plain(report.dataset)}**: "
        + ", ".join(f"{plain(label)} {count}" for label, count in report.classes.items())
    )
    if report.ignored:
        st.caption(f"Ignored {report.ignored} system file(s) (e.g. __MACOSX, .DS_Store).")
    if report.rejected:
        st.warning(f"{len(report.rejected)} file(s) were rejected; the rest were kept.")
        st.dataframe(report.rejected, hide_index=True, width="stretch")


def run_ingest(action, *args, **kwargs) -> None:
    """Call an ingest function, show its report, and make its dataset current."""
    with st.spinner("Checking and storing images..."):
        report = attempt(action, *args, edits="add images", **kwargs)
    if report is None:
        return
    st.session_state["last_ingest"] = report
    select_dataset(report.dataset)
    st.rerun()


def sample_options(sample: str) -> dict:
    """Widgets for a built-in sample's options, with the limits its spec declares."""
    spec_cls = SAMPLES[sample]
    fields = dataclasses.fields(spec_cls)
    options = {}
    for field, column in zip(fields, st.columns(len(fields) or 1), strict=False):
        with column:
            options[field.name] = spec_widget(
                spec_cls,
                field.name,
                field.default,
                key=f"ingest_{sample}_{field.name}",
                label=SAMPLE_LABELS.get(field.name),
            )
    return options


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
        options = sample_options(sample)
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
    report = dataset.health()
    counts = st.columns(4)
    counts[0].metric("Images", report.get("images", len(dataset.records)))
    counts[1].metric("Classes", len(dataset.class_names))
    counts[2].metric("Imbalance ratio", f"{report.get('imbalance_ratio') or 1:.1f}:1")
    counts[3].metric("Channels", "grayscale" if dataset.channels == 1 else "colour")
    for warning in report.get("warnings", []):
        st.warning(plain(warning))  # it names classes and files as the user wrote them
    left, middle, right = st.columns([2, 1, 1])
    left.plotly_chart(plots.class_balance_figure(report), key="balance_chart")
    middle.plotly_chart(plots.size_figure(dataset.records), key="size_chart")
    right.plotly_chart(plots.aspect_figure(dataset.records), key="aspect_chart")

    fixes = {
        "label_conflicts": (health.fix_label_conflicts, "Remove conflicting images"),
        "leaks": (health.fix_leaks, "Move leaked copies to train"),
        "duplicates": (health.remove_duplicates, "Keep one copy of each"),
    }
    for key, (title, _) in health.FINDINGS.items():
        if key == "near_duplicates":
            continue  # shown below, as pictures side by side
        # Images by the names they were uploaded under; the stored names come last.
        rows = health.finding_rows(report, key)
        if not rows:
            continue
        with st.expander(f"{title}: {len(rows)}", expanded=key in ("label_conflicts", "leaks")):
            st.dataframe(rows, hide_index=True, width="stretch")
            if key not in fixes:
                continue
            fix, button = fixes[key]
            if can_edit() and st.button(button, key=f"fix_{key}"):
                changed = attempt(fix, name, edits="change datasets")
                if changed is not None:
                    st.toast(f"{button}: {changed} image(s) changed.")
                    st.rerun()
    near_duplicates_panel(name, dataset.path, report)


# What each kind of near-duplicate group is fixed with, and the button that says so.
NEAR_FIXES = {
    "conflict": (health.fix_near_conflicts, "Remove conflicting near-duplicates"),
    "leak": (health.fix_near_leaks, "Move leaked near-duplicates to the earliest split"),
    "duplicate": (health.remove_near_duplicates, "Keep one of each near-duplicate group"),
}
# Groups drawn at most (each is a row of thumbnails).
NEAR_SHOWN = 24


def near_duplicates_panel(name: str, folder, report: dict) -> None:
    groups = report.get("near_duplicates") or []
    if not groups:
        return
    total = report.get("counts", {}).get("near_duplicates", len(groups))
    serious = any(group["kind"] != "duplicate" for group in groups)
    with st.expander(f"{health.FINDINGS['near_duplicates'][0]}: {total}", expanded=serious):
        st.caption(
            "Pictures whose perceptual hashes differ in a few bits: the same photo resized, "
            "re-encoded or cropped a little. Keeping one keeps the first of its group."
        )
        for group in groups[:NEAR_SHOWN]:
            st.markdown(f"**{plain(health.near_kind(group))}** · {group['distance']} bit(s) apart")
            st.image(
                [str(folder / file) for file in group["files"]],
                caption=[
                    f"{source} · {label} · {split}"
                    for source, label, split in zip(
                        group["sources"], group["labels"], group["splits"], strict=True
                    )
                ],
                width=128,
            )
        if len(groups) > NEAR_SHOWN:
            st.caption(f"... and {total - NEAR_SHOWN} more group(s).")
        if not can_edit():
            return
        kinds = {group["kind"] for group in groups}
        for kind, (fix, button) in NEAR_FIXES.items():
            if kind in kinds and st.button(button, key=f"fix_near_{kind}"):
                changed = attempt(fix, name, edits="change datasets")
                if changed is not None:
                    st.toast(f"{button}: {changed} image(s) changed.")
                    st.rerun()
