"""``evaluate``, ``compare`` and ``report``: a run's metrics, several runs side by side,
and a shareable HTML report, from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli import add_json_flag, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a run on its test split",
        description=(
            "Accuracy, balanced accuracy, per-class precision/recall/F1, the confusion "
            "matrix (rows true, columns predicted) and the most confused pairs of a "
            "completed run, computed with scikit-learn on the dataset's test split."
        ),
    )
    parser.add_argument("run", help="run id (see `python -m cnnlab runs`)")
    parser.add_argument(
        "--top-k", type=int, nargs="+", default=[2, 3, 5], help="k of top-k accuracy"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run_evaluate)

    compare = subparsers.add_parser(
        "compare",
        help="compare runs: metrics, settings that differ, per-class F1",
        description=(
            "Several runs side by side: key metrics, the settings that differ, and the "
            "per-class F1 with its change against the first run."
        ),
    )
    compare.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids")
    add_json_flag(compare)
    compare.set_defaults(handler=run_compare)

    report = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description="Write an HTML report (config, curves, confusion matrix, per-class "
        "metrics, calibration) that opens offline; default: report.html in the run folder.",
    )
    report.add_argument("run", help="run id")
    report.add_argument("--output", "-o", default=None, help="file or folder to write to")
    add_json_flag(report)
    report.set_defaults(handler=run_report)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def run_evaluate(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run, most_confused

    evaluation = evaluate_run(args.run, k=tuple(args.top_k))
    if args.json:
        print_json(evaluation.to_dict())
        return 0
    print(f"run {evaluation.run_id}: {len(evaluation.y_true)} test images")
    print(
        f"accuracy {_pct(evaluation.accuracy)}  balanced accuracy "
        f"{_pct(evaluation.balanced_accuracy)}  macro F1 {evaluation.macro_f1:.3f}"
    )
    for k, value in evaluation.top_k.items():
        print(f"top-{k} accuracy {_pct(value)}")
    width = max(5, *(len(label) for label in evaluation.labels)) + 2
    print(f"\n{'class':<{width}}precision  recall     f1  support")
    for label in evaluation.labels:
        row = evaluation.per_class[label]
        print(
            f"{label:<{width}}{row['precision']:9.3f}{row['recall']:8.3f}"
            f"{row['f1']:7.3f}{row['support']:9d}"
        )
    print("\nconfusion matrix (rows true, columns predicted):")
    print(" " * width + " ".join(f"{label[:6]:>6}" for label in evaluation.labels))
    for label, counts in zip(evaluation.labels, evaluation.confusion, strict=True):
        print(f"{label:<{width}}" + " ".join(f"{int(c):6d}" for c in counts))
    pairs = most_confused(evaluation, 5)
    if pairs:
        print("\nmost confused: " + ", ".join(f"{t} -> {p} ({c})" for t, p, c in pairs))
    print(f"\npredictions: {evaluation.predictions_csv}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from cnnlab.report import compare_runs

    comparison = compare_runs(args.runs)
    if args.json:
        print_json(comparison.to_dict())
        return 0
    for label, row in zip(comparison.labels, comparison.rows, strict=True):
        print(
            f"{label}: {row['status']}, {row['arch']}, test accuracy "
            f"{_pct(row['test_accuracy'])}, macro F1 "
            f"{'–' if row['macro_f1'] is None else format(row['macro_f1'], '.3f')}"
        )
    print("\nsettings that differ:")
    for row in comparison.config_diff or [{"setting": "(none)"}]:
        values = "  |  ".join(f"{row.get(label)!s}" for label in comparison.labels)
        print(f"  {row['setting']}: {values}" if len(row) > 1 else f"  {row['setting']}")
    print(f"\nper-class F1 (delta against {comparison.labels[0]}):")
    for name in comparison.classes:
        cells = []
        for label in comparison.labels:
            f1 = comparison.per_class_f1[label].get(name)
            delta = comparison.f1_deltas.get(label, {}).get(name)
            cell = "–" if f1 is None else f"{f1:.3f}"
            if delta is not None:
                cell += f" ({delta:+.3f})"
            cells.append(cell)
        print(f"  {name}: " + "  |  ".join(cells))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from cnnlab.report import write_report

    path = write_report(args.run, args.output)
    if args.json:
        print_json({"run_id": args.run, "report": str(path)})
    else:
        print(f"wrote {path}")
    return 0
