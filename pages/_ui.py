"""Small Streamlit helpers shared by the pages: the current selections and spec widgets.

The current dataset and run live in ``st.session_state["dataset"]`` and
``st.session_state["run"]`` (names, or None); the sidebar in ``app.py`` shows and
changes them, and a page that creates one sets it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from cnnlab import runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec

DATASET_KEY = "dataset"
RUN_KEY = "run"

T = TypeVar("T")


def attempt(action: Callable[..., T], *args, failure: str = "", **kwargs) -> T | None:
    """Run a cnnlab action for the page; a CnnlabError becomes an error box in place.

    cnnlab's messages say what was wrong and how to fix it, so the page shows them as
    they are (after ``failure``, when given). Returns the action's result, or None when
    it failed.
    """
    try:
        return action(*args, **kwargs)
    except CnnlabError as error:
        st.error(f"{failure}{error}")
        return None


def act(action: Callable, *args, **kwargs) -> None:
    """Run an action that changes what the page shows: redraw the page when it worked,
    show its CnnlabError in place when not."""
    try:
        action(*args, **kwargs)
    except CnnlabError as error:
        st.error(str(error))
        return
    st.rerun()


def attempt_later(key: str, action: Callable, *args, done: str = "", **kwargs) -> None:
    """``attempt`` for widget callbacks, which run before the page is drawn: the
    outcome (the error, or ``done`` when given) waits under ``key`` for show_outcome."""
    try:
        action(*args, **kwargs)
    except CnnlabError as error:
        st.session_state[key] = ("error", str(error))
        return
    if done:
        st.session_state[key] = ("success", done)


def show_outcome(key: str) -> None:
    """Show, once, what a callback run through attempt_later left under ``key``."""
    kind, text = st.session_state.pop(key, (None, ""))
    if kind:
        (st.error if kind == "error" else st.success)(text)


def current_dataset() -> str | None:
    return st.session_state.get(DATASET_KEY)


def select_dataset(name: str | None) -> None:
    """Make ``name`` the current dataset (takes effect in the sidebar on the next run)."""
    st.session_state[DATASET_KEY] = name


def current_run() -> str | None:
    return st.session_state.get(RUN_KEY)


def select_run(run_id: str | None) -> None:
    st.session_state[RUN_KEY] = run_id


def run_picker(available: list[runs.Run], key: str, status: bool = False) -> runs.Run:
    """A page's run picker over ``available`` (newest first): the current run when it
    is among them, else the default among them (runs.default_run). The current run
    (e.g. one still training) stays current until the user picks here."""
    ids = [info.run_id for info in available]
    current = current_run()
    if current not in ids:
        current = runs.default_run(available).run_id
    st.session_state[key] = current
    by_id = {info.run_id: info for info in available}

    def title(run_id: str) -> str:
        info = by_id[run_id]
        return f"{info.label} · {info.dataset}" + (f" · {info.status}" if status else "")

    st.selectbox(
        "Run", ids, key=key, format_func=title, on_change=lambda: select_run(st.session_state[key])
    )
    return by_id[current]


def dataset_version(name: str) -> float:
    """Changes whenever the dataset's index does: a cache key for page-side caches."""
    index = workspace.dataset_dir(name) / "index.csv"
    return index.stat().st_mtime if index.exists() else 0.0


def spec_widget(spec_cls: type[Spec], name: str, value, key: str, label: str | None = None):
    """A widget for one spec field, with range or options taken from the spec's limits.

    Floats and bounded ints get a slider, wide int ranges a number input, choices a
    selectbox; anything without limits a text input. Returns the widget's value.
    """
    limits = spec_cls.limits(name)
    label = label or name.replace("_", " ").capitalize()
    help_text = spec_cls.help(name) or None
    if isinstance(limits, Choice):
        options = list(limits.options)
        index = options.index(value) if value in options else 0
        return st.selectbox(label, options, index=index, key=key, help=help_text)
    if isinstance(limits, Range):
        if limits.integer:
            if limits.high - limits.low <= 64:
                return st.slider(
                    label, int(limits.low), int(limits.high), int(value), key=key, help=help_text
                )
            return st.number_input(
                label, int(limits.low), int(limits.high), int(value), key=key, help=help_text
            )
        # A round step near a hundredth of the range: 0.01 for 1-10, 0.001 for 0-0.5.
        step = 10 ** math.floor(math.log10((limits.high - limits.low) / 100 or 0.01))
        return st.slider(
            label,
            float(limits.low),
            float(limits.high),
            float(value),
            step=step,
            key=key,
            help=help_text,
        )
    if isinstance(value, bool):
        return st.checkbox(label, value=value, key=key, help=help_text)
    return st.text_input(label, value=str(value), key=key, help=help_text)
