"""Plotly figure builders: plain data in, ``go.Figure`` out, and cnnlab's figure look.

Figures for one concern may live beside it (``cnnlab.models.diagram``); this module
holds the ones the Data page draws from a dataset's index and health report, and
registers the ``cnnlab`` plotly template that every figure builder applies through
:func:`styled`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from cnnlab.data.dataset import SPLITS, Record

SPLIT_COLOURS = {"train": "#4C78A8", "val": "#F58518", "test": "#54A24B"}

TEMPLATE = "cnnlab"
# What every cnnlab figure shares: tight margins, the legend in a row above the plot.
pio.templates[TEMPLATE] = go.layout.Template(
    layout=dict(
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
    )
)
# plotly's own legend placement (a column right of the plot), for figures that keep it.
RIGHT_LEGEND = dict(orientation="v", yanchor="auto", y=1.0, xanchor="left", x=1.02)


def styled(figure: go.Figure, title: str, height: int, **layout) -> go.Figure:
    """Give ``figure`` its title, height and the ``cnnlab`` template; returns it.

    The template goes on top of the session's default one (plotly's, or Streamlit's
    inside the app, whose chart colours the pages keep), so only cnnlab's own
    settings change. ``layout`` takes a figure's exceptions (``margin_t=50``).
    """
    base = pio.templates.default
    template = f"{base}+{TEMPLATE}" if base and base != TEMPLATE else TEMPLATE
    side = pio.templates[TEMPLATE].layout.margin
    # Streamlit's chart theme overwrites a template's left and right margins with 0;
    # set on the figure, the template's stay.
    layout = {"margin_l": side.l, "margin_r": side.r, **layout}
    # Legend entries and titles carry user text (run names, tags, class names): plotly
    # reads tags such as <a href> in them, so they are escaped to show as written.
    for trace in figure.data:
        if isinstance(trace.name, str):
            trace.name = html.escape(trace.name, quote=False)
    title = html.escape(title, quote=False)
    figure.update_layout(template=template, title=title, height=height, **layout)
    return figure


def last_point(selection: Any) -> dict | None:
    """The last point of a plotly selection, from Streamlit's selection state
    (``event.selection``, or the dict under the chart's key in ``session_state``)."""
    if isinstance(selection, Mapping) and "selection" in selection:
        selection = selection["selection"]
    points = selection.get("points") if isinstance(selection, Mapping) else None
    return points[-1] if points else None


def category_ticks(labels: Sequence[str]) -> dict:
    """Settings of a category axis whose categories are user text (class names).

    plotly reads tags such as ``<br>`` in tick labels, so the text shown is escaped
    while the values (what hovers, clicks and selections hand back) stay as written.
    """
    names = [str(label) for label in labels]
    shown = [html.escape(name, quote=False) for name in names]
    return dict(type="category", tickmode="array", tickvals=names, ticktext=shown)


def _layout(figure: go.Figure, title: str, height: int = 320) -> go.Figure:
    return styled(figure, title, height, legend=RIGHT_LEGEND)


def class_balance_figure(health: dict) -> go.Figure:
    """Stacked bars of images per class, one colour per split."""
    classes = health.get("classes", {})
    labels = list(classes)
    figure = go.Figure()
    for split in SPLITS:
        figure.add_bar(
            name=split,
            x=labels,
            y=[classes[label].get(split, 0) for label in labels],
            marker_color=SPLIT_COLOURS[split],
        )
    figure.update_layout(barmode="stack", xaxis_title="class", yaxis_title="images")
    figure.update_xaxes(**category_ticks(labels))
    ratio = health.get("imbalance_ratio")
    title = "Images per class" + (f" (imbalance ratio {ratio:.1f}:1)" if ratio else "")
    return _layout(figure, title)


def size_figure(records: Sequence[Record]) -> go.Figure:
    """Width against height of every image, one trace per class, as a heat-free scatter.

    Large datasets are thinned to 5,000 points so the page stays quick.
    """
    step = max(1, len(records) // 5000)
    sample = records[::step]
    figure = go.Figure()
    for label in sorted({record.label for record in sample}):
        rows = [record for record in sample if record.label == label]
        figure.add_scattergl(
            name=label,
            x=[row.width for row in rows],
            y=[row.height for row in rows],
            mode="markers",
            marker=dict(size=6, opacity=0.6),
            hovertext=[f"{label}: {row.source or row.file}" for row in rows],
        )
    # Beyond a handful of classes a legend crowds out the plot; hovering names the class.
    figure.update_layout(
        xaxis_title="width (px)", yaxis_title="height (px)", showlegend=len(figure.data) <= 6
    )
    return _layout(figure, "Image sizes")


def aspect_figure(records: Sequence[Record]) -> go.Figure:
    """Histogram of aspect ratios (width / height)."""
    figure = go.Figure(
        go.Histogram(x=[record.width / max(record.height, 1) for record in records], nbinsx=30)
    )
    figure.update_layout(xaxis_title="aspect ratio (width / height)", yaxis_title="images")
    return _layout(figure, "Aspect ratios")
