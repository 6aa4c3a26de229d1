"""Train page: set up a run from the TrainSpec's own limits, launch it in a worker
process, and watch it live.

Nothing trains in this script: "Start training" calls ``cnnlab.train.start_run`` (a
detached worker). While runs are queued or running, each watching browser fetches the
run's progress from the server every second (``cnnlab.live``) and the page redraws its
panel every ten seconds, its curves and the queue every thirty, all read from the run's
folder, so a refresh, a closed tab or a second browser shows the same run.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import live as live_route
from cnnlab import runs
from cnnlab import train as training
from pages._train_live import (
    CURVES_REFRESH_S,
    LIVE_REFRESH_S,
    PANEL_REFRESH_S,
    forget_shared,
    shared_queue,
    show_curves,
    show_progress,
)
from pages._train_parts import new_run_form
from pages._ui import attempt, can_edit, current_dataset, current_run, device_text, select_run

PICK_KEY = "train_pick_run"

st.title("Train")


def queue_table(active: list[dict]) -> None:
    limit = attempt(training.max_concurrent_runs)  # fails on a bad CNNLAB_MAX_CONCURRENT_RUNS
    if limit is None:
        return
    if active:
        # A static table: an interactive grid costs every watching browser a re-render
        # at each redraw of the page, wherever it is drawn.
        st.table(
            pd.DataFrame(active).set_index("run_id")[
                [
                    "status",
                    "position",
                    "dataset",
                    "arch",
                    "epochs_run",
                    "epochs",
                    "created",
                ]
            ]
        )
    else:
        st.caption(f"No run is queued or running (up to {limit} at a time).")


def run_picker(dataset: str | None) -> None:
    """The dataset's recent runs to watch. Drawn with the page, above the live parts, so
    their redraws do not redraw it (inside them, its open list closed every redraw)."""
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


def when_idle_redraw(live: bool) -> None:
    """Once nothing is queued or running any more, the whole page once more, read
    afresh and without timers."""
    if live and not shared_queue():
        forget_shared()
        st.rerun()


def run_panel(run_id: str, live: bool) -> None:
    show_progress(run_id)
    when_idle_redraw(live)


def curves_and_queue(run_id: str | None, live: bool) -> None:
    if run_id:
        show_curves(run_id)
    st.subheader("Queue")
    queue_table(shared_queue())
    when_idle_redraw(live)


def part(draw, seconds: float, live: bool):
    """``draw`` as it is, or while ``live`` a fragment redrawn every ``seconds``. Each
    redraw costs every watching browser a re-render. The browsers fetch the run's bars
    and numbers themselves every second (cnnlab.live), so its panel (status, messages,
    controls) is redrawn every PANEL_REFRESH_S (without that route, every
    LIVE_REFRESH_S), its curves and the queue, which change slowly, every
    CURVES_REFRESH_S."""
    return st.fragment(draw, run_every=seconds) if live else draw


# --- the page ---------------------------------------------------------------------------------

# Detected off the page's path (TensorFlow's import takes seconds on a cold start); the
# sidebar redraws the page once it is known.
st.caption(f"Device: {device_text(wait_s=0.1) or 'detecting...'}")

dataset = current_dataset()
if dataset is None:
    st.info("No dataset chosen: pick one in the sidebar or create one on the Data page.")
elif can_edit():
    new_run_form(dataset)
else:
    st.caption("Viewing only: sign in as an editor (sidebar) to start or change runs.")


live = bool(shared_queue())
run_id = run_to_show(dataset)
readable = bool(run_id and attempt(runs.load_run, run_id))
if readable:
    st.subheader("Run")
run_picker(dataset)
if readable:
    panel_every = PANEL_REFRESH_S if live_route.route_served() else LIVE_REFRESH_S
    part(run_panel, panel_every, live)(run_id, live)
part(curves_and_queue, CURVES_REFRESH_S, live)(run_id if readable else None, live)
