"""Experiments page: every run in one filterable table; compare selected runs (learning
curves, metrics, config diff, per-class F1 deltas); rename, tag, delete, download; the
command that opens TensorBoard over them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab import eval_plots, runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import update_run_meta
from cnnlab.report import compare_runs, experiment_row, filter_rows, run_bundle
from pages._experiments_parts import runs_table, tensorboard_hint
from pages._ui import attempt, attempt_later, can_edit, plain, select_run, show_outcome

CURVE_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
BAR_METRICS = ("test_accuracy", "best_val_accuracy", "macro_f1")
MESSAGE_KEY = "ex_message"  # what the last rename or delete did

st.title("Experiments")


@st.cache_data(show_spinner=False, max_entries=2000)
def cached_row(run_id: str, version: tuple) -> dict:
    """A run's row; an unchanged version (Run.version) reuses it."""
    return experiment_row(runs.load_run(run_id))


def table_rows() -> list[dict]:
    rows = []
    for info in runs.list_runs():
        try:
            rows.append(cached_row(info.run_id, info.version()))
        except (CnnlabError, FileNotFoundError):
            continue  # deleted while listing
    return rows


# ------------------------------------------------------------------- actions (callbacks)


def _save_meta(run_id: str) -> None:
    attempt_later(
        MESSAGE_KEY,
        update_run_meta,
        run_id,
        name=st.session_state.get(f"ex_name_{run_id}", ""),
        tags=st.session_state.get(f"ex_tags_{run_id}", ""),
        done=f"Saved the name and tags of {run_id}.",
        edits="rename or tag runs",
    )


def _delete(run_id: str) -> None:
    st.session_state.pop("ex_confirm_delete", None)
    attempt_later(
        MESSAGE_KEY, runs.delete_run, run_id, done=f"Deleted run {run_id}.", edits="delete runs"
    )
    if st.session_state[MESSAGE_KEY][0] == "error":
        return
    selected = st.session_state.get("ex_selected") or []
    st.session_state["ex_selected"] = [r for r in selected if r != run_id]
    if st.session_state.get("run") == run_id:
        select_run(None)


def _open_in_evaluate(run_id: str) -> None:
    select_run(run_id)


# ------------------------------------------------------------------------------- page


def filters(rows: list[dict]) -> list[dict]:
    left, middle, right = st.columns([3, 2, 2])
    text = left.text_input(
        "Filter", key="ex_filter", placeholder="id, name, tag or architecture contains..."
    )
    statuses = middle.multiselect("Status", runs.STATUSES, key="ex_status")
    datasets = right.multiselect(
        "Dataset", sorted({row["dataset"] for row in rows}), key="ex_dataset"
    )
    return filter_rows(rows, text, statuses or None, datasets or None)


def comparison(selected: list[str]) -> None:
    result = attempt(compare_runs, selected)
    if result is None:
        return
    metric = st.radio("Curve", CURVE_METRICS, horizontal=True, key="ex_curve")
    st.plotly_chart(eval_plots.learning_curves_figure(result.histories, metric), width="stretch")
    st.plotly_chart(
        eval_plots.metric_bars(
            [
                {"label": label, **row}
                for label, row in zip(result.labels, result.rows, strict=True)
            ],
            BAR_METRICS,
        ),
        width="stretch",
    )
    st.markdown("#### Settings that differ")
    if result.config_diff:
        st.dataframe(pd.DataFrame(result.config_diff).astype(str), hide_index=True, width="stretch")
    else:
        st.caption("The selected runs have identical settings.")
    st.markdown(f"#### Per-class F1, change against {plain(result.labels[0])}")
    frame = pd.DataFrame(result.per_class_f1)
    frame.index.name = "class"
    st.dataframe(frame.style.format(precision=3, na_rep="–"), width="stretch")
    if result.f1_deltas:
        st.plotly_chart(
            eval_plots.delta_heatmap(result.f1_deltas, f"F1 minus F1 of {result.labels[0]}"),
            width="stretch",
        )


def manage(run_id: str) -> None:
    info = attempt(runs.load_run, run_id)  # fails when deleted from another browser
    if info is None:
        return
    st.markdown(f"#### Run {run_id}")
    st.caption(
        f"{info.status} · dataset {info.dataset} · created {info.created}"
        + (f" · error: {plain(info.error)}" if info.error else "")
    )
    st.button(
        "Open in Evaluate", key="ex_open", on_click=_open_in_evaluate, args=(run_id,),
        disabled=info.status != "completed",
        help="Make this the current run; the Evaluate page shows it.",
    )  # fmt: skip
    if can_edit():
        edit_panel(info)


def edit_panel(info: runs.Run) -> None:
    """Rename, tag, download and delete: editors only (they change or hand out runs)."""
    run_id = info.run_id
    st.session_state.setdefault(f"ex_name_{run_id}", info.name or "")
    st.session_state.setdefault(f"ex_tags_{run_id}", ", ".join(info.tags))
    left, right = st.columns(2)
    left.text_input("Name", key=f"ex_name_{run_id}", max_chars=80)
    right.text_input("Tags (comma-separated)", key=f"ex_tags_{run_id}")
    buttons = st.columns(3)
    buttons[0].button(
        "Save name and tags", key="ex_save", on_click=_save_meta, args=(run_id,),
    )  # fmt: skip
    buttons[1].download_button(
        "Download bundle",
        data=lambda: run_bundle(run_id),
        file_name=f"{run_id}.zip",
        mime="application/zip",
        key="ex_bundle",
        help="The model (best.keras), run.json, history, metrics, predictions, report "
        "and TensorBoard logs.",
    )
    if buttons[2].button("Delete run...", key="ex_delete"):
        st.session_state["ex_confirm_delete"] = run_id
    if st.session_state.get("ex_confirm_delete") == run_id:
        st.warning(f"Delete run {run_id} and its model for good?")
        yes, no = st.columns(2)
        yes.button(
            "Yes, delete it", key="ex_delete_yes", type="primary", on_click=_delete,
            args=(run_id,),
        )  # fmt: skip
        if no.button("Cancel", key="ex_delete_no"):
            st.session_state.pop("ex_confirm_delete", None)
            st.rerun()


def main() -> None:
    show_outcome(MESSAGE_KEY)
    rows = table_rows()
    if not rows:
        st.info("No runs yet: train a model on the Train page.")
        return
    shown = filters(rows)
    st.caption(f"{len(shown)} of {len(rows)} run(s).")
    if shown:
        runs_table(shown)
    else:
        st.info("No run matches the filters.")
    ids = [row["run_id"] for row in shown]
    # Names may repeat; the id keeps every option distinct.
    labels = {
        row["run_id"]: f"{row['name']} · {row['run_id']}" if row["name"] else row["run_id"]
        for row in rows
    }
    kept = [r for r in st.session_state.get("ex_selected") or [] if r in labels]
    st.session_state["ex_selected"] = kept
    selected = st.multiselect(
        "Runs to compare or manage",
        list(dict.fromkeys(kept + ids)),
        key="ex_selected",
        format_func=lambda run_id: labels.get(run_id, run_id),
    )
    if len(selected) >= 2:
        st.markdown("### Comparison")
        comparison(selected)
    if selected:
        st.markdown("### Manage")
        target = st.selectbox(
            "Run", selected, key="ex_manage", format_func=lambda r: labels.get(r, r)
        )
        manage(target)
    else:
        st.caption("Select runs above to compare them, or one to rename, tag or delete it.")
    tensorboard_hint(selected)


main()
