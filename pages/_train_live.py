"""The Train page's run panel: progress, metrics, the controls, the fork panel and the
curves (used by ``pages/3_train.py``, which redraws it live while runs are queued or
running). What every watching session reads is read once for all of them."""

from __future__ import annotations

import html
import json
import math
import threading
import time

import streamlit as st

from cnnlab import live, runs
from cnnlab import train as training
from cnnlab.train import TrainSpec
from cnnlab.train.progress import curves_figure, run_progress
from pages._train_parts import learning_rate_widget
from pages._ui import act, attempt, can_edit, select_run, spec_widget

# How often a watching browser fetches the run's bars and numbers (cnnlab.live's route).
POLL_S = 1.0
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
    live_panel(live.progress_view(progress), polled=is_live(progress) and live.route_served())
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


# --- the bars and numbers, updated in place by the browser while the run trains -----------

PANEL_ID = "cnnlab-live"
PANEL_STYLE = """<style>
.cnnlab-live .bar {margin: 0 0 0.75rem;}
.cnnlab-live .bar p {margin: 0 0 0.25rem; font-size: 0.875rem;}
.cnnlab-live .track {height: 0.5rem; border-radius: 0.25rem; background: rgba(128,128,128,.2);}
.cnnlab-live .fill {height: 100%%; border-radius: 0.25rem; background: %(colour)s;}
.cnnlab-live .numbers {display: flex; flex-wrap: wrap; gap: 1rem;}
.cnnlab-live .number {flex: 1 1 8rem;}
.cnnlab-live .number p {margin: 0;}
.cnnlab-live .label {font-size: 0.875rem; opacity: 0.7;}
.cnnlab-live .value {font-size: 1.75rem;}
</style>"""
# Fetches the panel's view (cnnlab.live.progress_view) every POLL_S and writes it into
# the elements; stops once the run is done or the panel is gone. The page redraws the
# panel now and then with the view it read: the newest view seen is kept across
# redraws so the numbers never step back.
PANEL_SCRIPT = """<script>(() => {
  const [url, every] = %(args)s;
  const state = window.cnnlabLive = window.cnnlabLive || {};
  clearInterval(state.timer);
  const panel = () => document.getElementById("%(id)s");
  const show = (view) => {
    const root = panel();
    if (!root || root.dataset.run !== view.run_id) return;
    for (const part of ["epoch", "batch"]) {
      const bar = root.querySelector(`[data-part=${part}]`);
      bar.hidden = !view[part];
      if (!view[part]) continue;
      bar.querySelector("p").textContent = view[part].text;
      bar.querySelector(".fill").style.width = `${100 * view[part].fraction}%%`;
    }
    root.querySelectorAll(".value").forEach((cell, i) => {
      cell.textContent = view.numbers[i][1];
    });
    root.dataset.order = view.order;
  };
  const newest = state.newest;
  const root = panel();
  if (newest && root && newest.order > Number(root.dataset.order)) show(newest);
  const poll = async () => {
    if (!panel()) return clearInterval(state.timer);
    if (document.hidden) return;
    try {
      const answer = await fetch(url, {cache: "no-store"});
      if (!answer.ok) return;
      const view = await answer.json();
      const seen = state.newest;
      if (!seen || seen.run_id !== view.run_id || view.order >= seen.order) {
        state.newest = view;
        show(view);
      }
      if (!view.active) clearInterval(state.timer);
    } catch (error) {}  // the server restarting: the next poll tries again
  };
  state.timer = setInterval(poll, every);
})();</script>"""


def progress_url(run_id: str) -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    path = live.ROUTE.format(run_id=run_id)
    return f"{'/' + base if base else ''}{path}?token={live.token(run_id)}"


def live_panel(view: dict, polled: bool) -> None:
    """The run's epoch and batch bars and its numbers; while ``polled``, the browser
    keeps them current itself."""

    def bar(part: str) -> str:
        shown = view[part] or {"text": "", "fraction": 0.0}
        return (
            f'<div class="bar" data-part="{part}"{"" if view[part] else " hidden"}>'
            f'<p>{html.escape(shown["text"])}</p><div class="track">'
            f'<div class="fill" style="width: {100 * shown["fraction"]:.2f}%"></div></div></div>'
        )

    numbers = "".join(
        f'<div class="number"><p class="label">{html.escape(label)}</p>'
        f'<p class="value">{html.escape(value)}</p></div>'
        for label, value in view["numbers"]
    )
    body = (
        f'<div id="{PANEL_ID}" class="cnnlab-live" data-run="{html.escape(view["run_id"])}"'
        f' data-order="{view["order"]}">{bar("epoch")}{bar("batch")}'
        f'<div class="numbers">{numbers}</div></div>'
        + PANEL_STYLE
        % {"colour": st.get_option("theme.primaryColor") or "#3366CC"}
    )
    if polled:
        args = json.dumps([progress_url(view["run_id"]), int(POLL_S * 1000)])
        body += PANEL_SCRIPT % {"args": args.replace("</", "<\\/"), "id": PANEL_ID}
    st.html(body, unsafe_allow_javascript=polled)
