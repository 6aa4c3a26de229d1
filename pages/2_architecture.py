"""Architecture page: pick a preset or edit blocks, and see what the network costs.

The chosen architecture (an ArchSpec dict) is kept in ``st.session_state["arch"]`` for
the Train page, and the image size it was analysed at in
``st.session_state["arch_image_size"]``. The
editor never loses a valid architecture to a bad edit: the error shows beside the
editor and the last valid one stays chosen.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from cnnlab.data.dataset import list_datasets, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import (
    ArchSpec,
    ModelInput,
    analyze,
    get_preset,
    list_presets,
    list_saved_archs,
    load_saved_arch,
    save_arch,
)
from cnnlab.models.analysis import Analysis, format_bytes, format_count
from cnnlab.models.blocks import (
    ACTIVATIONS,
    BACKBONES,
    BLOCK_TYPES,
    PADDINGS,
    blocks_to_rows,
    rows_to_blocks,
    table_columns,
)
from cnnlab.models.diagram import arch_figure
from cnnlab.spec import Choice, Range
from cnnlab.train.recipe import auto_image_size
from pages._ui import current_dataset, dataset_version, spec_widget

ARCH_KEY = "arch"  # the chosen ArchSpec as a dict: what the Train page builds
MODES = ("Preset", "Custom blocks")
EDITORS = ("Table", "JSON")

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


# --- editor state --------------------------------------------------------------------------
# Non-widget keys survive page changes; widget keys are rebuilt from them when missing.


def chosen_arch() -> ArchSpec:
    try:
        return ArchSpec.from_dict(st.session_state.get(ARCH_KEY) or {"preset": "simple"})
    except CnnlabError:
        return ArchSpec.preset("simple")


def load_into_editor(arch: ArchSpec) -> None:
    """Make ``arch`` the chosen architecture and show it in the editor (a callback)."""
    st.session_state[ARCH_KEY] = arch.to_dict()
    st.session_state["arch_mode"] = "Preset" if arch.preset_name else "Custom blocks"
    if arch.preset_name:
        st.session_state["arch_preset"] = arch.preset_name
        for key in [key for key in st.session_state if str(key).startswith("arch_opt_")]:
            del st.session_state[key]  # option widgets restart from the loaded values
    rebase(arch)


def rebase(arch: ArchSpec | None = None) -> None:
    """Restart the block editors from ``arch`` (default: the chosen architecture)."""
    arch = arch or chosen_arch()
    st.session_state["arch_base_blocks"] = [b.to_dict() for b in arch.resolved_blocks()]
    st.session_state["arch_version"] = st.session_state.get("arch_version", 0) + 1


def on_mode_change() -> None:
    if st.session_state["arch_mode"] == "Custom blocks":
        rebase()


def customise(arch_dict: dict) -> None:
    arch = ArchSpec.from_dict(arch_dict).to_blocks()
    load_into_editor(arch)


def load_saved() -> None:
    name = st.session_state.get("arch_saved_pick")
    try:
        load_into_editor(load_saved_arch(name))
        st.session_state["arch_notice"] = f"Loaded **{name}**."
    except CnnlabError as error:
        st.session_state["arch_notice_error"] = str(error)


def import_upload() -> None:
    upload = st.session_state.get("arch_import")
    if upload is None:
        return
    try:
        text = upload.getvalue().decode("utf-8")
        load_into_editor(ArchSpec.from_json(text))
        st.session_state["arch_notice"] = f"Imported **{upload.name}**."
    except UnicodeDecodeError:
        st.session_state["arch_notice_error"] = f"{upload.name} is not a UTF-8 text file."
    except CnnlabError as error:
        st.session_state["arch_notice_error"] = f"{upload.name}: {error}"


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
            classes = int(
                st.number_input(
                    "Classes", 2, 10000, 10, key="arch_classes", help=limits.help("num_classes")
                )
            )
    with far:
        batch = int(
            st.number_input(
                "Batch size (memory)", 1, 4096, 32, key="arch_batch", help=limits.help("batch_size")
            )
        )
    if not dataset:
        st.caption("No dataset chosen: set channels and classes by hand.")
    return int(image_size), int(channels), int(classes), batch


# --- the editors ---------------------------------------------------------------------------


def preset_editor(current: ArchSpec) -> ArchSpec | None:
    presets = list_presets()
    chosen = current.preset_name if current.preset_name in presets else presets[0]
    picker, description = st.columns([1, 3], vertical_alignment="bottom")
    name = picker.selectbox("Preset", presets, index=presets.index(chosen), key="arch_preset")
    preset = get_preset(name)
    description.caption(preset.description)
    defaults = preset.options()
    values = {}
    fields = list(preset.options.__dataclass_fields__.values())
    for field, column in zip(fields, st.columns(4) * 2 if fields else [], strict=False):
        start = current.options.get(field.name) if current.preset_name == name else None
        value = getattr(defaults, field.name) if start is None else start
        with column:
            values[field.name] = spec_widget(
                preset.options, field.name, value, f"arch_opt_{name}_{field.name}"
            )
    try:
        arch = ArchSpec.preset(name, **values)
    except CnnlabError as error:
        st.error(str(error))
        return None
    st.button(
        "Edit these blocks",
        key="arch_customise",
        on_click=customise,
        args=(arch.to_dict(),),
        help="Copy this preset's blocks into the block editor.",
    )
    return arch


def column_config() -> dict:
    config: dict = {
        "type": st.column_config.SelectboxColumn(
            "type", options=list(BLOCK_TYPES), required=True, help="what the block does"
        )
    }
    choices = {"padding": PADDINGS, "activation": ACTIVATIONS, "name": BACKBONES}
    for name, field in table_columns().items():
        limits = field.metadata.get("limits")
        help_text = field.metadata.get("help", "")
        if name in choices or isinstance(limits, Choice):
            options = choices.get(name) or limits.options
            config[name] = st.column_config.SelectboxColumn(
                name, options=list(options), help=help_text
            )
        elif isinstance(field.default, bool):
            config[name] = st.column_config.CheckboxColumn(name, help=help_text)
        elif isinstance(limits, Range):
            config[name] = st.column_config.NumberColumn(
                name,
                min_value=limits.low,
                max_value=limits.high,
                step=1 if limits.integer else 0.05,
                help=help_text,
            )
        else:
            config[name] = st.column_config.TextColumn(name, help=help_text)
    config["mode"] = st.column_config.SelectboxColumn(
        "mode", options=["max", "average"], help="pooling: keep the largest or the mean"
    )
    return config


def blocks_frame(blocks: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(blocks_to_rows(blocks), columns=["type", *table_columns()])
    for name, field in table_columns().items():
        if isinstance(field.default, bool):
            frame[name] = frame[name].astype("boolean")
        elif isinstance(field.default, (int, float)):
            frame[name] = pd.to_numeric(frame[name]).astype("Float64")
        else:
            frame[name] = frame[name].astype("object")
    return frame


def table_editor(version: int) -> ArchSpec | None:
    st.caption(
        "One row per block; empty cells take the default. Add rows at the bottom; use "
        "the JSON editor to reorder."
    )
    edited = st.data_editor(
        blocks_frame(st.session_state["arch_base_blocks"]),
        key=f"arch_table_{version}",
        num_rows="dynamic",
        column_config=column_config(),
        hide_index=True,
        width="stretch",
    )
    records = edited.astype(object).where(edited.notna(), None).to_dict("records")
    try:
        return ArchSpec.from_blocks(rows_to_blocks(records))
    except CnnlabError as error:
        st.error(str(error))
        return None


def json_editor(version: int) -> ArchSpec | None:
    text = st.text_area(
        "Architecture JSON",
        value=json.dumps({"blocks": st.session_state["arch_base_blocks"]}, indent=2),
        height=420,
        key=f"arch_json_{version}",
        help='{"blocks": [...]} or {"preset": NAME, "options": {...}}',
    )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        st.error(
            f"The JSON is not valid: {error.msg} at line {error.lineno}, column {error.colno}."
        )
        return None
    if isinstance(data, list):  # a bare list of blocks
        data = {"blocks": data}
    try:
        return ArchSpec.from_dict(data)
    except CnnlabError as error:
        st.error(str(error))
        return None


def custom_editor() -> ArchSpec | None:
    version = st.session_state["arch_version"]
    editor = st.radio("Edit as", EDITORS, horizontal=True, key="arch_editor", on_change=rebase)
    if editor == "Table":
        return table_editor(version)
    return json_editor(version)


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
        name = st.text_input("Name", value="my-architecture", key="arch_save_name")
        if st.button("Save to workspace", key="arch_save"):
            try:
                saved = save_arch(name, arch)
                st.success(f"Saved as **{saved}**.")
            except CnnlabError as error:
                st.error(str(error))
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

for notice_key, show in (("arch_notice", st.success), ("arch_notice_error", st.error)):
    if notice_key in st.session_state:
        show(st.session_state.pop(notice_key))

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
    try:
        analysis = cached_analysis(edited.to_json(), image_size, channels, classes, batch)
    except CnnlabError as error:
        st.error(str(error))
if analysis is not None:
    st.session_state[ARCH_KEY] = edited.to_dict()
    st.session_state["arch_image_size"] = image_size
    current = edited
else:
    st.info(f"Still chosen: the last valid architecture ({current.label}), shown below.")
    try:
        analysis = cached_analysis(current.to_json(), image_size, channels, classes, batch)
    except CnnlabError as error:
        st.caption(f"The last valid architecture does not fit these inputs either: {error}")
if analysis is not None:
    show_totals(analysis)
    show_layers(analysis)
save_panel(current)
