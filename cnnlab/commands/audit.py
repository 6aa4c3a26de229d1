"""``audit``: likely label errors, near-duplicates and outliers of a dataset."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli import add_json_flag, print_json

# What the JSON object holds (``audit_dataset`` adds a few more fields for the page).
JSON_KEYS = ("dataset", "version", "label_issues", "near_duplicates", "outliers", "duration_s")
SHOWN = 20  # label issues the text output lists


def register(subparsers: Any) -> None:
    from cnnlab.audit import DEFAULT_FOLDS, FOLDS_RANGE

    parser = subparsers.add_parser(
        "audit",
        help="find likely label errors, near-duplicates and outliers in a dataset",
        description=(
            "Train k quick models (stratified k-fold over train+val, the dataset's auto "
            "recipe or a run's settings, within a time budget), score every image with a "
            "model that did not see it, pick the likely label errors with cleanlab and rank "
            "them by that model's and the others' doubt about the given label. "
            "The result is also saved for the Data page's Audit tab."
        ),
    )
    parser.add_argument("dataset", help="dataset name (see `python -m cnnlab datasets`)")
    parser.add_argument(
        "--run",
        default=None,
        help="train the folds like this run, and use its model for outliers "
        "(default: the auto recipe, and the newest completed run)",
    )
    low, high = FOLDS_RANGE
    parser.add_argument(
        "--folds", type=int, default=DEFAULT_FOLDS, help=f"k of k-fold, in [{low}, {high}]"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="time for all folds together (default: each fold trains as the dataset's "
        "default run would, so the audit takes about FOLDS times that run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and models")
    add_json_flag(parser)
    parser.set_defaults(handler=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from cnnlab.audit import audit_dataset
    from cnnlab.errors import CnnlabError

    if args.budget is not None and args.budget <= 0:
        raise CnnlabError(f"`--budget` must be more than 0 minutes. Received: {args.budget:g}")
    result = audit_dataset(
        args.dataset,
        run=args.run,
        folds=args.folds,
        budget_minutes=args.budget,
        seed=args.seed,
        on_progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        print_json({key: result[key] for key in JSON_KEYS})
        return 0
    issues = result["label_issues"]
    print(f"dataset {result['dataset']} (version {result['version']}), "
          f"{result['folds']} folds, {result['duration_s']:.0f} s")  # fmt: skip
    print(f"\n{len(issues)} likely label error(s), most likely first:")
    for rank, issue in enumerate(issues[:SHOWN], 1):
        print(f"{rank:4d}. {issue['source']}  {issue['given']} -> {issue['suggested']}  "
              f"quality {issue['quality']:.3f}  ({issue['file']})")  # fmt: skip
    if len(issues) > SHOWN:
        print(f"      ... and {len(issues) - SHOWN} more (--json lists them all)")
    print(f"\n{len(result['near_duplicates'])} near-duplicate group(s)")
    for group in result["near_duplicates"][:SHOWN]:
        print(f"  {group['kind']}: {', '.join(group['sources'])}")
    print(f"\n{len(result['outliers'])} outlier(s)")
    for outlier in result["outliers"][:SHOWN]:
        print(f"  {outlier['source']}  score {outlier['score']:.3f}")
    for note in result.get("notes", []):
        print(f"\nnote: {note}")
    return 0
