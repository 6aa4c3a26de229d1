"""Tune page: start a hyperparameter study (KerasTuner's oracle picks each trial's
parameters, every trial trains as an ordinary run), watch its trials live, chart them,
promote the best, and open a trial in Evaluate or two in Experiments.

Nothing is searched in this script: "Start study" writes the study and launches its
driver process (cnnlab.tune.study.start_study); the page re-reads the study's folder
and its trials' runs while it runs, so a refresh or a second browser shows the same.
"""

from __future__ import annotations

import streamlit as st

from cnnlab import tune_plots
from cnnlab.tune import study as tuning
from cnnlab.tune.study import OBJECTIVE_TITLES, Study
from pages._tune_parts import STUDY_KEY, start_form, trial_table
from pages._ui import act, attempt, can_edit, plain, select_dataset, select_run

# The live panel's redraw period; sessions watching one study share each read.
LIVE_REFRESH_S = 2.0
EVALUATE_PAGE = "pages/4_evaluate.py"
EXPERIMENTS_PAGE = "pages/6_experiments.py"
EXPERIMENTS_SELECTION = "ex_selected"  # the Experiments page's runs to compare

st.title("Tune")


@st.cache_data(ttl=LIVE_REFRESH_S / 2, max_entries=64, show_spinner=False)
def shared_study(study_id: str) -> Study:
    """load_study, read once for every session watching the study at that moment."""
    return tuning.load_study(study_id)


@st.cache_resource(max_entries=16, show_spinner=False)
def figures(study_id: str, shown: tuple, _trials: list, _space: dict, title: str, direction: str):
    """The study's two charts, built once per newly scored trial (``shown``)."""
    return (
        tune_plots.parallel_figure(_trials, _space, title, direction),
        tune_plots.objective_scatter_figure(_trials, _space, title, direction),
    )


def ended(study: Study) -> tuple:
    """What changes when the whole page should be redrawn: the study's status and the
    trials that have ended (the charts, the controls and the trial pickers follow)."""
    return study.status, tuple(t.trial for t in study.trials if t.status in tuning.FINISHED)


def fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summary(study: Study) -> None:
    meta, title = study.meta, OBJECTIVE_TITLES[study.objective]
    st.markdown(
        f"**{study.study_id}** · {study.status} · {study.tuner} search on "
        f"{plain(study.dataset)} · {study.direction}imises {title}"
    )
    epochs = f"{meta.get('epochs')} epoch(s) per trial"
    budget = meta.get("budget_minutes") or 0
    spent = f"{study.duration_s() / 60:.1f} of {budget:g} minutes" if budget else "no time limit"
    st.caption(f"Created {meta.get('created')} · {epochs} · {spent}")
    if study.status == "failed":
        st.error(f"The study failed: {plain(meta.get('error') or 'no reason recorded')}")
    elif study.status == "interrupted":
        st.warning(
            "The study's driver stopped (killed, crashed or restarted); its trials' runs go "
            "on. Resume to continue the search where it stopped."
        )
    finished = sum(t.status in tuning.FINISHED for t in study.trials)
    limit = int(meta.get("max_trials") or 1)
    st.progress(min(1.0, finished / limit), text=f"{finished} of at most {limit} trials ended")
    if meta.get("promoted"):
        st.caption(f"Promoted: run {meta['promoted']}")


def best_panel(study: Study) -> None:
    best = study.best()
    if best is None:
        st.caption("Best so far: none (no trial has completed yet).")
        return
    left, right = st.columns([1, 3])
    left.metric(f"Best {OBJECTIVE_TITLES[study.objective]}", f"{best.score:.4f}")
    params = ", ".join(f"{name}={fmt(value)}" for name, value in best.params.items())
    right.markdown(f"Best so far: **trial {best.trial}** · run `{best.run_id}`  \n{params}")


def show_study(study: Study) -> None:
    summary(study)
    best_panel(study)
    trial_table(study)


@st.fragment(run_every=LIVE_REFRESH_S)
def live_panel(study_id: str, shown: tuple) -> None:
    """Redrawn every LIVE_REFRESH_S seconds while the study runs."""
    study = attempt(shared_study, study_id)
    if study is None:
        return
    show_study(study)
    if ended(study) != shown:
        st.rerun()  # a trial or the study ended: redraw the whole page once


