"""Train page: set up a run from the TrainSpec's own limits, launch it in a worker
process, and watch it live.

Nothing trains in this script: "Start training" calls ``cnnlab.train.start_run`` (a
detached worker), and the live panel re-reads the run folder about once a second, so a
refresh, a closed tab or a second browser shows the same run.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import devices, runs
from cnnlab import train as training
from cnnlab.data.dataset import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import list_presets
from cnnlab.train import TrainSpec
from cnnlab.train.progress import curves_figure, format_duration, run_progress
from cnnlab.train.recipe import default_budget_minutes, plan_run, with_changes
from pages._ui import (
    current_dataset,
    current_run,
    dataset_version,
    select_run,
    spec_widget,
)

ARCH_KEY = "arch"  # an ArchSpec dict chosen on the Architecture page
PICK_KEY = "train_pick_run"
MEASURE_KEY = "train_measure_speed"
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
AUGMENTATIONS = {
    "recipe": "the auto recipe's (dataset's saved one, else the recommended one for its kind)",
    "dataset": "the dataset's saved augmentation",
    "none": "no augmentation",
}
BASIC_FIELDS = ("image_size", "epochs", "batch_size", "optimizer")
ADVANCED_FIELDS = (
    "schedule",
    "warmup_epochs",
    "step_epochs",
    "lr_factor",
    "plateau_patience",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "early_stopping",
    "monitor",
    "patience",
    "restore_best_weights",
    "class_weight",
    "oversample",
    "mixed_precision",
    "seed",
)
STATUS_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "completed": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/pause_circle:",
}

st.title("Train")


@st.cache_resource(show_spinner="Looking for GPUs...")
def device_label() -> str:
    return devices.describe_devices()["device"]


# --- the form ------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Planning the run...")
def recipe(dataset: str, budget_minutes: float, version: float, measure: bool):
    """The auto recipe's plan within the budget; ``measure`` probes this device's speed
    for the chosen network (seconds, once per device); else it is estimated."""
    return plan_run(dataset, budget_minutes, probe=measure)


def budget_widget(dataset: str) -> float:
    limits = TrainSpec.limits("budget_minutes")
    return st.number_input(
        "Time budget (minutes)",
        min_value=float(limits.low),
        max_value=float(limits.high),
        value=default_budget_minutes(),
        step=1.0,
        key=f"train_budget_{dataset}",
        help="The auto recipe picks image size, network and epochs to fit it, and the run "
        "stops on time with its best epoch scored. 0 = no limit.",
    )


def arch_choice() -> object:
    """The architecture to train: the Architecture page's, or a preset picked here."""
    chosen = st.session_state.get(ARCH_KEY)
    options = ["auto", *list_presets()]
    if chosen:
        label = chosen.get("preset") or f"custom ({len(chosen.get('blocks', []))} blocks)"
        options = [f"from the Architecture page: {label}", *options]
    picked = st.selectbox(
        "Architecture",
        options,
        key="train_arch",
        help="auto picks a preset from the image size; the Architecture page can design one",
    )
    return chosen if chosen and picked == options[0] else picked


def learning_rate_widget(value: float, key: str = "train_learning_rate") -> float:
    limits = TrainSpec.limits("learning_rate")
    options = [rate for rate in LEARNING_RATES if limits.low <= rate <= limits.high]
    if value not in options:
        options = sorted({*options, value})
    return st.select_slider(
        "Learning rate",
        options=options,
        value=value,
        key=key,
        help=TrainSpec.help("learning_rate"),
        format_func=lambda rate: f"{rate:g}",
    )


def class_weight_table(dataset: str, class_names: list[str], spec: TrainSpec) -> dict:
    weights = spec.custom_weights
    table = pd.DataFrame(
        {"class": class_names, "weight": [weights.get(name, 1.0) for name in class_names]}
    )
    edited = st.data_editor(
        table,
        key=f"train_custom_weights_{dataset}",
        hide_index=True,
        disabled=["class"],
        column_config={"weight": st.column_config.NumberColumn(min_value=0.001, max_value=1000.0)},
        width="stretch",
    )
    return {row["class"]: float(row["weight"]) for _, row in edited.iterrows()}


