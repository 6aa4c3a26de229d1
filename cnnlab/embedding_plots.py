"""The embedding map (:mod:`cnnlab.embedding`) as a plotly scatter: plain data in,
``go.Figure`` out.

One trace per colour (a class, or right/wrong), every point carrying its index in the
embedding as ``customdata``, so a click hands the page ``{"customdata": [index], ...}``
and :func:`point_from_selection` turns it back into the index. Outliers and label
issues are drawn again on top as open rings and crosses (their own legend entries), so
they stand out whatever the colouring.

Plotly cannot show an image inside a hover box; the page shows the clicked point's
image and its nearest neighbours beside the map.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from cnnlab.errors import CnnlabError
from cnnlab.plots import last_point, styled

COLOUR_BY = ("label", "prediction", "correct")
# Above this many points the map is drawn with WebGL, which stays smooth.
WEBGL_POINTS = 3000
RIGHT, WRONG = "right", "wrong"
CORRECT_COLOURS = {RIGHT: "#54A24B", WRONG: "#E45756"}
# How highlighted points are drawn over the map.
HIGHLIGHTS = {
    "outlier": dict(symbol="circle-open", size=15, line=dict(width=2), color="#222222"),
    "label issue": dict(symbol="x-thin-open", size=13, line=dict(width=2), color="#B00020"),
}


def embedding_figure(
    points: np.ndarray,
    labels: Sequence[str],
    predictions: Sequence[str],
    sources: Sequence[str],
    files: Sequence[str],
    colour_by: str = "label",
    outliers: Collection[str] = (),
    label_issues: Collection[str] = (),
    title: str = "Embedding map",
) -> go.Figure:
    """The images as 2-D points, coloured by given label, prediction or correctness.

    Args:
        points: ``[images, 2]`` (from :func:`cnnlab.embedding.project`).
        labels, predictions, sources, files: per image, its given class, predicted
            class, upload name (shown on hover) and stored name (matched against
            ``outliers`` and ``label_issues``).
        colour_by: ``label``, ``prediction`` or ``correct``.
        outliers: stored names of images to ring as outliers.
        label_issues: stored names of images to cross as likely label errors.
    """
    if colour_by not in COLOUR_BY:
        raise CnnlabError(
            f"`colour_by` must be one of {', '.join(COLOUR_BY)}. Received: colour_by={colour_by!r}"
        )
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    count = len(points)
    hover = [
        f"{html.escape(str(sources[i]))}<br>label {html.escape(str(labels[i]))}"
        f" · predicted {html.escape(str(predictions[i]))}"
        for i in range(count)
    ]
    groups = _groups(labels, predictions, colour_by)
    scatter = go.Scattergl if count > WEBGL_POINTS else go.Scatter
    figure = go.Figure()
    for name, members in groups.items():
        colour = CORRECT_COLOURS.get(name) if colour_by == "correct" else None
        figure.add_trace(
            scatter(
                x=points[members, 0],
                y=points[members, 1],
                mode="markers",
                name=name,
                marker=dict(size=7, opacity=0.8, color=colour),
                customdata=[[int(i)] for i in members],
                hovertext=[hover[i] for i in members],
                hoverinfo="text",
            )
        )
    for kind, wanted in (("outlier", outliers), ("label issue", label_issues)):
        wanted = set(wanted)
        members = [i for i in range(count) if files[i] in wanted]
        if not members:
            continue
        style = HIGHLIGHTS[kind]
        figure.add_trace(
            scatter(
                x=points[members, 0],
                y=points[members, 1],
                mode="markers",
                name=f"{kind}s ({len(members)})",
                marker=dict(
                    symbol=style["symbol"],
                    size=style["size"],
                    color=style["color"],
                    line=dict(width=style["line"]["width"], color=style["color"]),
                ),
                customdata=[[int(i)] for i in members],
                hovertext=[f"<b>{kind}</b><br>{hover[i]}" for i in members],
                hoverinfo="text",
            )
        )
    # Coordinates of a projection carry no units: the axes only take room.
    figure.update_xaxes(showticklabels=False, title=None, zeroline=False)
    figure.update_yaxes(showticklabels=False, title=None, zeroline=False)
    figure.update_layout(hovermode="closest", clickmode="event+select", dragmode="pan")
    return styled(figure, title, 560, margin_t=60)


def _groups(labels, predictions, colour_by: str) -> dict[str, list[int]]:
    """Point indices per legend entry, classes in sorted order."""
    if colour_by == "correct":
        keys = [RIGHT if p == t else WRONG for t, p in zip(labels, predictions, strict=True)]
        order = [RIGHT, WRONG]
    else:
        keys = [str(v) for v in (labels if colour_by == "label" else predictions)]
        order = sorted(set(keys))
    groups: dict[str, list[int]] = {name: [] for name in order}
    for i, key in enumerate(keys):
        groups[key].append(i)
    return {name: members for name, members in groups.items() if members}


def point_from_selection(selection: Any, count: int) -> int | None:
    """The embedding index of the point a plotly selection ends on, or None.

    Accepts Streamlit's selection state (``event.selection`` or the dict under the
    chart's key in ``session_state``); reads the point's ``customdata``.
    """
    point = last_point(selection)
    if point is None:
        return None
    custom = point.get("customdata")
    if isinstance(custom, (list, tuple)) and custom:
        custom = custom[0]
    try:
        index = int(custom)
    except (TypeError, ValueError):
        return None
    return index if 0 <= index < count else None
