"""Plotly figures of a tuning study's trials: plain data in, ``go.Figure`` out.

``trials`` are what :meth:`cnnlab.tune.study.Trial.to_json` gives (``trial``, ``status``,
``params``, ``score``); only completed trials with a score are drawn. ``space`` is the
study's search space as JSON (:meth:`cnnlab.tune.space.SearchSpace.to_dict`, what
``study.json`` holds): parameter -> ``{"values": [...]}`` or ``{"low", "high", "log"}``.
A parameter listed by values is drawn as categories in the listed order, a log-scale
range on a log axis. With fewer than :data:`MIN_TRIALS` scored trials a figure says so
instead of drawing an empty chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnnlab.plots import styled

# A comparison needs two points; one trial makes an empty-looking chart.
MIN_TRIALS = 2
COLOURSCALE = "Viridis"
SCATTER_COLUMNS = 3


def scored_trials(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The completed trials that have a score, in the order given."""
    return [
        trial
        for trial in trials
        if trial.get("score") is not None and trial.get("status", "completed") == "completed"
    ]


def is_categorical(dimension: Mapping[str, Any], values: Sequence[Any] = ()) -> bool:
    """A parameter listed by values, or one with text values, is drawn as categories."""
    return bool(dimension.get("values")) or any(isinstance(v, (str, bool)) for v in values)


def categories(dimension: Mapping[str, Any], values: Sequence[Any]) -> list[Any]:
    """A categorical parameter's axis order: its listed values, then any other value met."""
    order = list(dimension.get("values") or [])
    for value in values:
        if value not in order:
            order.append(value)
    return order


