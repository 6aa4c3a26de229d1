"""The imbalance study: one run's configuration retrained once per class-weighting variant.

Nothing trains in this process: the study queues runs through ``cnnlab.train.start_run``
and finds them again by the ``study`` field of ``run.json``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run_labels
from cnnlab.report import run_label

# How each variant of the study trains; everything else is copied from the source run.
STUDY_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"class_weight": "none", "oversample": False},
    "balanced": {"class_weight": "balanced", "oversample": False},
    "oversample": {"class_weight": "none", "oversample": True},
}


def variant_of(train: dict[str, Any]) -> str | None:
    """Which study variant a TrainSpec dict is, if any."""
    for name, settings in STUDY_VARIANTS.items():
        if all(train.get(key) == value for key, value in settings.items()):
            return name
    return None


def start_imbalance_study(run_id: str, variants: Sequence[str] = tuple(STUDY_VARIANTS)) -> str:
    """Queue the configuration of ``run_id`` once per class-weighting variant.

    The source run counts as the variant it already is (no duplicate run is queued);
    each queued run carries ``study``, ``study_variant`` and ``study_source`` in its
    ``run.json``. Returns the study id.

    Raises:
        CnnlabError: for an unknown variant or run, or a run that cannot be repeated.
    """
    from cnnlab.train import start_run

    unknown = [name for name in variants if name not in STUDY_VARIANTS]
    if unknown or not variants:
        raise CnnlabError(
            f"`variants` must be among {', '.join(STUDY_VARIANTS)}. Received: {list(variants)}"
        )
    source = runs.load_run(run_id)
    if not source.train:
        raise CnnlabError(f"Run {run_id} has no training spec in run.json; it cannot be repeated.")
    study_id = f"imbalance-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    source_variant = variant_of(source.train)
    for name in variants:
        if name == source_variant:
            continue
        spec = {**source.train, **STUDY_VARIANTS[name]}
        start_run(
            source.dataset,
            source.arch,
            spec,
            name=f"{run_label(source)} [{name}]",
            tags=sorted({*source.tags, "imbalance-study"}),
            study=study_id,
            study_variant=name,
            study_source=run_id,
        )
    return study_id


@dataclass
class Study:
    """An imbalance study: its variants' runs and, once complete, their comparison."""

    study_id: str
    source: str  # the run it was started from
    runs: dict[str, str]  # variant -> run id
    statuses: dict[str, str]  # variant -> status
    classes: list[str]
    recall: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> class ->
    f1: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: str | None = None  # the variant deltas are taken against

    @property
    def complete(self) -> bool:
        return all(status == "completed" for status in self.statuses.values())

    @property
    def active(self) -> bool:
        return any(status in runs.ACTIVE_STATUSES for status in self.statuses.values())

    def deltas(self, metric: str = "f1") -> dict[str, dict[str, float]]:
        """variant -> class -> change against the baseline variant (completed runs)."""
        values = self.recall if metric == "recall" else self.f1
        if self.baseline not in values:
            return {}
        base = values[self.baseline]
        return {
            variant: {name: scores[name] - base[name] for name in self.classes}
            for variant, scores in values.items()
            if variant != self.baseline
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per class: recall and F1 per variant, and their deltas."""
        rows = []
        recall_deltas, f1_deltas = self.deltas("recall"), self.deltas("f1")
        for name in self.classes:
            row: dict[str, Any] = {"class": name}
            for variant in self.f1:
                row[f"recall {variant}"] = self.recall[variant][name]
                row[f"F1 {variant}"] = self.f1[variant][name]
            for variant in f1_deltas:
                row[f"Δ recall {variant}"] = recall_deltas[variant][name]
                row[f"Δ F1 {variant}"] = f1_deltas[variant][name]
            rows.append(row)
        return rows


def load_study(study_id: str) -> Study:
    """Read a study back from its runs.

    Raises:
        CnnlabError: when no run belongs to ``study_id``.
    """
    members = [info for info in runs.list_runs() if info.study == study_id]
    if not members:
        known = ", ".join(list_studies()) or "none yet"
        raise CnnlabError(f"There is no imbalance study {study_id!r} (studies: {known}).")
    source_id = members[0].study_source
    by_variant = {info.study_variant: info for info in members}
    try:
        source = runs.load_run(source_id)
        variant = variant_of(source.train)
        if variant and variant not in by_variant:
            by_variant[variant] = source
    except CnnlabError:
        pass  # the source run was deleted; the study is its queued runs
    ordered = {name: by_variant[name] for name in STUDY_VARIANTS if name in by_variant}
    classes = next(iter(ordered.values())).class_names
    study = Study(
        study_id=study_id,
        source=source_id,
        runs={name: info.run_id for name, info in ordered.items()},
        statuses={name: info.status for name, info in ordered.items()},
        classes=classes,
    )
    for name, info in ordered.items():
        evaluation = evaluate_run_labels(info) if info.status == "completed" else None
        if evaluation is None:
            continue
        study.recall[name] = {c: evaluation.per_class[c]["recall"] for c in classes}
        study.f1[name] = {c: evaluation.per_class[c]["f1"] for c in classes}
    if study.f1:
        study.baseline = "none" if "none" in study.f1 else next(iter(study.f1))
    return study


def list_studies(source: str | None = None) -> list[str]:
    """Study ids, newest first (those started from run ``source`` when given)."""
    found: dict[str, str] = {}
    for info in runs.list_runs():
        study = info.study
        if study and (source is None or info.study_source == source):
            found.setdefault(study, info.created)
    return sorted(found, key=lambda s: (found[s], s), reverse=True)
