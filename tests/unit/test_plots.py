"""The Data page's figures draw the numbers they are given."""

from cnnlab import plots
from cnnlab.data.dataset import Record


def record(label, split, width, height, i=0):
    return Record(f"images/{label}/{i}.png", label, split, f"{label}{i}", width, height)


def test_class_balance_stacks_splits_per_class():
    health = {
        "classes": {"cat": {"train": 7, "val": 2, "test": 1}, "dog": {"train": 3, "test": 1}},
        "imbalance_ratio": 2.5,
    }
    figure = plots.class_balance_figure(health)
    bars = {trace.name: list(trace.y) for trace in figure.data}
    assert bars == {"train": [7, 3], "val": [2, 0], "test": [1, 1]}
    assert "imbalance ratio 2.5:1" in figure.layout.title.text


def test_size_and_aspect_figures():
    records = [record("cat", "train", 40, 20, 0), record("cat", "val", 30, 30, 1),
               record("dog", "train", 10, 40, 2)]  # fmt: skip
    sizes = plots.size_figure(records)
    assert {trace.name: (list(trace.x), list(trace.y)) for trace in sizes.data} == {
        "cat": ([40, 30], [20, 30]),
        "dog": ([10], [40]),
    }
    aspect = plots.aspect_figure(records)
    assert sorted(aspect.data[0].x) == [0.25, 1.0, 2.0]
