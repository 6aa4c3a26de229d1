"""Pieces of the Experiments page (pages/6_experiments.py): the runs table and the
command that opens TensorBoard."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnlab.tensorboard import tensorboard_command


def runs_table(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="ex_table",
        column_order=[
            "run_id",
            "name",
            "tags",
            "status",
            "dataset",
            "arch",
            "image_size",
            "epochs",
            "batch_size",
            "optimizer",
            "learning_rate",
            "class_weight",
            "oversample",
            "best_val_accuracy",
            "test_accuracy",
            "macro_f1",
            "epochs_run",
            "duration_s",
            "device",
            "created",
            "study",
        ],  # fmt: skip
        column_config={
            "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.3f"),
            "test_accuracy": st.column_config.NumberColumn("test acc", format="%.3f"),
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
            "learning_rate": st.column_config.NumberColumn("lr", format="%.2g"),
        },
    )


def tensorboard_hint(selected: list[str]) -> None:
    """The shell command that opens TensorBoard over the selected runs, else every run."""
    over = f"the {len(selected)} selected run(s)" if selected else "every run"
    with st.expander("Open in TensorBoard"):
        st.caption(
            "Every run logs its epochs (loss, accuracy, learning rate) and its model graph "
            "for TensorBoard; a tuning study's trials show in its HParams tab. Run this "
            f"to open TensorBoard over {over}:"
        )
        st.code(tensorboard_command(selected), language="bash")
