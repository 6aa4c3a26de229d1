"""cnnlab's entry point: `streamlit run app.py`.

Navigation over the pages in ``pages/`` and the sidebar every page shares: the current
dataset, the current run and the device training will use.
"""

from __future__ import annotations

import streamlit as st

from cnnlab.data.dataset import list_datasets
from pages._ui import DATASET_KEY, RUN_KEY

st.set_page_config(page_title="cnnlab", layout="wide")

PAGES = [
    st.Page("pages/1_data.py", title="Data", icon="🖼️", default=True),
]

SIDEBAR_DATASET = "sidebar_dataset"


def _follow_sidebar() -> None:
    st.session_state[DATASET_KEY] = st.session_state[SIDEBAR_DATASET]


def sidebar() -> None:
    datasets = list_datasets()
    current = st.session_state.get(DATASET_KEY)
    if current not in datasets:
        current = "digits" if "digits" in datasets else (datasets[0] if datasets else None)
        st.session_state[DATASET_KEY] = current
    # The page may have changed the dataset (e.g. after an upload): show its choice.
    st.session_state[SIDEBAR_DATASET] = current
    with st.sidebar:
        st.markdown("### cnnlab")
        if datasets:
            st.selectbox("Dataset", datasets, key=SIDEBAR_DATASET, on_change=_follow_sidebar)
        else:
            st.caption("No dataset yet: create one on the Data page.")
        run = st.session_state.get(RUN_KEY)
        st.caption(f"Run: {run}" if run else "Run: none selected")


page = st.navigation(PAGES)
sidebar()
page.run()
