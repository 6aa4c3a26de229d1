"""What a watcher needs to draw a run: a progress summary and the training curves.

Everything is read from the run folder, so a refreshed tab, a second browser or the
command line all see the same run. No TensorFlow here.
"""

from __future__ import annotations

import time
from typing import Any

import plotly.graph_objects as go

from cnnlab import runs

CURVE_COLOURS = {"train": "#4C78A8", "val": "#F58518"}


def run_progress(run_id: str) -> dict[str, Any]:
    """A summary of where run ``run_id`` is.

    Returns:
        ``status``, ``error``, ``epoch`` (last finished), ``epochs``, ``batch`` and
        ``batches`` (of the epoch in progress), ``eta_s``, ``images_per_s``,
        ``elapsed_s``, ``position`` (in the queue, when queued), ``history``,
        ``best_epoch``, ``metrics``, ``device``, ``strategy``, ``train``, and the
        fields of :meth:`cnnlab.run.Run.summary` (``dataset``, ``arch``, ...).
    """
    info = runs.load_run(run_id)
    events = info.events()
    history = info.history()
    epochs = info.train.get("epochs")
    # The run's one summary (Run.summary), and where its training is.
    summary: dict[str, Any] = {
        **info.summary(),
        "train": info.train,
        "device": info.device.get("device"),
        "strategy": info.device.get("strategy"),
        "epoch": len(history.get("loss", [])),
        "epochs": epochs,
        "batch": 0,
        "batches": None,
        "eta_s": None,
        "images_per_s": None,
        "elapsed_s": None,
        "position": None,
        "history": history,
        # From the history, not checkpoints.json: checkpoints are written every few seconds.
        "best_epoch": _best_epoch(
            history,
            info.train.get("monitor", "val_loss"),
            int(info.train.get("early_stopping_start") or 0),
        )
        or info.checkpoint_epoch("best"),
        "metrics": info.metrics(),
        "cancelling": False,
    }
    started_at = None
    for event in events:
        kind = event.get("type")
        if kind == "start":
            started_at = event.get("time")
            summary["batches"] = event.get("batches")
            summary["batch"] = 0
        elif kind == "batch":
            summary.update(
                batch=event.get("batch", 0),
                batches=event.get("batches"),
                eta_s=event.get("eta_s"),
                images_per_s=event.get("images_per_s"),
            )
        elif kind == "epoch":
            summary.update(
                batch=0,
                batches=event.get("batches"),
                eta_s=event.get("eta_s"),
                images_per_s=event.get("images_per_s"),
                epochs=event.get("epochs", epochs),
            )
        elif kind == "status":
            status = event.get("status")
            summary["cancelling"] = status == "cancelling"
            summary["position"] = event.get("position") if status == "queued" else None
    if started_at is not None and info.is_active:
        summary["elapsed_s"] = time.time() - started_at
    if not info.is_active:
        summary["eta_s"] = None
    return summary


def _best_epoch(history: dict[str, list[float]], monitor: str, start: int = 0) -> int | None:
    best = runs.best_in_history(history, monitor, start)
    return best[0] + 1 if best else None


def curves_figure(history: dict[str, list[float]], metric: str, best_epoch: int | None = None):
    """Train and validation ``metric`` per epoch, the best epoch marked."""
    figure = go.Figure()
    epochs = max((len(values) for values in history.values()), default=1)
    for split, key in (("train", metric), ("val", f"val_{metric}")):
        values = history.get(key) or []
        if values:
            figure.add_trace(
                go.Scatter(
                    x=list(range(1, len(values) + 1)),
                    y=values,
                    mode="lines+markers",
                    name=split,
                    line=dict(color=CURVE_COLOURS[split]),
                )
            )
    if best_epoch:
        figure.add_vline(
            x=best_epoch,
            line_dash="dash",
            line_color="#54A24B",
            annotation_text=f"best epoch {best_epoch}",
            annotation_position="top left",
        )
    figure.update_layout(
        title=metric.replace("_", " ").capitalize(),
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis=dict(title="epoch", tickmode="linear", tick0=1, dtick=max(1, -(-epochs // 10))),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
    )
    return figure


def format_duration(seconds: float | None) -> str:
    """``1m05s`` / ``42s`` / ``—``."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
