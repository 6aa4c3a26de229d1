"""Reports over runs: the experiments table, comparisons, and one run's self-contained
HTML report and download bundle.

Everything here reads run folders (``cnnlab.runs``) and metrics (``cnnlab.evaluate``);
nothing trains in this process. The imbalance study is :mod:`cnnlab.study`.
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab import runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run, evaluate_run_labels, most_confused

REPORT_FILE = "report.html"
# Files of a run folder that go into its download bundle (those that exist).
BUNDLE_FILES = (
    runs.RUN_FILE,
    runs.HISTORY_FILE,
    runs.METRICS_FILE,
    runs.PREDICTIONS_FILE,
    runs.CHECKPOINTS_FILE,
    runs.EVENTS_FILE,
    runs.checkpoint_file("best"),
)
# Hyper-parameters shown as columns of the experiments table.
KEY_TRAIN_FIELDS = (
    "image_size",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "schedule",
    "class_weight",
    "oversample",
    "seed",
)


# ------------------------------------------------------------------------ the table


def run_label(info: runs.Run) -> str:
    """The run's name when it has one, else its id."""
    return info.label


def experiment_row(info: runs.Run) -> dict[str, Any]:
    """One line of the experiments table (JSON-ready): the run's summary, its key
    hyper-parameters and macro F1."""
    summary = info.summary()
    train = info.train
    evaluation = evaluate_run_labels(info) if info.status == "completed" else None
    duration = summary["duration_s"]
    return {
        "run_id": info.run_id,
        "name": summary["name"] or "",
        "tags": ", ".join(summary["tags"]),
        "status": info.status,
        "dataset": info.dataset,
        "arch": summary["arch"],
        **{key: train.get(key) for key in KEY_TRAIN_FIELDS},
        "best_val_accuracy": summary["best_val_accuracy"],
        "test_accuracy": summary["test_accuracy"],
        "macro_f1": evaluation.macro_f1 if evaluation else None,
        "epochs_run": summary["epochs_run"],
        "duration_s": round(duration, 1) if duration is not None else None,
        "device": summary["device"],
        "created": info.created,
        "study": summary["study"] or "",
    }


def experiments_table(dataset: str | None = None) -> list[dict[str, Any]]:
    """All runs (of ``dataset`` when given), newest first."""
    return [experiment_row(info) for info in runs.list_runs(dataset)]


def filter_rows(
    rows: Sequence[dict[str, Any]],
    text: str = "",
    statuses: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows whose id, name, tags or architecture contain ``text`` (case-insensitive) and
    whose status and dataset are among those given (all when None)."""
    needle = text.strip().lower()
    kept = []
    for row in rows:
        haystack = " ".join(str(row.get(key, "")) for key in ("run_id", "name", "tags", "arch"))
        if needle and needle not in haystack.lower():
            continue
        if statuses is not None and row["status"] not in statuses:
            continue
        if datasets is not None and row["dataset"] not in datasets:
            continue
        kept.append(row)
    return kept


# ------------------------------------------------------------------------ comparison


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
    elif isinstance(value, list):
        into[prefix] = json.dumps(value)
    else:
        into[prefix] = value


def run_config(info: runs.Run) -> dict[str, Any]:
    """The settings that make a run what it is, flattened to dotted keys."""
    flat: dict[str, Any] = {"dataset": info.dataset}
    _flatten("arch", info.arch, flat)
    _flatten("train", info.train, flat)
    return flat


def config_diff(run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The settings that differ between runs: ``[{"setting", <run label>: value, ...}]``.

    Raises:
        CnnlabError: with fewer than two runs, or an unknown run.
    """
    if len(run_ids) < 2:
        raise CnnlabError(
            f"A comparison needs at least 2 runs. Received: {len(run_ids)} ({list(run_ids)})"
        )
    infos = [runs.load_run(run_id) for run_id in run_ids]
    configs = [run_config(info) for info in infos]
    labels = _unique_labels(infos)
    keys = sorted(set().union(*configs))
    rows = []
    for key in keys:
        values = [config.get(key) for config in configs]
        if any(value != values[0] for value in values[1:]):
            rows.append({"setting": key, **dict(zip(labels, values, strict=True))})
    return rows


def _unique_labels(infos: Sequence[runs.Run]) -> list[str]:
    labels = [run_label(info) for info in infos]
    return [
        label if labels.count(label) == 1 else f"{label} ({info.run_id})"
        for label, info in zip(labels, infos, strict=True)
    ]


@dataclass
class Comparison:
    """Several runs side by side (the first is the baseline of the deltas)."""

    run_ids: list[str]
    labels: list[str]  # one per run: its name or id
    rows: list[dict[str, Any]]  # experiments-table rows
    histories: dict[str, dict[str, list[float]]]  # label -> history
    config_diff: list[dict[str, Any]]
    classes: list[str]  # union of the runs' classes, in first-seen order
    per_class_f1: dict[str, dict[str, float | None]]  # label -> class -> F1
    f1_deltas: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_ids": self.run_ids,
            "labels": self.labels,
            "runs": self.rows,
            "config_diff": self.config_diff,
            "classes": self.classes,
            "per_class_f1": self.per_class_f1,
            "f1_deltas": self.f1_deltas,
        }


