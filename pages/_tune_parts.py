"""The Tune page's parts: the start form (dataset, search space, tuner, budget) and the
tables of a space and of a study's trials (used by ``pages/7_tune.py``)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from cnnlab.data.dataset import list_datasets
from cnnlab.spec import Range
from cnnlab.tune.space import DEFAULT_SPACE, SPACES, TUNABLE, SearchSpace, load_space
from cnnlab.tune.study import (
    BUDGET_MINUTES,
    EPOCHS,
    MAX_TRIALS,
    OBJECTIVE_CHOICE,
    OBJECTIVE_TITLES,
    SEED,
    TUNER_CHOICE,
    Study,
    start_study,
)
from pages._ui import attempt, current_dataset, select_dataset

STUDY_KEY = "tune_study"  # the study picker: the study the page shows
SPACE_KEY = "tune_space"  # a named space, or CUSTOM
SPACE_TEXT_KEY = "tune_space_text"  # the custom space's JSON, kept while the editor is hidden
SPACE_EDITOR_KEY = "tune_space_json"
CUSTOM = "custom"
DEFAULT_MAX_TRIALS = 10
TUNER_HELP = (
    "KerasTuner's oracle: random picks at random; hyperband trains many trials briefly "
    "and the best longer; bayesian models the scores so far; grid tries every "
    "combination (ranges at low, middle and high)."
)


def space_json(name: str) -> str:
    return json.dumps(SPACES[name]["space"], indent=2)


def _follow_space() -> None:
    """A named space picked: the custom editor starts from its JSON."""
    if st.session_state[SPACE_KEY] != CUSTOM:
        st.session_state[SPACE_TEXT_KEY] = space_json(st.session_state[SPACE_KEY])


def _follow_editor() -> None:
    st.session_state[SPACE_TEXT_KEY] = st.session_state[SPACE_EDITOR_KEY]


def custom_space(text: str) -> SearchSpace:
    """The editor's JSON as a space (never a file on the server)."""
    return load_space(text, files=False)


def number_input(label: str, limits: Range, value, key: str, **options):
    """A number input whose bounds are ``limits`` (declared once, in the core)."""
    kind = int if limits.integer else float
    return st.number_input(
        label,
        min_value=kind(limits.low),
        max_value=kind(limits.high),
        value=value if value is None else kind(min(max(value, limits.low), limits.high)),
        key=key,
        **options,
    )


def dataset_picker(key: str = "tune_dataset") -> str | None:
    """The current dataset (the sidebar's); picking another here changes it there too."""
    names = list_datasets()
    if not names:
        st.info("No dataset yet: create one on the Data page.")
        return None
    current = current_dataset() if current_dataset() in names else names[0]
    st.session_state[key] = current
    st.selectbox("Dataset", names, key=key, on_change=lambda: select_dataset(st.session_state[key]))
    return current


def space_picker() -> tuple[str | SearchSpace | None, SearchSpace | None]:
    """A named space or a custom one in JSON. Returns what ``start_study`` takes (a
    name or a space) and the space, or (None, None) when the JSON is not a good space."""
    st.session_state.setdefault(SPACE_TEXT_KEY, space_json(DEFAULT_SPACE))
    choice = st.selectbox(
        "Search space",
        [*SPACES, CUSTOM],
        index=list(SPACES).index(DEFAULT_SPACE),
        key=SPACE_KEY,
        format_func=lambda name: SPACES[name]["title"] if name in SPACES else "Custom (JSON)",
        on_change=_follow_space,
    )
    if choice != CUSTOM:
        st.caption(SPACES[choice]["help"])
        return choice, SearchSpace.named(choice)
    st.session_state[SPACE_EDITOR_KEY] = st.session_state[SPACE_TEXT_KEY]
    st.text_area(
        "Search space (JSON)",
        key=SPACE_EDITOR_KEY,
        height=220,
        on_change=_follow_editor,
        help='Parameter -> {"values": [...]} or {"low": ..., "high": ..., "log": ...}. '
        f"Parameters: {', '.join(TUNABLE)}.",
    )
    space = attempt(custom_space, st.session_state[SPACE_TEXT_KEY])
    return space, space


def space_table(space: SearchSpace) -> None:
    rows = [
        {
            "parameter": dimension.name,
            "values or range": dimension.describe(),
            "what it is": TUNABLE[dimension.name].help,
        }
        for dimension in space.dimensions
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="tune_space_table")


def start_form() -> str | None:
    """The settings of a new study and its Start button (editors only); returns the new
    study's id once it has started."""
    dataset = dataset_picker()
    source, space = space_picker()
    if space is not None:
        space_table(space)
    left, middle, right = st.columns(3)
    tuner = left.selectbox("Tuner", TUNER_CHOICE.options, key="tune_tuner", help=TUNER_HELP)
    objective = middle.selectbox(
        "Objective", OBJECTIVE_CHOICE.options, key="tune_objective",
        format_func=OBJECTIVE_TITLES.get, help="Scored on the validation split.",
    )  # fmt: skip
    with right:
        max_trials = number_input("Max trials", MAX_TRIALS, DEFAULT_MAX_TRIALS, "tune_max_trials")
    left, middle, right = st.columns(3)
    with left:
        budget = number_input(
            "Budget (minutes)", BUDGET_MINUTES, 0.0, "tune_budget", step=5.0,
            help="No trial starts after this and none runs past it; 0 = no limit.",
        )  # fmt: skip
    with middle:
        epochs = number_input(
            "Epochs per trial", EPOCHS, None, "tune_epochs", placeholder="the recipe's",
            help="Empty: the recipe's. Hyperband: the epochs of its longest trials.",
        )  # fmt: skip
    with right:
        seed = number_input("Seed", SEED, 0, "tune_seed")
    if tuner == "grid" and space is not None:
        st.caption(f"A grid search over this space has {space.grid_size()} trial(s).")
    if not st.button(
        "Start study", key="tune_start", type="primary", icon=":material/play_arrow:",
        disabled=dataset is None or space is None,
    ):  # fmt: skip
        return None
    with st.spinner("Planning the study on this dataset..."):
        return attempt(
            start_study,
            dataset,
            source,
            tuner=tuner,
            objective=objective,
            max_trials=int(max_trials),
            budget_minutes=float(budget),
            epochs=None if epochs is None else int(epochs),
            seed=int(seed),
            edits="start tuning studies",
        )


def trial_frame(study: Study) -> pd.DataFrame:
    """One row per trial: its status, each parameter in its own column, score, run."""
    rows = [
        {
            "trial": trial.trial,
            "status": trial.status,
            **{name: trial.params.get(name) for name in study.space.names},
            "score": trial.score,
            "duration_s": trial.duration_s,
            "run_id": trial.run_id,
            "error": trial.error,
        }
        for trial in study.trials
    ]
    return pd.DataFrame(rows)


def trial_table(study: Study) -> None:
    if not study.trials:
        st.caption("No trial has started yet.")
        return
    st.dataframe(
        trial_frame(study),
        hide_index=True,
        width="stretch",
        column_config={
            "score": st.column_config.NumberColumn(
                OBJECTIVE_TITLES[study.objective], format="%.4f"
            ),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
            "run_id": "run",
        },
    )
