"""Small Streamlit helpers shared by the pages: the visitor's role, running actions,
the current selections and spec widgets.

The current dataset and run live in ``st.session_state["dataset"]`` and
``st.session_state["run"]`` (names, or None); the sidebar in ``app.py`` shows and
changes them, and a page that creates one sets it.

Every action that changes shared state goes through :func:`act`, :func:`attempt_later`
or :func:`attempt` with ``edits=``, which refuse unless the visitor is an editor
(cnnlab.access); pages also leave such controls out for viewers (:func:`can_edit`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import TypeVar

import streamlit as st

from cnnlab import access, devices, runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec

DATASET_KEY = "dataset"
RUN_KEY = "run"
ROLE_KEY = "_cnnlab_role"  # set by signing in only (never a widget key)
CHANGES = "change shared datasets, runs or architectures"

MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")

T = TypeVar("T")


# --- the visitor's role --------------------------------------------------------------------


@st.cache_resource
def sign_in_throttle() -> access.Throttle:
    """Wrong-password counts per client, shared by every session of this server."""
    return access.Throttle()


def role() -> str:
    """This session's role: signed in, else what a visitor starts as (editor when open)."""
    config = access.Access.configured()
    if not config.protected:
        return access.EDITOR
    return st.session_state.get(ROLE_KEY) or config.starting_role()


def can_edit() -> bool:
    return access.can_edit(role())


def sign_in(password: str) -> bool:
    """Sign this session in with ``password``; shows why not and returns False on failure."""
    address = st.context.ip_address  # None when unknown (and not a str under AppTest)
    client = address if isinstance(address, str) and address else "unknown"
    config = access.Access.configured()
    signed = attempt(access.sign_in, config, sign_in_throttle(), client, password)
    if signed:
        st.session_state[ROLE_KEY] = signed
    return bool(signed)


def sign_out() -> None:
    st.session_state.pop(ROLE_KEY, None)


def sign_in_panel() -> None:
    """Sign in and out when the workspace is protected (cnnlab.access)."""
    if not access.Access.configured().protected:
        return
    if can_edit():
        st.caption("Signed in as an editor.")
        st.button("Sign out", key="sign_out", on_click=sign_out)
        return
    st.caption("Viewing: sign in as an editor to change data, runs and models.")
    with st.form("sign_in_form", border=False):
        password = st.text_input("Password", type="password", key="sign_in_password")
        if st.form_submit_button("Sign in") and sign_in(password):
            st.rerun()


def viewing_gate() -> None:
    """With a viewer password, nothing shows until the visitor signs in."""
    if role() != access.NOBODY:
        return
    st.title("cnnlab")
    st.write("This cnnlab asks for a password. Sign in to view it.")
    with st.form("view_sign_in_form"):
        password = st.text_input("Password", type="password", key="view_password")
        if st.form_submit_button("Sign in") and sign_in(password):
            st.rerun()
    st.stop()


def plain(text: object) -> str:
    """``text`` escaped for st.markdown and friends, so user text (run names, tags, class
    names, errors) shows as written: no links, images, emphasis or emoji shortcodes."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


# --- the device ------------------------------------------------------------------------------


@st.cache_resource
def device_detection() -> Future:
    """The devices, detected once per server by a child process (it imports TensorFlow:
    seconds on a cold start) that a background thread waits for: no page waits."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-devices").submit(
        devices.describe_devices_apart
    )


def device_text(wait_s: float | None = None) -> str | None:
    """ "GPU: name" / "CPU (no GPU found)" once detected (waiting up to ``wait_s``; None =
    as long as it takes), else None."""
    try:
        return device_detection().result(timeout=wait_s)["device"]
    except FuturesTimeout:
        return None
    except Exception as error:  # noqa: BLE001 - a broken driver must not break the page
        return f"unknown ({error})"


# --- running actions -------------------------------------------------------------------------


def attempt(
    action: Callable[..., T], *args, failure: str = "", edits: str = "", **kwargs
) -> T | None:
    """Run a cnnlab action for the page; a CnnlabError becomes an error box in place.

    cnnlab's messages say what was wrong and how to fix it, so the page shows them as
    they are (after ``failure``, when given). ``edits`` says what the action changes
    ("start runs"): then only an editor may run it. Returns the action's result, or
    None when it failed.
    """
    try:
        if edits:
            access.require_editor(role(), edits)
        return action(*args, **kwargs)
    except CnnlabError as error:
        st.error(f"{failure}{error}")
        return None


def act(action: Callable, *args, **kwargs) -> None:
    """Run an action that changes shared state (editors only): redraw the page when it
    worked, show its CnnlabError in place when not."""
    try:
        access.require_editor(role(), CHANGES)
        action(*args, **kwargs)
    except CnnlabError as error:
        st.error(str(error))
        return
    st.rerun()


def attempt_later(
    key: str, action: Callable, *args, done: str = "", edits: str = "", **kwargs
) -> None:
    """``attempt`` for widget callbacks, which run before the page is drawn: the
    outcome (the error, or ``done`` when given) waits under ``key`` for show_outcome."""
    try:
        if edits:
            access.require_editor(role(), edits)
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


def run_picker(
    available: list[runs.Run], key: str, status: bool = False, default: runs.Run | None = None
) -> runs.Run:
    """A page's run picker over ``available`` (newest first): the current run when it
    is among them, else ``default`` or the default among them (runs.default_run). The
    current run (e.g. one still training) stays current until the user picks here."""
    ids = [info.run_id for info in available]
    current = current_run()
    if current not in ids:
        current = (default or runs.default_run(available)).run_id
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
