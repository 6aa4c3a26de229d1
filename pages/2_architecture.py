"""Architecture page: pick a preset or edit blocks, and see what the network costs.

The chosen architecture (an ArchSpec dict) is kept in ``st.session_state["arch"]`` for
the Train page, and the image size it was analysed at in
``st.session_state["arch_image_size"]``. The
editor never loses a valid architecture to a bad edit: the error shows beside the
editor and the last valid one stays chosen.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab.data.dataset import list_datasets, load_dataset
from cnnlab.models import (
    ArchSpec,
    ModelInput,
    analyze,
    list_saved_archs,
    save_arch,
)
from cnnlab.models.analysis import Analysis, format_bytes, format_count
from cnnlab.models.diagram import arch_figure
from cnnlab.train.recipe import auto_image_size
from pages._architecture_parts import (
    ARCH_KEY,
    NOTICE_KEY,
    chosen_arch,
    custom_editor,
    import_upload,
    load_saved,
    on_mode_change,
    preset_editor,
    rebase,
)
from pages._ui import attempt, can_edit, current_dataset, dataset_version, show_outcome, spec_widget

MODES = ("Preset", "Custom blocks")

st.title("Architecture")
st.caption(
    "Pick a preset or edit the blocks; the table, warnings and diagram follow every "
    "edit. The chosen architecture is what the Train page builds."
)


# --- cached work -------------------------------------------------------------------------


@st.cache_data(show_spinner="Measuring the architecture...", max_entries=64)
def cached_analysis(arch_json: str, image_size: int, channels: int, classes: int, batch: int):
    return analyze(ArchSpec.from_json(arch_json), image_size, channels, classes, batch)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_dataset_shape(name: str, version: float) -> tuple[int, int, int]:
    """Channels, class count and the auto recipe's image size of a dataset."""
    dataset = load_dataset(name)
    return dataset.channels, len(dataset.class_names), auto_image_size(dataset)


if "arch_base_blocks" not in st.session_state:
    rebase()


# --- input sizes ---------------------------------------------------------------------------


def input_panel() -> tuple[int, int, int, int]:
    limits = ModelInput
    dataset = current_dataset()
    if dataset not in list_datasets():
        dataset = None
    left, middle, right, far = st.columns(4)
    shape = cached_dataset_shape(dataset, dataset_version(dataset)) if dataset else None
    with left:
        image_size = spec_widget(
            limits,
            "image_size",
            # The dataset's own size (as the auto recipe picks it) until the user sets one.
            st.session_state.get("arch_image_size", shape[2] if shape else 64),
            "arch_image_size_input",
            "Image size (px)",
        )
    if dataset:
        channels, classes, _ = shape
        middle.metric("Channels", channels, help=f"from dataset {dataset}")
        right.metric("Classes", classes, help=f"from dataset {dataset}")
    else:
        with middle:
            channels = spec_widget(limits, "channels", 3, "arch_channels", "Channels")
        with right:
            classes = spec_widget(limits, "num_classes", 10, "arch_classes", "Classes")
    with far:
        batch = spec_widget(limits, "batch_size", 32, "arch_batch", "Batch size (memory)")
    if not dataset:
        st.caption("No dataset chosen: set channels and classes by hand.")
    return int(image_size), int(channels), int(classes), batch


# --- the analysis ----------------------------------------------------------------------


def rows_frame(analysis: Analysis) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "layer": row["name"],
            "type": row["type"],
            "details": row["details"],
            "output": "x".join(str(size) for size in row["output_shape"]),
            "params": row["params"],
            "MACs": format_count(row["macs"]),
            "memory / image": format_bytes(row["activation_bytes"]),
            "receptive field": row["receptive_field"],
            "jump": row["jump"],
        }
        for row in analysis.rows
    )
    return frame.astype({"receptive field": "Int64", "jump": "Int64"})


def show_totals(analysis: Analysis) -> None:
    totals = analysis.totals
    a, b, c, d = st.columns(4)
    a.metric(
        "Parameters", f"{totals['params']:,}", help=f"{totals['trainable_params']:,} trainable"
    )
    b.metric("MACs / image", format_count(totals["macs"]))
    c.metric("Activations / image", format_bytes(totals["activation_bytes"]))
    d.metric(
        "Training memory",
        format_bytes(totals["training_memory_bytes"]),
        help=f"weights, gradients, Adam state and activations at batch size "
        f"{totals['batch_size']} (a lower bound)",
    )
    for warning in analysis.warnings:
        st.warning(warning)


def show_layers(analysis: Analysis) -> None:
    diagram, table = st.columns([2, 3])
    diagram.plotly_chart(arch_figure(analysis), key="arch_diagram")
    table.dataframe(
        rows_frame(analysis),
        hide_index=True,
        width="stretch",
        key="arch_rows",
        column_config={"params": st.column_config.NumberColumn(format="localized")},
    )


def save_panel(arch: ArchSpec) -> None:
    st.subheader("Save, load, import, export")
    left, right = st.columns(2)
    with left:
        if can_edit():
            name = st.text_input("Name", value="my-architecture", key="arch_save_name")
            if st.button("Save to workspace", key="arch_save"):
                saved = attempt(save_arch, name, arch, edits="save architectures")
                if saved:
                    st.success(f"Saved as {saved}.")
        saved_names = list_saved_archs()
        if saved_names:
            st.selectbox("Saved architectures", saved_names, key="arch_saved_pick")
            st.button("Load", key="arch_load", on_click=load_saved)
    with right:
        st.download_button(
            "Export JSON",
            arch.to_json(),
            file_name=f"{arch.preset_name or 'architecture'}.json",
            mime="application/json",
            key="arch_export",
        )
        st.file_uploader("Import JSON", type=["json"], key="arch_import", on_change=import_upload)


# --- page ----------------------------------------------------------------------------------

show_outcome(NOTICE_KEY)

image_size, channels, classes, batch = input_panel()
current = chosen_arch()
mode = st.radio(
    "Architecture",
    MODES,
    horizontal=True,
    key="arch_mode",
    index=0 if current.preset_name else 1,
    on_change=on_mode_change,
)
edited = preset_editor(current) if mode == "Preset" else custom_editor()
analysis = None
if edited is not None:
    analysis = attempt(cached_analysis, edited.to_json(), image_size, channels, classes, batch)
if analysis is not None:
    st.session_state[ARCH_KEY] = edited.to_dict()
    st.session_state["arch_image_size"] = image_size
    current = edited
else:
    st.info(f"Still chosen: the last valid architecture ({current.label}), shown below.")
    analysis = attempt(
        cached_analysis,
        current.to_json(),
        image_size,
        channels,
        classes,
        batch,
        failure="The last valid architecture does not fit these inputs either: ",
    )
if analysis is not None:
    show_totals(analysis)
    show_layers(analysis)
save_panel(current)
