"""Figures of the Evaluate page, and the click-on-a-cell round trip."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from cnnlab import eval_plots
from cnnlab.evaluate import errors_for_cell, evaluate_predictions

LABELS = ["cat", "dog", "fox"]


@pytest.fixture
def evaluation():
    y_true = ["cat", "cat", "dog", "dog", "fox", "fox", "cat"]
    y_prob = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.6, 0.3],
            [0.5, 0.4, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.3, 0.6],
            [0.3, 0.6, 0.1],
        ]
    )
    return evaluate_predictions(y_true, y_prob, LABELS, files=[f"img{i}.png" for i in range(7)])


def test_confusion_figure_orientation_and_click_targets(evaluation):
    figure = eval_plots.confusion_figure(evaluation)
    heatmap, cells = figure.data
    assert isinstance(heatmap, go.Heatmap)
    assert list(heatmap.x) == LABELS and list(heatmap.y) == LABELS
    # z[row][column] = images of true class `row` predicted as `column`.
    assert np.asarray(heatmap.z).tolist() == evaluation.confusion.tolist()
    assert evaluation.confusion[0, 1] == 2  # two cats called dogs
    assert heatmap.hoverinfo == "skip"
    # One selectable marker per cell, x = predicted, y = true.
    assert len(cells.x) == 9
    index = list(zip(cells.y, cells.x, strict=True)).index(("cat", "dog"))
    assert list(cells.customdata[index]) == ["cat", "dog"]
    assert figure.layout.yaxis.autorange == "reversed"  # first class on top


def test_normalised_figure_rows_sum_to_one(evaluation):
    heatmap = eval_plots.confusion_figure(evaluation, normalised=True).data[0]
    assert np.allclose(np.asarray(heatmap.z).sum(axis=1), 1.0)
    assert heatmap.zmax == 1


def selection_from_click(figure, true_label, pred_label):
    """What Streamlit returns for a click on a cell's marker (see PlotlyChart.tsx)."""
    cells = figure.data[1]
    index = list(zip(cells.y, cells.x, strict=True)).index((true_label, pred_label))
    point = {
        "curve_number": 1,
        "point_number": index,
        "point_index": index,
        "x": cells.x[index],
        "y": cells.y[index],
        "customdata": list(cells.customdata[index]),
    }
    return {"selection": {"points": [point], "point_indices": [index], "box": [], "lasso": []}}


def test_a_click_on_a_cell_selects_exactly_its_images(evaluation):
    figure = eval_plots.confusion_figure(evaluation)
    for true_label in LABELS:
        for pred_label in LABELS:
            state = selection_from_click(figure, true_label, pred_label)
            cell = eval_plots.cell_from_selection(state, LABELS)
            assert cell == (true_label, pred_label)
            images = errors_for_cell(evaluation, *cell)
            assert (
                len(images)
                == evaluation.confusion[LABELS.index(true_label), LABELS.index(pred_label)]
            )
            assert all((p.true, p.pred) == (true_label, pred_label) for p in images)
    # cat -> dog holds img1 and img6, the more confident mistake first.
    state = selection_from_click(figure, "cat", "dog")
    assert [p.file for p in errors_for_cell(evaluation, "cat", "dog")] == ["img1.png", "img6.png"]
    assert eval_plots.cell_from_selection(state["selection"], LABELS) == ("cat", "dog")


@pytest.mark.parametrize(
    "selection",
    [
        None,
        {},
        {"selection": {"points": []}},
        {"points": [{"x": "cow", "y": "cat"}]},
        {"points": [{"curve_number": 0}]},
    ],
)
def test_empty_or_foreign_selections_select_nothing(selection):
    assert eval_plots.cell_from_selection(selection, LABELS) is None


def test_x_y_without_customdata_still_work():
    state = {"points": [{"x": "fox", "y": "dog"}]}
    assert eval_plots.cell_from_selection(state, LABELS) == ("dog", "fox")


def test_numeric_labels_match_as_text():
    state = {"points": [{"x": 3, "y": 8}]}
    assert eval_plots.cell_from_selection(state, [str(i) for i in range(10)]) == ("8", "3")


def test_curves_and_reliability(evaluation):
    roc = eval_plots.roc_figure(evaluation)
    assert len(roc.data) == 1 + 3  # chance line + one curve per class
    assert "AUC" in roc.data[1].name
    pr = eval_plots.pr_figure(evaluation)
    assert len(pr.data) == 3
    reliability = eval_plots.reliability_figure(evaluation)
    bars = reliability.data[1]
    assert sum(c[0] for c in bars.customdata) == 7
    assert "calibration error" in reliability.layout.title.text


def test_comparison_figures():
    curves = eval_plots.learning_curves_figure(
        {"a": {"val_accuracy": [0.5, 0.6]}, "b": {"val_accuracy": [0.4]}, "c": {}}
    )
    assert [trace.name for trace in curves.data] == ["a", "b"]
    bars = eval_plots.per_class_bars({"none": {"cat": 0.5}, "balanced": {"cat": 0.7}},
                                     ["cat"], "F1", "F1")  # fmt: skip
    assert [trace.name for trace in bars.data] == ["none", "balanced"]
    deltas = eval_plots.delta_heatmap({"balanced": {"cat": 0.2, "dog": None}}, "d")
    assert list(deltas.data[0].text[0]) == ["+0.20", ""]
    distribution = eval_plots.class_distribution_figure(
        {"cat": {"train": 6, "val": 2, "test": 2}, "dog": {"train": 3, "val": 1, "test": 1}}
    )
    assert [trace.name for trace in distribution.data] == ["train", "val", "test"]
