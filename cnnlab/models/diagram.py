"""A plotly picture of the layer stack: one bar per row of the analysis.

Each bar is centred on zero so the stack reads as a funnel: its height is the feature
map's side (flat vectors get a thin sliver), its width grows with the channel count,
its colour says what kind of block it is, and the label under it gives the shape.
Hovering shows parameters, MACs, memory and receptive field.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from cnnlab.models.analysis import Analysis, format_bytes, format_count

# One colour per kind of row (Tableau 10, as the other cnnlab figures).
KIND_COLOURS = {
    "input": "#9D9D9D",
    "conv": "#4C78A8",
    "pool": "#F58518",
    "gated": "#E45756",
    "residual": "#72B7B2",
    "backbone": "#54A24B",
    "flat": "#B279A2",
    "head": "#EECA3B",
}


def _kind(row: dict) -> str:
    name, title = row["name"], row["type"]
    if name == "input":
        return "input"
    if name == "predictions" or title == "Dense":
        return "head"
    if name.startswith("gated"):
        return "gated"
    if name.startswith("res"):
        return "residual"
    if name.startswith("backbone"):
        return "backbone"
    if "pool" in name and "global" not in name:
        return "pool"
    if len(row["output_shape"]) == 1:
        return "flat"
    return "conv"


def arch_figure(analysis: Analysis, height: int = 360) -> go.Figure:
    """The layer stack of ``analysis`` with output shapes, as a plotly figure."""
    rows = analysis.rows
    sides = [row["output_shape"][0] for row in rows if len(row["output_shape"]) == 3]
    largest_side = max(sides, default=1)
    channels = [row["output_shape"][-1] for row in rows]
    largest_channels = max(max(channels), 2)
    heights, widths, colours, labels, hovers = [], [], [], [], []
    for row in rows:
        shape = row["output_shape"]
        if len(shape) == 3:
            heights.append(max(shape[0] / largest_side, 0.04))
        else:
            heights.append(0.04 + 0.08 * math.log10(shape[0] + 1) / 4)
        widths.append(0.25 + 0.6 * math.log(shape[-1] + 1) / math.log(largest_channels + 1))
        colours.append(KIND_COLOURS[_kind(row)])
        labels.append("x".join(str(size) for size in shape))
        field = row["receptive_field"]
        hovers.append(
            f"<b>{row['name']}</b> ({row['type']})<br>"
            f"{row.get('details') or ''}<br>"
            f"output {labels[-1]}<br>"
            f"params {row['params']:,}<br>"
            f"MACs {format_count(row['macs'])}<br>"
            f"memory {format_bytes(row['activation_bytes'])} per image"
            + (f"<br>receptive field {field}px, jump {row['jump']}" if field else "")
        )
    names = [row["name"] for row in rows]
    figure = go.Figure(
        go.Bar(
            x=names,
            y=heights,
            base=[-h / 2 for h in heights],
            width=widths,
            marker_color=colours,
            text=labels,
            textposition="outside",
            textfont=dict(size=11),
            hovertext=hovers,
            hoverinfo="text",
            cliponaxis=False,
        )
    )
    totals = analysis.totals
    figure.update_layout(
        title=(
            f"{analysis.arch.label}: {format_count(totals['params'])} parameters, "
            f"{format_count(totals['macs'])} MACs"
        ),
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        showlegend=False,
        bargap=0.1,
        uniformtext=dict(minsize=10, mode="show"),
    )
    figure.update_xaxes(type="category", tickangle=-45)
    figure.update_yaxes(visible=False, range=[-0.7, 0.7])
    return figure
