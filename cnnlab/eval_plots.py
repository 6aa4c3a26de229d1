"""Plotly figures of the Evaluate and Experiments pages: plain data in, ``go.Figure`` out.

The confusion matrix is a heatmap with an invisible marker at the centre of every cell:
plotly heatmaps cannot be selected, markers can, so a click on a cell selects its
marker and Streamlit hands the page ``{"x": predicted, "y": true, "customdata": ...}``;
:func:`cell_from_selection` turns that back into a (true, predicted) pair.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from cnnlab.evaluate import Evaluation
from cnnlab.plots import category_ticks, last_point, styled

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6")


def _layout(figure: go.Figure, title: str, height: int = 380) -> go.Figure:
    return styled(figure, title, height, margin_t=50)


def confusion_figure(evaluation: Evaluation, normalised: bool = False) -> go.Figure:
    """Rows are the true class, columns the predicted one; a click selects a cell."""
    labels = list(evaluation.labels)
    counts = evaluation.confusion
    values = evaluation.confusion_normalised if normalised else counts
    text = [
        [
            (f"{values[t, p]:.2f}" if normalised else str(int(counts[t, p])))
            for p in range(len(labels))
        ]
        for t in range(len(labels))
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}" if len(labels) <= 20 else None,
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalised else None,
            hoverinfo="skip",  # the markers below carry the hover text and the clicks
            colorbar=dict(title="share" if normalised else "images"),
        )
    )
    xs, ys, custom, hover = [], [], [], []
    for t, true_label in enumerate(labels):
        for p, pred_label in enumerate(labels):
            xs.append(pred_label)
            ys.append(true_label)
            custom.append([true_label, pred_label])
            share = evaluation.confusion_normalised[t, p]
            true_shown, pred_shown = html.escape(true_label), html.escape(pred_label)
            hover.append(
                f"true {true_shown}, predicted {pred_shown}: {int(counts[t, p])} image(s)"
                f" ({share:.0%} of {true_shown})<br>click to see them"
            )
    figure.add_scatter(
        x=xs,
        y=ys,
        mode="markers",
        marker=dict(size=28, symbol="square", color="rgba(0,0,0,0)"),
        customdata=custom,
        hovertext=hover,
        hoverinfo="text",
        showlegend=False,
        name="cells",
    )
    side = max(360, min(900, 60 * len(labels) + 160))
    figure.update_xaxes(title="predicted", side="bottom", categoryorder="array",
                        categoryarray=labels, **category_ticks(labels))  # fmt: skip
    figure.update_yaxes(title="true", autorange="reversed", categoryorder="array",
                        categoryarray=labels, **category_ticks(labels))  # fmt: skip
    figure.update_layout(hovermode="closest", hoverdistance=-1, clickmode="event+select")
    title = "Confusion matrix (row-normalised)" if normalised else "Confusion matrix (counts)"
    return _layout(figure, title, height=side)


def cell_from_selection(selection: Any, labels: Sequence[str]) -> tuple[str, str] | None:
    """The (true, predicted) cell a plotly selection points at, or None.

    Accepts Streamlit's selection state (``event.selection`` or the dict under the
    chart's key in ``session_state``); reads the point's ``customdata`` or its x/y.
    """
    point = last_point(selection)
    if point is None:
        return None
    labels = [str(label) for label in labels]
    custom = point.get("customdata")
    if isinstance(custom, (list, tuple)) and len(custom) == 2:
        true_label, pred_label = str(custom[0]), str(custom[1])
    elif "x" in point and "y" in point:
        true_label, pred_label = str(point["y"]), str(point["x"])
    else:
        return None
    if true_label in labels and pred_label in labels:
        return true_label, pred_label
    return None


def roc_figure(evaluation: Evaluation) -> go.Figure:
    """One-vs-rest ROC curve of each class, AUC in the legend."""
    figure = go.Figure()
    figure.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
        name="chance", hoverinfo="skip",
    )  # fmt: skip
    for i, label in enumerate(evaluation.labels):
        curve = evaluation.roc[label]
        if curve is None:
            continue
        figure.add_scatter(
            x=curve["fpr"], y=curve["tpr"], mode="lines", name=f"{label} (AUC {curve['auc']:.3f})",
            line=dict(color=PALETTE[i % len(PALETTE)]),
        )  # fmt: skip
    figure.update_xaxes(title="false positive rate", range=[0, 1])
    figure.update_yaxes(title="true positive rate", range=[0, 1.02])
    auc = evaluation.macro_roc_auc
    title = "ROC, one class vs the rest" + (f" (macro AUC {auc:.3f})" if auc is not None else "")
    return _layout(figure, title, height=420)


def pr_figure(evaluation: Evaluation) -> go.Figure:
    """Precision-recall curve of each class, average precision in the legend."""
    figure = go.Figure()
    for i, label in enumerate(evaluation.labels):
        curve = evaluation.pr[label]
        if curve is None:
            continue
        figure.add_scatter(
            x=curve["recall"], y=curve["precision"], mode="lines",
            name=f"{label} (AP {curve['average_precision']:.3f})",
            line=dict(color=PALETTE[i % len(PALETTE)], shape="hv"),
        )  # fmt: skip
    figure.update_xaxes(title="recall", range=[0, 1])
    figure.update_yaxes(title="precision", range=[0, 1.02])
    return _layout(figure, "Precision-recall, one class vs the rest", height=420)


def reliability_figure(evaluation: Evaluation) -> go.Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    bins = evaluation.calibration["bins"]
    figure = go.Figure()
    figure.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
        name="perfectly calibrated", hoverinfo="skip",
    )  # fmt: skip
    figure.add_bar(
        x=[(row["low"] + row["high"]) / 2 for row in bins],
        y=[row["accuracy"] for row in bins],
        width=[(row["high"] - row["low"]) * 0.95 for row in bins],
        name="accuracy",
        marker_color=PALETTE[0],
        customdata=[[row["count"], row["confidence"]] for row in bins],
        hovertemplate="accuracy %{y:.2f}<br>mean confidence %{customdata[1]:.2f}"
        "<br>%{customdata[0]} image(s)<extra></extra>",
    )
    figure.add_scatter(
        x=[row["confidence"] for row in bins], y=[row["accuracy"] for row in bins],
        mode="markers", name="mean confidence", marker=dict(color=PALETTE[1], size=9),
    )  # fmt: skip
    figure.update_xaxes(title="confidence", range=[0, 1])
    figure.update_yaxes(title="accuracy", range=[0, 1.02])
    ece = evaluation.calibration["ece"]
    return _layout(figure, f"Reliability diagram (expected calibration error {ece:.3f})", 420)


def class_distribution_figure(distribution: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Stacked bars of images per class and split."""
    labels = list(distribution)
    figure = go.Figure()
    for i, split in enumerate(("train", "val", "test")):
        figure.add_bar(
            name=split, x=labels, y=[distribution[label].get(split, 0) for label in labels],
            marker_color=PALETTE[i],
        )  # fmt: skip
    figure.update_layout(barmode="stack")
    figure.update_xaxes(title="class", **category_ticks(labels))
    figure.update_yaxes(title="images")
    return _layout(figure, "Images per class")


