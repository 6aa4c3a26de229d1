"""The Architecture page's editor state and block editors (preset, table, JSON).

Non-widget session keys (the chosen ``arch``, ``arch_base_blocks``, ``arch_version``)
survive page changes; the editors' widget keys are rebuilt from them when missing.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, get_preset, list_presets, load_saved_arch
from cnnlab.models.blocks import ACTIVATIONS, BACKBONES, BLOCK_TYPES, PADDINGS
from cnnlab.models.table import blocks_to_rows, rows_to_blocks, table_columns
from cnnlab.spec import Choice, Range
from pages._ui import attempt, attempt_later, spec_widget

ARCH_KEY = "arch"  # the chosen ArchSpec as a dict: what the Train page builds
NOTICE_KEY = "arch_notice"  # what loading or importing an architecture did
EDITORS = ("Table", "JSON")


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
    attempt_later(
        NOTICE_KEY, lambda: load_into_editor(load_saved_arch(name)), done=f"Loaded **{name}**."
    )


def import_upload() -> None:
    upload = st.session_state.get("arch_import")
    if upload is None:
        return
    try:
        text = upload.getvalue().decode("utf-8")
    except UnicodeDecodeError:
        st.session_state[NOTICE_KEY] = ("error", f"{upload.name} is not a UTF-8 text file.")
        return
    attempt_later(
        NOTICE_KEY,
        lambda: load_into_editor(ArchSpec.from_json(text)),
        done=f"Imported **{upload.name}**.",
    )


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
    arch = attempt(ArchSpec.preset, name, **values)
    if arch is None:
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
    return attempt(lambda: ArchSpec.from_blocks(rows_to_blocks(records)))


def json_editor(version: int) -> ArchSpec | None:
    text = st.text_area(
        "Architecture JSON",
        value=json.dumps({"blocks": st.session_state["arch_base_blocks"]}, indent=2),
        height=420,
        key=f"arch_json_{version}",
        help='{"blocks": [...]} or {"preset": NAME, "options": {...}}',
    )
    return attempt(ArchSpec.from_json, text)


def custom_editor() -> ArchSpec | None:
    version = st.session_state["arch_version"]
    editor = st.radio("Edit as", EDITORS, horizontal=True, key="arch_editor", on_change=rebase)
    if editor == "Table":
        return table_editor(version)
    return json_editor(version)