def value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _message(text: str, title: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return styled(figure, title, 200)


def _too_few(scored: Sequence[Mapping[str, Any]], title: str) -> go.Figure | None:
    if len(scored) >= MIN_TRIALS:
        return None
    done = "No trial has" if not scored else "Only one trial has"
    return _message(f"{done} completed yet: the chart needs {MIN_TRIALS}.", title)


def log_ticks(low: float, high: float) -> list[float]:
    """Round ticks for a log axis over [low, high]: powers of ten when three or more
    fall inside, else 1-2-5 steps (0.001, 0.002, 0.005, 0.01), else the ends."""
    powers = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    decades = [10.0**p for p in powers if low <= 10.0**p <= high]
    if len(decades) >= 3:
        return decades
    steps = [float(f"{m * 10.0**p:.12g}") for p in powers for m in (1, 2, 5)]
    inside = [tick for tick in steps if low <= tick <= high]
    return inside if len(inside) >= 2 else sorted({low, *inside, high})


def _span(low: float, high: float) -> list[float]:
    """An axis range; equal ends are widened, or the axis would have no length."""
    if low < high:
        return [low, high]
    pad = abs(low) * 0.1 or 1.0
    return [low - pad, high + pad]


def _bounds(dimension: Mapping[str, Any], values: Sequence[float]) -> tuple[float, float]:
    """The searched range, widened to any value outside it (so every trial shows)."""
    ends = [dimension[key] for key in ("low", "high") if dimension.get(key) is not None]
    return min([*values, *ends]), max([*values, *ends])


def _padded(low: float, high: float) -> list[float]:
    """A range a little wider than [low, high], so points at the ends are whole."""
    low, high = _span(low, high)
    pad = (high - low) * 0.05
    return [low - pad, high + pad]


def _scatter_axis(dimension: Mapping[str, Any], values: Sequence[Any]) -> dict:
    """One parameter's x-axis: its categories in the listed order, or the searched range
    (where the trials fell in it shows), on a log scale when the range is log."""
    if is_categorical(dimension, values):
        order = [value_text(value) for value in categories(dimension, values)]
        return dict(type="category", categoryorder="array", categoryarray=order)
    low, high = _bounds(dimension, values)
    if dimension.get("log") and low > 0:
        ticks = log_ticks(low, high)
        return dict(
            type="log",
            range=_padded(math.log10(low), math.log10(high)),
            tickvals=ticks,
            ticktext=[f"{tick:g}" for tick in ticks],
        )
    return dict(range=_padded(low, high))


def _parallel_axis(name: str, dimension: Mapping[str, Any], values: list[Any]) -> dict:
    if is_categorical(dimension, values):
        order = categories(dimension, values)
        return dict(
            label=name,
            values=[order.index(value) for value in values],
            tickvals=list(range(len(order))),
            ticktext=[value_text(value) for value in order],
            range=[0, max(len(order) - 1, 1)],
        )
    low, high = _bounds(dimension, values)
    if dimension.get("log") and low > 0:
        # Parallel coordinates have no log axis: draw log10 and label the real values.
        ticks = log_ticks(low, high)
        return dict(
            label=f"{name} (log)",
            values=[math.log10(value) for value in values],
            tickvals=[math.log10(tick) for tick in ticks],
            ticktext=[f"{tick:g}" for tick in ticks],
            range=_span(math.log10(low), math.log10(high)),
        )
    return dict(label=name, values=list(values), range=_span(low, high), tickformat=".3~g")


def parallel_figure(
    trials: Sequence[Mapping[str, Any]],
    space: Mapping[str, Mapping[str, Any]],
    objective: str = "objective",
    direction: str = "max",
) -> go.Figure:
    """Parallel coordinates over the completed trials: one axis per parameter of
    ``space``, the objective last, each trial's line coloured by its score (the better
    end of the scale is yellow, whichever the ``direction``)."""
    title = "Trials across the search space"
    scored = [t for t in scored_trials(trials) if all(name in t["params"] for name in space)]
    if (message := _too_few(scored, title)) is not None:
        return message
    scores = [float(trial["score"]) for trial in scored]
    colours = _span(min(scores), max(scores))
    axes = [
        _parallel_axis(name, dimension, [trial["params"][name] for trial in scored])
        for name, dimension in space.items()
    ]
    axes.append(
        dict(
            label=objective,
            values=scores,
            range=_span(min(scores), max(scores)),
            tickformat=".3~g",
        )
    )
    figure = go.Figure(
        go.Parcoords(
            dimensions=axes,
            line=dict(
                color=scores,
                cmin=colours[0],
                cmax=colours[1],
                colorscale=COLOURSCALE,
                reversescale=direction == "min",
                showscale=True,
                colorbar=dict(title=objective),
            ),
        )
    )
    # Axis titles sit above the plot and their tick labels spill sideways.
    return styled(figure, title, 420, margin_t=90, margin_l=60, margin_r=60)


def objective_scatter_figure(
    trials: Sequence[Mapping[str, Any]],
    space: Mapping[str, Mapping[str, Any]],
    objective: str = "objective",
    direction: str = "max",
) -> go.Figure:
    """The objective against each parameter: one small scatter per parameter of
    ``space``, sharing the objective axis; log-scale ranges on a log x-axis, listed
    values as categories in their listed order."""
    title = f"{objective} against each parameter"
    scored = scored_trials(trials)
    if (message := _too_few(scored, title)) is not None:
        return message
    names = list(space)
    columns = min(SCATTER_COLUMNS, len(names))
    rows = math.ceil(len(names) / columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=names, shared_yaxes=True,
        horizontal_spacing=0.04, vertical_spacing=0.5 / rows,
    )  # fmt: skip
    for index, name in enumerate(names):
        row, column = divmod(index, columns)
        dimension = space[name]
        points = [trial for trial in scored if name in trial["params"]]
        values = [trial["params"][name] for trial in points]
        categorical = is_categorical(dimension, values)
        figure.add_scatter(
            x=[value_text(value) for value in values] if categorical else values,
            y=[float(trial["score"]) for trial in points],
            mode="markers",
            name=name,
            marker=dict(size=9, color=[float(t["score"]) for t in points], coloraxis="coloraxis"),
            hovertext=[f"trial {trial['trial']}" for trial in points],
            row=row + 1,
            col=column + 1,
        )
        figure.update_xaxes(_scatter_axis(dimension, values), row=row + 1, col=column + 1)
    figure.update_yaxes(title=objective, col=1)
    figure.update_layout(
        showlegend=False,
        coloraxis=dict(colorscale=COLOURSCALE, reversescale=direction == "min", showscale=False),
    )
    return styled(figure, title, 80 + 240 * rows, margin_t=70)