def per_class_bars(
    values: Mapping[str, Mapping[str, float]], labels: Sequence[str], title: str, axis: str
) -> go.Figure:
    """Grouped bars: one group per class, one bar per series (run or variant)."""
    figure = go.Figure()
    for i, (series, by_class) in enumerate(values.items()):
        figure.add_bar(
            name=series, x=list(labels), y=[by_class.get(label) for label in labels],
            marker_color=PALETTE[i % len(PALETTE)],
        )  # fmt: skip
    figure.update_layout(barmode="group")
    figure.update_xaxes(title="class", **category_ticks(labels))
    figure.update_yaxes(title=axis)
    return _layout(figure, title)


def learning_curves_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]], metric: str = "val_accuracy"
) -> go.Figure:
    """``metric`` per epoch, one line per run (``histories``: run label -> history)."""
    figure = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        values = list(history.get(metric) or [])
        if not values:
            continue
        figure.add_scatter(
            x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
            line=dict(color=PALETTE[i % len(PALETTE)]),
        )  # fmt: skip
    figure.update_xaxes(title="epoch", dtick=1 if max(map(len, histories.values()), default=0)
                        <= 20 else None)  # fmt: skip
    figure.update_yaxes(title=metric.replace("_", " "))
    return _layout(figure, f"Learning curves: {metric.replace('_', ' ')}")


def history_figure(history: Mapping[str, Sequence[float]]) -> go.Figure:
    """One run's loss and accuracy per epoch, train and validation."""
    figure = go.Figure()
    for i, key in enumerate(("loss", "val_loss", "accuracy", "val_accuracy")):
        values = list(history.get(key) or [])
        if values:
            figure.add_scatter(
                x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                name=key.replace("_", " "), yaxis="y2" if "accuracy" in key else "y",
                line=dict(color=PALETTE[i], dash="dot" if key.startswith("val_") else None),
            )  # fmt: skip
    figure.update_layout(
        xaxis=dict(title="epoch"),
        yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1.02]),
    )
    return _layout(figure, "Learning curves")


def metric_bars(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> go.Figure:
    """Grouped bars of a few metrics, one bar per run (``rows`` carry a ``label``)."""
    figure = go.Figure()
    for i, row in enumerate(rows):
        figure.add_bar(
            name=str(row["label"]), x=[m.replace("_", " ") for m in metrics],
            y=[row.get(m) for m in metrics], marker_color=PALETTE[i % len(PALETTE)],
        )  # fmt: skip
    figure.update_layout(barmode="group")
    figure.update_yaxes(title="value", range=[0, 1.02])
    return _layout(figure, "Metrics")


def delta_heatmap(deltas: Mapping[str, Mapping[str, float | None]], title: str) -> go.Figure:
    """Per-class differences (rows: runs or variants, columns: classes), red to blue."""
    rows = list(deltas)
    labels = list(next(iter(deltas.values()), {}))
    z = np.array(
        [[np.nan if deltas[r][c] is None else deltas[r][c] for c in labels] for r in rows],
        dtype=float,
    )
    figure = go.Figure(
        go.Heatmap(
            z=z, x=labels, y=rows, zmid=0, colorscale="RdBu",
            text=[["" if np.isnan(v) else f"{v:+.2f}" for v in row] for row in z],
            texttemplate="%{text}",
        )
    )  # fmt: skip
    figure.update_xaxes(title="class", **category_ticks(labels))
    figure.update_yaxes(autorange="reversed", **category_ticks(rows))  # first row on top
    return _layout(figure, title, height=max(220, 60 * len(rows) + 140))
