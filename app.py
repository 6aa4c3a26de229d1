"""cnnlab's entry point: `streamlit run app.py`.

Navigation over the pages in ``pages/`` and the sidebar every page shares: the current
dataset, the current run, the device training will use, signing in (when the workspace
is protected, see cnnlab.access) and the limits in force.
"""

from __future__ import annotations

import sys

import streamlit as st

from cnnlab import limits, predict, runs
from cnnlab.data.dataset import list_datasets
from pages._ui import (
    DATASET_KEY,
    RUN_KEY,
    attempt,
    device_text,
    plain,
    sign_in_panel,
    viewing_gate,
)

DEVICE_POLL_S = 1.0
# Progress bars jump to each new value instead of sliding to it: a slide is repainted
# frame by frame. Ten tabs on a bare Streamlit page whose one bar is redrawn every 2 s
# spent 0.44 of a core with the slide and 0.27 without.
STILL_PROGRESS_BARS = "<style>[data-testid='stProgress'] * {transition: none !important;}</style>"

st.set_page_config(page_title="cnnlab", layout="wide")

# No page icons: Material icons are fetched from the internet, and emoji need fonts
# that many machines (and headless browsers) lack.
PAGES = [
    st.Page("pages/1_data.py", title="Data", default=True),
    st.Page("pages/2_architecture.py", title="Architecture", url_path="architecture"),
    st.Page("pages/3_train.py", title="Train", url_path="train"),
    st.Page("pages/4_evaluate.py", title="Evaluate", url_path="evaluate"),
    st.Page("pages/5_predict.py", title="Predict", url_path="predict"),
    st.Page("pages/6_experiments.py", title="Experiments", url_path="experiments"),
    st.Page("pages/7_tune.py", title="Tune", url_path="tune"),
]


def _follow(state_key: str, widget_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def sidebar_choice(label: str, state_key: str, options: list, default, format_func=str) -> None:
    """A sidebar selectbox kept in step with ``st.session_state[state_key]``.

    Pages change the selection by setting ``state_key`` (e.g. after an upload or a
    launch); the widget shows it on the next run, and a user's pick sets it back.
    """
    current = st.session_state.get(state_key)
    if current not in options:
        current = default
        st.session_state[state_key] = current
    if not options:
        return
    widget_key = f"sidebar_{state_key}"
    st.session_state[widget_key] = current
    st.sidebar.selectbox(
        label,
        options,
        key=widget_key,
        on_change=_follow,
        args=(state_key, widget_key),
        format_func=format_func,
    )


def sidebar() -> None:
    st.sidebar.markdown("### cnnlab")
    datasets = list_datasets()
    default = "digits" if "digits" in datasets else (datasets[0] if datasets else None)
    sidebar_choice("Dataset", DATASET_KEY, datasets, default)
    if not datasets:
        st.sidebar.caption("No dataset yet: create one on the Data page.")

    dataset = st.session_state.get(DATASET_KEY)
    dataset_runs = {info.run_id: info for info in runs.list_runs(dataset)} if dataset else {}
    # A new session (a refresh, a second browser) shows the run every page would.
    preferred = runs.default_run(dataset_runs.values())
    sidebar_choice(
        "Run",
        RUN_KEY,
        list(dataset_runs),
        preferred.run_id if preferred else None,
        format_func=lambda run_id: f"{run_id} ({dataset_runs[run_id].status})",
    )
    if dataset and not dataset_runs:
        st.sidebar.caption("No run of this dataset yet: train one on the Train page.")
    with st.sidebar:
        device_caption()
        sign_in_panel()
        with st.expander("Limits"):
            limits_table()


def device_caption() -> None:
    """The device training will use. It is detected off the page's path (importing
    TensorFlow takes seconds on a cold start): until then a small fragment polls."""
    text = device_text(wait_s=0.1)
    if text is None:
        poll_device()
    else:
        st.caption(f"Device: {text}")


@st.fragment(run_every=DEVICE_POLL_S)
def poll_device() -> None:
    if device_text(wait_s=0) is None:
        st.caption("Device: detecting...")
    else:
        st.rerun()  # once: the whole page again, with the plain caption


def limits_table() -> None:
    rows = attempt(limits.describe)
    if rows:  # one text element: an interactive grid costs live pages' watchers a re-render
        st.markdown(
            "\n".join(
                f"- {plain(row['limit'])}: **{plain(row['value'])}** (`{row['variable']}`)"
                for row in rows
            )
        )
        st.caption("Set by whoever runs cnnlab, with these environment variables.")


if "keras" in sys.modules:  # Streamlit clears Keras after every script run once loaded
    predict.gate_clear_session()
page = st.navigation(PAGES)
st.html(STILL_PROGRESS_BARS)  # style only: drawn in no page's space
viewing_gate()
sidebar()
page.run()