def control(action, *args) -> None:
    """``act`` on the study; every session reads it afresh."""

    def then_refresh() -> None:
        action(*args)
        shared_study.clear()

    act(then_refresh)


def controls(study: Study) -> None:
    """Cancel, resume and promote: editors only (they change shared studies and runs)."""
    left, middle, right = st.columns([1, 1, 2])
    if study.status in ("running", "interrupted") and left.button(
        "Cancel study", key="tune_cancel", icon=":material/stop:"
    ):
        control(tuning.cancel_study, study.study_id)
    if study.status == "interrupted" and middle.button(
        "Resume", key="tune_resume", icon=":material/play_arrow:"
    ):
        control(tuning.resume_study, study.study_id)
    if study.best() is not None:
        with right:
            retrain = st.checkbox(
                "Retrain on train+val", key="tune_retrain",
                help="Also train the best configuration again on the training and "
                "validation images together, for the epochs it was best at.",
            )  # fmt: skip
            if st.button("Promote the best trial", key="tune_promote", icon=":material/star:"):
                control(tuning.promote, study.study_id, retrain)


def charts(study: Study) -> None:
    st.subheader("Charts")
    scored = tune_plots.scored_trials([trial.to_json() for trial in study.trials])
    if len(scored) < tune_plots.MIN_TRIALS:
        st.info(f"The charts appear once {tune_plots.MIN_TRIALS} trials have completed.")
        return
    shown = tuple((trial["trial"], trial["score"]) for trial in scored)
    title = OBJECTIVE_TITLES[study.objective]
    parallel, scatter = figures(
        study.study_id, shown, scored, study.meta["space"], title, study.direction
    )
    st.plotly_chart(parallel, key="tune_parallel", width="stretch")
    st.plotly_chart(scatter, key="tune_scatter", width="stretch")


def trial_links(study: Study) -> None:
    """A trial's run in Evaluate, or two trials' runs side by side in Experiments."""
    done = {t.run_id: t for t in study.trials if t.status == "completed" and t.run_id}
    if not done:
        return
    st.subheader("Look closer")
    best = study.best()
    ids = list(done)

    def label(run_id: str) -> str:
        trial = done[run_id]
        return f"trial {trial.trial} · {fmt(trial.score)} · {run_id}"

    left, right = st.columns(2)
    with left:
        run_id = st.selectbox(
            "Trial", ids, key="tune_trial", format_func=label,
            index=ids.index(best.run_id) if best and best.run_id in ids else 0,
        )  # fmt: skip
        if st.button("Open in Evaluate", key="tune_open_evaluate"):
            select_dataset(study.dataset)
            select_run(run_id)
            st.switch_page(EVALUATE_PAGE)
    with right:
        pair = st.multiselect(
            "Two trials", ids, key="tune_compare", format_func=label, max_selections=2
        )
        if st.button("Compare in Experiments", key="tune_compare_go", disabled=len(pair) != 2):
            st.session_state[EXPERIMENTS_SELECTION] = list(pair)
            st.switch_page(EXPERIMENTS_PAGE)


def study_picker(study_ids: list[str]) -> str:
    """Newest first; the newest until the user picks (or starts) another."""
    if st.session_state.get(STUDY_KEY) not in study_ids:
        st.session_state[STUDY_KEY] = study_ids[0]
    return st.selectbox("Study", study_ids, key=STUDY_KEY)


def main() -> None:
    study_ids = attempt(tuning.list_studies) or []
    if can_edit():
        with st.expander("Start a study", expanded=not study_ids):
            started = start_form()
        if started:
            st.session_state[STUDY_KEY] = started
            shared_study.clear()
            st.rerun()
    else:
        st.caption("Viewing only: sign in as an editor (sidebar) to start or change studies.")
    if not study_ids:
        st.info("No study yet: editors start one here, or with `python -m cnnlab tune`.")
        return
    st.subheader("Watch a study")
    study = attempt(shared_study, study_picker(study_ids))
    if study is None:
        return
    if study.is_active:
        live_panel(study.study_id, ended(study))
    else:
        show_study(study)
    if can_edit():
        controls(study)
    charts(study)
    trial_links(study)


main()
