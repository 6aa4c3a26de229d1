"""The Tune page's figures draw a study's completed trials on the space's own axes."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from cnnlab import tune_plots
from cnnlab.tune.space import SPACES, SearchSpace

SPACE = {
    "learning_rate": {"low": 0.0001, "high": 0.01, "log": True},
    "optimizer": {"values": ["adam", "adamw", "sgd"]},
    "batch_size": {"values": [16, 32, 64]},
    "dropout": {"low": 0.1, "high": 0.5, "log": False},
}


def trial(number: int, score, status="completed", **params) -> dict:
    return {"trial": str(number), "status": status, "score": score, "params": params}


TRIALS = [
    trial(0, 0.6, learning_rate=0.001, optimizer="sgd", batch_size=32, dropout=0.2),
    trial(1, 0.8, learning_rate=0.005, optimizer="adam", batch_size=64, dropout=0.4),
    trial(2, 0.7, learning_rate=0.0002, optimizer="sgd", batch_size=16, dropout=0.3),
    trial(3, None, "running", learning_rate=0.002, optimizer="adamw", batch_size=16, dropout=0.1),
    trial(4, None, "failed", learning_rate=0.003, optimizer="adamw", batch_size=16, dropout=0.1),
]


def axes(figure: go.Figure) -> dict[str, dict]:
    return {axis.label: axis for axis in figure.data[0].dimensions}


def test_parallel_has_one_axis_per_parameter_then_the_objective():
    figure = tune_plots.parallel_figure(TRIALS, SPACE, "validation accuracy")
    (parcoords,) = figure.data
    assert isinstance(parcoords, go.Parcoords)
    labels = [axis.label for axis in parcoords.dimensions]
    assert labels == ["learning_rate (log)", "optimizer", "batch_size", "dropout",
                      "validation accuracy"]  # fmt: skip
    # Only the three completed trials are drawn, coloured by their scores.
    assert list(parcoords.line.color) == [0.6, 0.8, 0.7]
    assert list(axes(figure)["validation accuracy"].values) == [0.6, 0.8, 0.7]
    assert axes(figure)["dropout"].range == (0.1, 0.5)  # the space's range, not the data's


def test_parallel_maps_categories_to_indices_in_the_listed_order():
    by_label = axes(tune_plots.parallel_figure(TRIALS, SPACE))
    optimizer = by_label["optimizer"]
    assert list(optimizer.ticktext) == ["adam", "adamw", "sgd"]  # listed, not met, order
    assert list(optimizer.tickvals) == [0, 1, 2]
    assert list(optimizer.values) == [2, 0, 2]
    batch = by_label["batch_size"]
    assert list(batch.ticktext) == ["16", "32", "64"] and list(batch.values) == [1, 2, 0]


def test_parallel_draws_a_log_range_in_decades():
    rate = axes(tune_plots.parallel_figure(TRIALS, SPACE))["learning_rate (log)"]
    assert list(rate.values) == pytest.approx([-3, math.log10(0.005), math.log10(0.0002)])
    assert list(rate.ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(rate.tickvals) == pytest.approx([-4, -3, -2])
    assert rate.range == pytest.approx((-4, -2))


def test_log_ticks_are_round_numbers():
    assert tune_plots.log_ticks(1e-4, 1e-2) == [1e-4, 1e-3, 1e-2]
    assert tune_plots.log_ticks(3e-4, 1e-2) == [5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
    assert tune_plots.log_ticks(0.0011, 0.0019) == [0.0011, 0.0019]  # no round one inside


def test_lower_is_better_reverses_the_colours():
    figure = tune_plots.parallel_figure(TRIALS, SPACE, "validation loss", direction="min")
    assert figure.data[0].line.reversescale is True
    scatter = tune_plots.objective_scatter_figure(TRIALS, SPACE, direction="min")
    assert scatter.layout.coloraxis.reversescale is True


def test_scatter_has_one_subplot_per_parameter():
    figure = tune_plots.objective_scatter_figure(TRIALS, SPACE, "validation accuracy")
    assert [trace.name for trace in figure.data] == list(SPACE)
    assert [a.text for a in figure.layout.annotations] == list(SPACE)  # subplot titles
    rate, optimizer, batch, dropout = figure.data
    assert list(rate.y) == [0.6, 0.8, 0.7]
    assert list(rate.x) == [0.001, 0.005, 0.0002]
    assert figure.layout.xaxis.type == "log"  # learning_rate
    # Numeric axes span the searched range (a little wider), not only the trials seen.
    assert list(figure.layout.xaxis.ticktext) == ["0.0001", "0.001", "0.01"]
    assert figure.layout.xaxis.range == pytest.approx((-4.1, -1.9))
    assert figure.layout.xaxis4.range == pytest.approx((0.08, 0.52))
    assert figure.layout.xaxis2.type == "category"
    assert list(figure.layout.xaxis2.categoryarray) == ["adam", "adamw", "sgd"]
    assert list(optimizer.x) == ["sgd", "adam", "sgd"]
    assert list(batch.x) == ["32", "64", "16"]  # listed values are categories
    assert figure.layout.xaxis4.type != "log" and list(dropout.x) == [0.2, 0.4, 0.3]
    assert figure.layout.yaxis.title.text == "validation accuracy"


@pytest.mark.parametrize("completed", [0, 1])
def test_too_few_trials_give_a_message_not_an_empty_chart(completed):
    trials = TRIALS[:completed] + TRIALS[3:]  # the running and failed ones have no score
    for figure in (
        tune_plots.parallel_figure(trials, SPACE),
        tune_plots.objective_scatter_figure(trials, SPACE),
    ):
        assert not figure.data
        (message,) = figure.layout.annotations
        assert "needs 2" in message.text
        assert ("Only one" if completed else "No trial") in message.text


@pytest.mark.parametrize("name", list(SPACES))
def test_every_named_space_draws(name):
    """A named space's JSON, as study.json holds it, makes both figures."""
    space = SearchSpace.named(name).to_dict()

    def value(dimension: dict, i: int):
        if "values" in dimension:
            return dimension["values"][i % len(dimension["values"])]
        return dimension["low"] + (dimension["high"] - dimension["low"]) * i / 2

    trials = [
        trial(i, 0.5 + i / 10, **{key: value(d, i) for key, d in space.items()}) for i in range(3)
    ]
    parallel = tune_plots.parallel_figure(trials, space)
    assert len(parallel.data[0].dimensions) == len(space) + 1
    scatter = tune_plots.objective_scatter_figure(trials, space)
    assert len(scatter.data) == len(space)


def test_equal_scores_still_span_an_axis():
    same = [trial(i, 0.5, learning_rate=0.001 * (i + 1), optimizer="adam", batch_size=16,
                  dropout=0.2) for i in range(2)]  # fmt: skip
    objective = axes(tune_plots.parallel_figure(same, SPACE, "score"))["score"]
    low, high = objective.range
    assert low < 0.5 < high
