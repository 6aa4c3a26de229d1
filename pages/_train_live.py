"""The Train page's run panel: progress, metrics, curves, the controls and the fork
panel, redrawn live while the run is queued or running (used by ``pages/3_train.py``)."""

from __future__ import annotations

import streamlit as st

from cnnlab import runs
from cnnlab import train as training
from cnnlab.train import TrainSpec
from cnnlab.train.progress import curves_figure, format_duration, run_progress
from pages._train_parts import learning_rate_widget
from pages._ui import act, attempt, can_edit, select_run, spec_widget

# The live panel's redraw period; sessions watching one run share each update.
LIVE_REFRESH_S = 2.0
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
        shared_progress.clear()

    act(then_refresh)


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
                    select_run(child)
                    st.rerun()


@st.cache_data(ttl=LIVE_REFRESH_S / 2, max_entries=64, show_spinner=False)
def shared_progress(run_id: str) -> dict:
    """run_progress, computed once for every session watching the run at that moment."""
    return run_progress(run_id)


@st.cache_resource(max_entries=64, show_spinner=False)
def curves(run_id: str, epochs: int, best_epoch: int | None, metric: str, _history: dict):
    """A run's curve figure, built once per new epoch for every session watching it."""
    return curves_figure(_history, metric, best_epoch)


def show_progress(run_id: str) -> dict | None:
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
    epochs = progress["epochs"] or 1
    epoch = progress["epoch"]
    st.progress(min(1.0, epoch / epochs), text=f"Epoch {epoch} of {epochs}")
    if status == "running" and progress["batches"]:
        batch = progress["batch"] or 0
        st.progress(
            min(1.0, batch / progress["batches"]),
            text=f"Batch {batch} of {progress['batches']} (epoch {epoch + 1})",
        )
    metrics = progress["metrics"]
    history = progress["history"]
    cells = st.columns(4)
    cells[0].metric("ETA", format_duration(progress["eta_s"]))
    speed = progress["images_per_s"] or metrics.get("train_images_per_s")
    cells[1].metric("Images/s", f"{speed:,.0f}" if speed else "—")
    val = history.get("val_accuracy") or []
    cells[2].metric("Val accuracy", f"{val[-1]:.3f}" if val else "—")
    test = metrics.get("test_accuracy")
    cells[3].metric("Test accuracy", f"{test:.3f}" if test is not None else "—")
    if history.get("loss"):
        left, right = st.columns(2)
        shown = (run_id, len(history["loss"]), progress["best_epoch"])
        left.plotly_chart(curves(*shown, "loss", history), key="train_loss_chart")
        right.plotly_chart(curves(*shown, "accuracy", history), key="train_accuracy_chart")
    controls(progress)
    return progress


@st.fragment(run_every=LIVE_REFRESH_S)
def live_panel(run_id: str) -> None:
    """Redrawn every LIVE_REFRESH_S seconds while the run is queued or running."""
    progress = show_progress(run_id)
    if progress and progress["status"] not in runs.ACTIVE_STATUSES:
        st.rerun()  # the run ended: redraw the whole page once, without the timer


def run_panel(run_id: str) -> None:
    run = attempt(runs.load_run, run_id)
    if run is None:
        return
    if run.is_active:
        live_panel(run_id)
    else:
        show_progress(run_id)