def compare_runs(run_ids: Sequence[str]) -> Comparison:
    """Rows, learning curves, config diff and per-class F1 (with deltas against the
    first run) of several runs.

    Raises:
        CnnlabError: with fewer than two distinct runs, or an unknown run.
    """
    run_ids = list(dict.fromkeys(run_ids))
    diff = config_diff(run_ids)
    infos = [runs.load_run(run_id) for run_id in run_ids]
    labels = _unique_labels(infos)
    classes: list[str] = []
    per_class: dict[str, dict[str, float | None]] = {}
    for info, label in zip(infos, labels, strict=True):
        evaluation = evaluate_run_labels(info)
        scores = evaluation.per_class if evaluation else {}
        for name in info.class_names:
            if name not in classes:
                classes.append(name)
        per_class[label] = {name: (scores.get(name) or {}).get("f1") for name in info.class_names}
    baseline = per_class[labels[0]]
    deltas = {
        label: {
            name: (
                None
                if per_class[label].get(name) is None or baseline.get(name) is None
                else per_class[label][name] - baseline[name]
            )
            for name in classes
        }
        for label in labels[1:]
    }
    return Comparison(
        run_ids=run_ids,
        labels=labels,
        rows=[experiment_row(info) for info in infos],
        histories={label: info.history() for info, label in zip(infos, labels, strict=True)},
        config_diff=diff,
        classes=classes,
        per_class_f1={label: {name: per_class[label].get(name) for name in classes}
                      for label in labels},
        f1_deltas=deltas,
    )  # fmt: skip


# ------------------------------------------------------------------------ the report


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)  # class names as written
    return str(value)


def html_report(run: runs.Run | str) -> str:
    """A self-contained HTML page (plotly.js inlined) describing one completed run:
    configuration, learning curves, metrics, confusion matrix, curves and calibration.
    """
    from cnnlab import eval_plots

    info = runs.as_run(run)
    evaluation = evaluate_run(info)
    history = info.history()
    row = experiment_row(info)
    figures = [
        eval_plots.history_figure(history),
        eval_plots.confusion_figure(evaluation, normalised=False),
        eval_plots.confusion_figure(evaluation, normalised=True),
        eval_plots.roc_figure(evaluation),
        eval_plots.pr_figure(evaluation),
        eval_plots.reliability_figure(evaluation),
    ]
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"responsive": True})
        for i, figure in enumerate(figures)
    ]
    headline = [
        {
            "accuracy": evaluation.accuracy,
            "balanced accuracy": evaluation.balanced_accuracy,
            "macro F1": evaluation.macro_f1,
            "weighted F1": evaluation.weighted["f1"],
            **{f"top-{k} accuracy": v for k, v in evaluation.top_k.items()},
            "macro ROC AUC": evaluation.macro_roc_auc,
            "expected calibration error": evaluation.calibration["ece"],
            "test images": len(evaluation.y_true),
        }
    ]
    overview = [
        {"field": key, "value": row[key]}
        for key in ("run_id", "name", "tags", "status", "dataset", "arch", "device",
                    "created", "duration_s", "epochs_run", "best_val_accuracy")
    ]  # fmt: skip
    train = [{"setting": key, "value": value} for key, value in info.train.items()]
    versions = [{"package": k, "version": v} for k, v in info.versions.items()]
    confused = [{"true": t, "predicted": p, "images": c} for t, p, c in most_confused(evaluation)]
    title = html.escape(f"cnnlab report: {run_label(info)}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }}
th {{ background: #f3f5f8; }}
pre {{ background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }}
</style></head><body>
<h1>{title}</h1>
<p>Generated {html.escape(runs.now_iso())} by cnnlab from run folder
<code>{html.escape(str(info.path))}</code>.</p>
<h2>Run</h2>{_table(overview)}
<h2>Headline metrics (test split)</h2>{_table(headline)}
<h2>Learning curves</h2>{parts[0]}
<h2>Confusion matrix</h2><p>Rows are the true class, columns the predicted one.</p>
<div class="grid"><div>{parts[1]}</div><div>{parts[2]}</div></div>
<h2>Per-class metrics</h2>{_table(evaluation.per_class_rows())}
<h2>Most confused pairs</h2>{_table(confused)}
<h2>ROC and precision-recall</h2><div class="grid"><div>{parts[3]}</div><div>{parts[4]}</div></div>
<h2>Calibration</h2>{parts[5]}
<h2>Configuration</h2><h3>Training</h3>{_table(train)}
<h3>Architecture</h3><pre>{html.escape(json.dumps(info.arch, indent=2))}</pre>
<h3>Class weights used</h3><pre>{html.escape(_fmt(info.class_weights))}</pre>
<h3>Environment</h3>{_table(versions)}
</body></html>
"""


def write_report(run: runs.Run | str, path: str | Path | None = None) -> Path:
    """Write :func:`html_report` to ``path`` (default: ``report.html`` in the run folder)."""
    info = runs.as_run(run)
    text = html_report(info)
    target = Path(path) if path else info.path / REPORT_FILE
    if target.is_dir():
        target = target / f"{info.run_id}-{REPORT_FILE}"
    workspace.atomic_write_text(target, text)
    return target


def run_bundle(run: runs.Run | str) -> bytes:
    """A zip of the run's model, specs, history, metrics, predictions, HTML report and
    TensorBoard logs (``tensorboard --logdir`` on the unzipped folder shows them)."""
    info = runs.as_run(run)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in BUNDLE_FILES:
            path = info.path / name
            if path.exists():
                archive.write(path, f"{info.run_id}/{name}")
        for path in sorted(info.tensorboard_path.rglob("*")):
            if path.is_file():
                archive.write(path, f"{info.run_id}/{path.relative_to(info.path).as_posix()}")
        if info.has_predictions:
            archive.writestr(f"{info.run_id}/{REPORT_FILE}", html_report(info))
    return buffer.getvalue()
