"""The Train page's run panel: status, messages, the bars and numbers (drawn by
``pages/_live_panel.py``), the controls, the fork panel and the curves (used by
``pages/3_train.py``, which redraws it live while runs are queued or running). What
every watching session reads is read once for all of them."""

from __future__ import annotations

import math
import threading
import time

import streamlit as st

from cnnlab import live, runs
from cnnlab import train as training
from cnnlab.train import TrainSpec
from cnnlab.train.progress import curves_figure, run_progress
from pages._live_panel import live_panel
from pages._train_parts import learning_rate_widget
from pages._ui import act, attempt, can_edit, select_run, spec_widget

# The page's redraw period, while runs are active, for the run's panel (status, its
# messages, the controls) ...
PANEL_REFRESH_S = 10.0
# ... and for all of it, bars included, when the server has no such route (``streamlit
# run app.py`` by hand) ...
LIVE_REFRESH_S = 2.0
# ... and for the curves (a training run's are rebuilt as often) and the queue. Each
# redraw of two Plotly charts costs a watching browser about 0.2 s of CPU: every 10 s,
# ten tabs took 0.4 of a core for them alone.
CURVES_REFRESH_S = 30.0
STATUS_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "completed": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/pause_circle:",
}


def control(action, *args) -> None:
    """``act`` on this run; what every session shows of it is read afresh."""

    def then_refresh() -> None:
        action(*args)
        forget_shared()

    act(then_refresh)


def forget_shared() -> None:
    """After a change to runs: the next redraw of every session reads them afresh."""
    shared_progress.clear()
    shared_queue.clear()


def controls(progress: dict) -> None:
    if not can_edit():
        return  # viewers watch; cancelling, resuming and forking change shared runs
    run_id, status = progress["run_id"], progress["status"]
    left, middle, right = st.columns(3)
    if status in runs.ACTIVE_STATUSES and left.button(
        "Cancel", key="train_cancel", icon=":material/stop:", disabled=progress["cancelling"]
    ):
        control(training.cancel_run, run_id)
    if status in ("interrupted", "cancelled", "failed") and left.button(
        "Resume", key="train_resume", icon=":material/play_arrow:"
    ):
        control(training.resume_run, run_id)
    # A continued run trains to (epochs done + more), within the spec's epoch limit.
    room = int(TrainSpec.limits("epochs").high) - progress["epoch"]
    if status == "completed" and room >= 1:
        more = middle.number_input(
            "More epochs", min_value=1, max_value=room, value=min(5, room), key="train_more_epochs"
        )
        if right.button("Continue", key="train_continue", icon=":material/fast_forward:"):
            control(training.continue_run, run_id, int(more))
    if status not in runs.ACTIVE_STATUSES and progress["best_epoch"]:
        fork_panel(progress)


def fork_panel(progress: dict) -> None:
    """A new run from this run's best or last checkpoint, with a few changes."""
    spec = attempt(
        TrainSpec.from_dict,
        progress["train"],
        failure="This run's training spec cannot be forked: ",
    )
    if spec is None:
        return
    with st.expander("Fork a new run from a checkpoint"):
        with st.form("train_fork_form", border=False):
            checkpoint = st.radio(
                "Checkpoint", ("best", "last"), horizontal=True, key="train_fork_checkpoint"
            )
            columns = st.columns(3)
            with columns[0]:
                rate = learning_rate_widget(spec.learning_rate, key="train_fork_learning_rate")
            with columns[1]:
                epochs = spec_widget(TrainSpec, "epochs", 5, "train_fork_epochs")
            with columns[2]:
                schedule = spec_widget(TrainSpec, "schedule", spec.schedule, "train_fork_schedule")
            if st.form_submit_button("Fork", key="train_fork"):
                child = attempt(
                    training.fork_run,
                    progress["run_id"],
                    checkpoint,
                    edits="start runs",
                    learning_rate=rate,
                    epochs=int(epochs),
                    schedule=schedule,
                )
                if child:
                    forget_shared()
                    select_run(child)
                    st.rerun()


@st.cache_data(ttl=LIVE_REFRESH_S / 2, max_entries=64, show_spinner=False)
def shared_progress(run_id: str) -> dict:
    """run_progress, computed once for every session watching the run at that moment."""
    return run_progress(run_id)


@st.cache_data(ttl=LIVE_REFRESH_S / 2, show_spinner=False)
def shared_queue() -> list[dict]:
    """The training queue, read once for every session showing it at that moment (it
    reads every run's record)."""
    return training.queue()


class SharedCurves:
    """A run's loss and accuracy figures, the same objects for every session watching
    it. While the run trains they are rebuilt at most every CURVES_REFRESH_S seconds,
    once for all the sessions redrawing them out of step."""

    METRICS = ("loss", "accuracy")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: tuple | None = None  # (epochs, best epoch) the figures show
        self._built_at = -math.inf
        self.figures: dict = {}

    def current(self, history: dict, best_epoch: int | None, live: bool) -> dict:
        wanted = (len(history["loss"]), best_epoch)
        with self._lock:
            due = not live or time.monotonic() - self._built_at >= CURVES_REFRESH_S
            if wanted != self._shown and due:
                self.figures = {m: curves_figure(history, m, best_epoch) for m in self.METRICS}
                self._shown, self._built_at = wanted, time.monotonic()
            return self.figures


@st.cache_resource(max_entries=64, show_spinner=False)
def shared_curves(run_id: str) -> SharedCurves:
    return SharedCurves()


def show_progress(run_id: str) -> dict | None:
    """The run's panel; returns its progress (None when the run cannot be read)."""
    progress = attempt(shared_progress, run_id)
    if progress is None:
        return None
    status = progress["status"]
    st.markdown(
        f"{STATUS_ICONS.get(status, '')} **{run_id}** · {status}"
        f" · {progress['arch']} on {progress['dataset']}"
        + (f" · {progress['device']}" if progress["device"] else "")
    )
    if status == "queued":
        ahead = progress["position"] or 0
        st.info(f"Waiting for a free training slot ({ahead} run(s) ahead).")
    if progress["cancelling"] and status in runs.ACTIVE_STATUSES:
        st.warning("Cancelling: the run stops after the current batch.")
    if status == "failed":
        st.error(progress["error"] or "The run failed.")
    if status == "interrupted":
        st.warning(
            "The worker stopped (killed, crashed or restarted). Resume to go on "
            "from the last checkpoint."
        )
    live_panel(live.progress_view(progress))
    controls(progress)
    return progress


def show_curves(run_id: str) -> None:
    """The run's loss and accuracy curves. While the run trains the page redraws them
    on their own, every CURVES_REFRESH_S seconds: each redraw costs every watching
    browser a re-render of the charts, even when their figures have not changed."""
    progress = attempt(shared_progress, run_id)
    if not progress or not progress["history"].get("loss"):
        return
    figures = shared_curves(run_id).current(
        progress["history"], progress["best_epoch"], is_live(progress)
    )
    left, right = st.columns(2)
    left.plotly_chart(figures["loss"], key="train_loss_chart")
    right.plotly_chart(figures["accuracy"], key="train_accuracy_chart")


def is_live(progress: dict | None) -> bool:
    return bool(progress) and progress["status"] in runs.ACTIVE_STATUSES
