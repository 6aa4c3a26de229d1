"""The Train page's new-run form: the budget, the auto recipe's plan and the widgets
that set up a run from the TrainSpec's own limits (used by ``pages/3_train.py``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import train as training
from cnnlab.data.dataset import load_dataset
from cnnlab.models import list_presets
from cnnlab.train import TrainSpec
from cnnlab.train.recipe import chosen_run, default_budget_minutes, plan_run, starting_spec
from cnnlab.train.spec import CLASS_WEIGHT_LIMITS
from pages._ui import attempt, dataset_version, select_run, spec_widget

ARCH_KEY = "arch"  # an ArchSpec dict chosen on the Architecture page
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


def class_weight_table(dataset: str, spec: TrainSpec) -> dict:
    class_names = load_dataset(dataset).class_names
    weights = spec.custom_weights
    table = pd.DataFrame(
        {"class": class_names, "weight": [weights.get(name, 1.0) for name in class_names]}
    )
    edited = st.data_editor(
        table,
        key=f"train_custom_weights_{dataset}",
        hide_index=True,
        disabled=["class"],
        column_config={
            "weight": st.column_config.NumberColumn(
                min_value=CLASS_WEIGHT_LIMITS.low, max_value=CLASS_WEIGHT_LIMITS.high
            )
        },
        width="stretch",
    )
    return {row["class"]: float(row["weight"]) for _, row in edited.iterrows()}


def new_run_form(dataset: str) -> None:
    budget = budget_widget(dataset)
    measure = st.session_state.get(MEASURE_KEY, False)
    plan = attempt(recipe, dataset, budget, dataset_version(dataset), measure)
    if plan is None:
        return
    designed = st.session_state.get("arch_image_size") if st.session_state.get(ARCH_KEY) else None
    spec = starting_spec(plan, designed)
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
            custom = class_weight_table(dataset, spec)
        submitted = st.form_submit_button("Start training", type="primary", key="train_start")
    if not submitted:
        return
    chosen = attempt(
        chosen_run,
        plan,
        dataset,
        arch,
        spec,
        augmentation=augmentation,
        custom_weights=custom,
        **values,
    )
    run_id = chosen and attempt(training.start_run, dataset, *chosen, edits="start runs")
    if run_id:
        from pages._train_live import forget_shared  # it imports this module

        forget_shared()
        select_run(run_id)
        st.rerun()