def new_run_form(dataset: str) -> None:
    budget = budget_widget(dataset)
    try:
        measure = st.session_state.get(MEASURE_KEY, False)
        plan = recipe(dataset, budget, dataset_version(dataset), measure)
        auto_arch, spec = plan.arch, plan.spec
        class_names = load_dataset(dataset).class_names
        size_from_arch = st.session_state.get("arch_image_size")
        if st.session_state.get(ARCH_KEY) and size_from_arch:
            spec = spec.with_changes(image_size=int(size_from_arch))
    except CnnlabError as error:
        st.error(str(error))
        return
    st.caption(f"Auto recipe: {plan.describe()}")
    if plan.speed != "measured" and st.button(
        "Measure this device's speed",
        key="train_measure",
        help="Trains the recipe's network for a few batches (a few seconds, once per "
        "device) so the estimate and the choice of network rest on a measurement.",
    ):
        st.session_state[MEASURE_KEY] = True
        st.rerun()
    with st.form("train_form", border=True):
        st.markdown(f"**New run on {dataset}**")
        arch = arch_choice()
        values = {}
        columns = st.columns(len(BASIC_FIELDS) + 1)
        for column, name in zip(columns, BASIC_FIELDS, strict=False):
            with column:
                values[name] = spec_widget(
                    TrainSpec, name, getattr(spec, name), f"train_{name}_{dataset}"
                )
        with columns[-1]:
            values["learning_rate"] = learning_rate_widget(spec.learning_rate)
        augmentation = st.radio(
            "Augmentation",
            list(AUGMENTATIONS),
            format_func=lambda key: AUGMENTATIONS[key],
            horizontal=True,
            key="train_augmentation",
        )
        with st.expander("More settings"):
            columns = st.columns(4)
            for index, name in enumerate(ADVANCED_FIELDS):
                with columns[index % 4]:
                    values[name] = spec_widget(
                        TrainSpec, name, getattr(spec, name), f"train_{name}_{dataset}"
                    )
            st.caption("Custom class weights (used when class weight is 'custom'):")
            custom = class_weight_table(dataset, class_names, spec)
        submitted = st.form_submit_button("Start training", type="primary", key="train_start")
    if not submitted:
        return
    values["augmentation"] = spec.augmentation if augmentation == "recipe" else augmentation
    values["custom_class_weights"] = custom if values.get("class_weight") == "custom" else ()
    try:
        # Fewer epochs than planned bring the plan's warm-up along (see with_changes).
        chosen = with_changes(spec, dataset, **values)
    except CnnlabError as error:
        st.error(str(error))
        return
    if arch == "auto" and chosen.image_size == spec.image_size:
        arch = auto_arch  # the plan's network (pretrained when weights are at hand)
    try:
        # Otherwise "auto" picks the preset for the image size chosen in the form.
        run_id = training.start_run(dataset, arch, chosen)
    except CnnlabError as error:
        st.error(str(error))
        return
    select_run(run_id)
    st.rerun()


# --- the live panel --------------------------------------------------------------------------


def controls(progress: dict) -> None:
    run_id, status = progress["run_id"], progress["status"]
    left, middle, right = st.columns(3)
    try:
        if status in runs.ACTIVE_STATUSES:
            if left.button(
                "Cancel",
                key="train_cancel",
                icon=":material/stop:",
                disabled=progress["cancelling"],
            ):
                training.cancel_run(run_id)
                st.rerun()
        if status in ("interrupted", "cancelled", "failed"):
            if left.button("Resume", key="train_resume", icon=":material/play_arrow:"):
                training.resume_run(run_id)
                st.rerun()
        if status == "completed":
            more = middle.number_input(
                "More epochs", min_value=1, max_value=200, value=5, key="train_more_epochs"
            )
            if right.button("Continue", key="train_continue", icon=":material/fast_forward:"):
                training.continue_run(run_id, int(more))
                st.rerun()
    except CnnlabError as error:
        st.error(str(error))
    if status not in runs.ACTIVE_STATUSES and progress["best_epoch"]:
        fork_panel(progress)


def fork_panel(progress: dict) -> None:
    """A new run from this run's best or last checkpoint, with a few changes."""
    try:
        spec = TrainSpec.from_dict(progress["train"])
    except CnnlabError as error:
        st.error(f"This run's training spec cannot be forked: {error}")
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
                try:
                    child = training.fork_run(
                        progress["run_id"],
                        checkpoint,
                        learning_rate=rate,
                        epochs=int(epochs),
                        schedule=schedule,
                    )
                except CnnlabError as error:
                    st.error(str(error))
                    return
                select_run(child)
                st.rerun()


def show_progress(run_id: str) -> dict | None:
    try:
        progress = run_progress(run_id)
    except CnnlabError as error:
        st.error(str(error))
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
        left.plotly_chart(
            curves_figure(history, "loss", progress["best_epoch"]), key="train_loss_chart"
        )
        right.plotly_chart(
            curves_figure(history, "accuracy", progress["best_epoch"]),
            key="train_accuracy_chart",
        )
    controls(progress)
    return progress


@st.fragment(run_every=1.0)
def live_panel(run_id: str) -> None:
    """Redrawn every second while the run is queued or running."""
    progress = show_progress(run_id)
    if progress and progress["status"] not in runs.ACTIVE_STATUSES:
        st.rerun()  # the run ended: redraw the whole page once, without the timer


def run_panel(run_id: str) -> None:
    try:
        active = runs.load_run(run_id).is_active
    except CnnlabError as error:
        st.error(str(error))
        return
    if active:
        live_panel(run_id)
    else:
        show_progress(run_id)


def queue_table(active: list[dict]) -> None:
    try:
        limit = training.max_concurrent_runs()
    except CnnlabError as error:  # a bad CNNLAB_MAX_CONCURRENT_RUNS
        st.error(str(error))
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


@st.fragment(run_every=2.0)
def live_queue() -> None:
    """Redrawn every two seconds while runs are queued or running."""
    active = training.queue()
    queue_table(active)
    if not active:
        st.rerun()  # the queue emptied: redraw the page once, without the timer


def queue_and_recent(dataset: str | None) -> None:
    st.subheader("Queue")
    active = training.queue()
    if active:
        live_queue()
    else:
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

try:
    st.caption(f"Device: {device_label()}")
except Exception as error:  # noqa: BLE001 - a missing driver must not break the page
    st.caption(f"Device: unknown ({error})")

dataset = current_dataset()
if dataset is None:
    st.info("No dataset chosen: pick one in the sidebar or create one on the Data page.")
else:
    new_run_form(dataset)

run_id = run_to_show(dataset)
if run_id:
    st.subheader("Run")
    run_panel(run_id)
queue_and_recent(dataset)
