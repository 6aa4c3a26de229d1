"""Train page: set up a run from the TrainSpec's own limits, launch it in a worker
process, and watch it live.

Nothing trains in this script: "Start training" calls ``cnnlab.train.start_run`` (a
detached worker), and while runs are queued or running the run panel and the queue
re-read the run folders every two seconds, so a refresh, a closed tab or a second
browser shows the same run.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import runs
from cnnlab import train as training
from pages._train_live import LIVE_REFRESH_S, is_live, shared_queue, show_progress
from pages._train_parts import new_run_form
from pages._ui import attempt, can_edit, current_dataset, current_run, device_text, select_run

PICK_KEY = "train_pick_run"

st.title("Train")


def queue_table(active: list[dict]) -> None:
    limit = attempt(training.max_concurrent_runs)  # fails on a bad CNNLAB_MAX_CONCURRENT_RUNS
    if limit is None:
        return
    if active:
        st.dataframe(
            pd.DataFrame(active)[
                [
                    "run_id",
                    "status",
                    "position",
                    "dataset",
                    "arch",
                    "epochs_run",
                    "epochs",
                    "created",
                ]
            ],
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption(f"No run is queued or running (up to {limit} at a time).")


def queue_and_recent(dataset: str | None, active: list[dict]) -> None:
    st.subheader("Queue")
    queue_table(active)
    recent = runs.list_runs(dataset)[:20]
    if recent:
        ids = [info.run_id for info in recent]
        statuses = {info.run_id: info.status for info in recent}
        if current_run() in ids:
            # Follow the current run (e.g. one just started) in the picker.
            st.session_state[PICK_KEY] = current_run()
        st.selectbox(
            "Watch a run",
            ids,
            key=PICK_KEY,
            # Statuses of finished runs only: an active run's changes under this list.
            format_func=lambda run_id: (
                run_id
                if statuses[run_id] in runs.ACTIVE_STATUSES
                else f"{run_id} ({statuses[run_id]})"
            ),
            on_change=lambda: select_run(st.session_state[PICK_KEY]),
        )


def run_to_show(dataset: str | None) -> str | None:
    """The current run; after a refresh (a new session), the live or latest run."""
    run_id = current_run()
    if run_id:
        return run_id
    default = runs.default_run(runs.list_runs(dataset))
    if default:
        select_run(default.run_id)
        return default.run_id
    return None


# --- the page ---------------------------------------------------------------------------------

with st.spinner("Looking for GPUs..."):
    st.caption(f"Device: {device_text()}")

dataset = current_dataset()
if dataset is None:
    st.info("No dataset chosen: pick one in the sidebar or create one on the Data page.")
elif can_edit():
    new_run_form(dataset)
else:
    st.caption("Viewing only: sign in as an editor (sidebar) to start or change runs.")


def run_and_queue(dataset: str | None, live: bool) -> None:
    """The run shown and the queue; while ``live``, once every LIVE_REFRESH_S seconds
    until nothing is queued or running any more (then the page is drawn once more,
    without the timer)."""
    run_id = run_to_show(dataset)
    progress = None
    if run_id and attempt(runs.load_run, run_id):
        st.subheader("Run")
        progress = show_progress(run_id)
    active = shared_queue()
    queue_and_recent(dataset, active)
    if live and not active and not is_live(progress):
        st.rerun()


if shared_queue():
    st.fragment(run_and_queue, run_every=LIVE_REFRESH_S)(dataset, live=True)
else:
    run_and_queue(dataset, live=False)
