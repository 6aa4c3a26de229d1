"""Metrics from fixed predictions equal scikit-learn's, edge cases included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics

from cnnlab.errors import CnnlabError
from cnnlab.evaluate import (
    calibration,
    errors_for_cell,
    evaluate_predictions,
    most_confused,
    top_losses,
)

LABELS = ["cat", "dog", "fox", "owl"]


def fixed_predictions(seed=3, n=40, classes=4):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), y_true] += 1.2  # better than chance, not perfect
    y_prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, y_prob


def evaluate_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning leaking to the user fails the test
        return evaluate_predictions(*args, **kwargs)


def test_metrics_equal_scikit_learn():
    y_true, y_prob = fixed_predictions()
    y_pred = y_prob.argmax(axis=1)
    evaluation = evaluate_quietly(y_true, y_prob, LABELS, k=(2, 3))
    assert evaluation.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert evaluation.balanced_accuracy == pytest.approx(
        metrics.balanced_accuracy_score(y_true, y_pred)
    )
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y_true, y_pred)
    for i, label in enumerate(LABELS):
        row = evaluation.per_class[label]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert evaluation.macro_f1 == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro"))
    assert evaluation.weighted["f1"] == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="weighted")
    )
    assert evaluation.macro["precision"] == pytest.approx(
        metrics.precision_score(y_true, y_pred, average="macro")
    )
    for k in (2, 3):
        assert evaluation.top_k[k] == pytest.approx(
            metrics.top_k_accuracy_score(y_true, y_prob, k=k)
        )
    np.testing.assert_array_equal(evaluation.confusion, metrics.confusion_matrix(y_true, y_pred))
    for i, label in enumerate(LABELS):
        assert evaluation.roc_auc[label] == pytest.approx(
            metrics.roc_auc_score(y_true == i, y_prob[:, i])
        )
        assert evaluation.average_precision[label] == pytest.approx(
            metrics.average_precision_score(y_true == i, y_prob[:, i])
        )
    assert evaluation.macro_roc_auc == pytest.approx(
        metrics.roc_auc_score(y_true, y_prob, multi_class="ovr", average="macro")
    )
    # A sanity check that the fixture is not trivial.
    assert 0.3 < evaluation.accuracy < 1.0


def test_confusion_matrix_rows_are_true_columns_predicted():
    # Two cats called dogs, one dog called a fox, one fox right.
    y_true = ["cat", "cat", "dog", "fox"]
    y_prob = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8]])
    evaluation = evaluate_quietly(y_true, y_prob, ["cat", "dog", "fox"])
    assert evaluation.confusion.tolist() == [[0, 2, 0], [0, 0, 1], [0, 0, 1]]
    assert evaluation.to_dict()["confusion_matrix"] == [[0, 2, 0], [0, 0, 1], [0, 0, 1]]
    normalised = evaluation.confusion_normalised
    assert normalised[0].tolist() == [0.0, 1.0, 0.0]
    assert most_confused(evaluation) == [("cat", "dog", 2), ("dog", "fox", 1)]


def test_class_never_predicted_gives_zero_precision_without_warnings():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_prob = np.array([[0.9, 0.1, 0.0]] * 3 + [[0.1, 0.9, 0.0]] * 3)  # never "fox"
    evaluation = evaluate_quietly(y_true, y_prob, ["cat", "dog", "fox"])
    assert evaluation.per_class["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    y_pred = y_prob.argmax(axis=1)
    assert evaluation.macro_f1 == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_class_absent_from_test_split():
    # No owl in the test split, but the model sometimes says owl.
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_prob = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.7],
            [0.1, 0.7, 0.1, 0.1],
            [0.1, 0.7, 0.1, 0.1],
            [0.1, 0.1, 0.7, 0.1],
            [0.2, 0.1, 0.6, 0.1],
        ]
    )
    evaluation = evaluate_quietly(y_true, y_prob, LABELS, k=2)
    assert evaluation.per_class["owl"]["support"] == 0
    assert evaluation.per_class["owl"]["recall"] == 0.0
    assert evaluation.roc["owl"] is None and evaluation.pr["owl"] is None
    assert evaluation.roc_auc["cat"] is not None
    y_pred = y_prob.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = metrics.balanced_accuracy_score(y_true, y_pred)
    assert evaluation.balanced_accuracy == pytest.approx(expected)
    assert evaluation.confusion.shape == (4, 4)
    assert evaluation.confusion[0, 3] == 1
    assert evaluation.top_k[2] == pytest.approx(
        metrics.top_k_accuracy_score(y_true, y_prob, k=2, labels=[0, 1, 2, 3])
    )
    # JSON-ready: None for undefined curves.
    assert evaluation.to_dict()["roc_auc"]["owl"] is None


def test_two_classes():
    y_true = np.array([0, 0, 0, 1, 1])
    y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    evaluation = evaluate_quietly(y_true, y_prob, ["no", "yes"])
    assert evaluation.top_k == {}  # top-2 of 2 classes is always 1: not reported
    assert evaluation.roc_auc["yes"] == pytest.approx(metrics.roc_auc_score(y_true, y_prob[:, 1]))
    assert evaluation.per_class["yes"]["recall"] == pytest.approx(0.5)
    assert evaluation.accuracy == pytest.approx(3 / 5)


def test_single_class_in_test_split():
    y_true = np.array([1, 1, 1])
    y_prob = np.array([[0.2, 0.8, 0.0], [0.6, 0.3, 0.1], [0.1, 0.9, 0.0]])
    evaluation = evaluate_quietly(y_true, y_prob, ["cat", "dog", "fox"], k=2)
    assert evaluation.accuracy == pytest.approx(2 / 3)
    assert all(curve is None for curve in evaluation.roc.values())
    assert evaluation.macro_roc_auc is None


def test_calibration_matches_hand_computed_ece():
    y_true = np.array([0, 0, 1, 1])
    y_prob = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    result = calibration(y_true, y_prob, bins=10)
    # Bin 0.9-1.0: two images, confidence .95, accuracy 1; bin 0.6-0.7: two, .65 and 0.5.
    assert [row["count"] for row in result["bins"]] == [2, 2]
    assert result["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.15)
    with pytest.raises(CnnlabError, match="`bins` must be"):
        calibration(y_true, y_prob, bins=0)


def test_confidence_of_exactly_one_is_in_the_last_bin():
    result = calibration(np.array([0]), np.array([[1.0, 0.0]]), bins=10)
    assert result["bins"][0]["low"] == pytest.approx(0.9)


def test_errors_for_cell_sorted_by_loss_or_confidence():
    y_true = ["cat", "cat", "cat", "dog"]
    y_prob = np.array([[0.4, 0.6], [0.1, 0.9], [0.3, 0.7], [0.2, 0.8]])
    evaluation = evaluate_quietly(y_true, y_prob, ["cat", "dog"], files=["a", "b", "c", "d"])
    by_loss = errors_for_cell(evaluation, "cat", "dog", sort="loss")
    assert [p.file for p in by_loss] == ["b", "c", "a"]
    assert by_loss[0].loss == pytest.approx(-np.log(0.1))
    assert by_loss[0].confidence == pytest.approx(0.9)
    by_confidence = errors_for_cell(evaluation, "dog", "dog", sort="confidence")
    assert [p.file for p in by_confidence] == ["d"]
    assert errors_for_cell(evaluation, "dog", "cat") == []
    assert [p.file for p in top_losses(evaluation, n=2)] == ["b", "c"]
    assert len(top_losses(evaluation, errors_only=False)) == 4
    with pytest.raises(CnnlabError, match="`true_label` must be one of cat, dog. Received"):
        errors_for_cell(evaluation, "cow", "dog")
    with pytest.raises(CnnlabError, match="`sort` must be one of"):
        errors_for_cell(evaluation, "cat", "dog", sort="size")


def test_to_dict_has_the_cli_keys_and_is_json():
    import json

    y_true, y_prob = fixed_predictions()
    data = evaluate_quietly(y_true, y_prob, LABELS).to_dict()
    for key in (
        "run_id",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "labels",
        "per_class",
        "confusion_matrix",
        "predictions_csv",
    ):
        assert key in data
    assert set(data["per_class"]["cat"]) >= {"precision", "recall", "f1", "support"}
    json.dumps(data)


@pytest.mark.parametrize(
    "y_true, y_prob, labels, message",
    [
        ([0], [[1.0, 0.0]], ["a"], "at least 2 classes"),
        ([0], [[1.0, 0.0]], ["a", "a"], "must be unique"),
        ([0], [[0.2, 0.3, 0.5]], ["a", "b"], r"one column per class \(2\)"),
        ([0, 1], [[0.5, 0.5]], ["a", "b"], "one label per row"),
        ([5], [[0.5, 0.5]], ["a", "b"], r"must be in \[0, 1\]"),
        (["zebra"], [[0.5, 0.5]], ["a", "b"], "not among the classes"),
        ([0], [[np.nan, 0.5]], ["a", "b"], "NaN or negative"),
        ([], np.zeros((0, 2)), ["a", "b"], "test split is empty"),
    ],
)
def test_bad_inputs_are_explained(y_true, y_prob, labels, message):
    with pytest.raises(CnnlabError, match=message):
        evaluate_predictions(y_true, y_prob, labels)
