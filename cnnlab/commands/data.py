"""``ingest`` and ``datasets``: create datasets and list them from the shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from cnnlab.cli import add_json_flag, print_json
from cnnlab.data.dataset import Dataset, list_datasets
from cnnlab.data.health import FINDINGS, finding_rows
from cnnlab.data.ingest import IngestReport, ingest
from cnnlab.data.samples import ShapesSpec


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="create a dataset from a zip, a folder or a built-in sample",
        description=(
            "Create a dataset from a .zip or folder with one folder per class (optionally "
            "inside train/, val/, test/), or from sample:digits / sample:shapes. Bad files "
            "are rejected with a reason; the rest are kept."
        ),
    )
    parser.add_argument("source", help="a .zip, a folder, sample:digits or sample:shapes")
    parser.add_argument("--name", required=True, help="name of the new dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=(0.7, 0.15, 0.15),
        help="split fractions (default 0.7 0.15 0.15)",
    )
    parser.add_argument("--replace", action="store_true", help="replace a dataset of that name")
    for option in ("count", "image_size", "imbalance"):
        parser.add_argument(
            f"--{option.replace('_', '-')}",
            dest=option,
            type=float if option == "imbalance" else int,
            default=None,
            help=f"sample:shapes only: {ShapesSpec.help(option)}",
        )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_json_flag(parser)
    parser.set_defaults(handler=run_ingest)

    listing = subparsers.add_parser("datasets", help="list the datasets in the workspace")
    add_json_flag(listing)
    listing.set_defaults(handler=run_datasets)


def run_ingest(args: argparse.Namespace) -> int:
    options = {
        key: getattr(args, key)
        for key in ("count", "image_size", "imbalance")
        if getattr(args, key) is not None
    }
    progress = None if args.no_progress else _ProgressBar()
    try:
        report = ingest(
            args.source,
            args.name,
            seed=args.seed,
            split=tuple(args.split),
            options=options or None,
            progress=progress,
            replace=args.replace,
        )
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(_summary(report))
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    rows = []
    for name in list_datasets():
        dataset = Dataset(name)
        rows.append(
            {
                "name": dataset.name,
                "images": len(dataset.records),
                "classes": len(dataset.class_names),
                "channels": dataset.channels,
                "created": dataset.meta.get("created", ""),
                "orientation_matters": dataset.orientation_matters,
            }
        )
    if args.json:
        print_json({"datasets": rows})
    elif not rows:
        print("No datasets yet. Create one with: python -m cnnlab ingest SOURCE --name NAME")
    else:
        width = max(4, *(len(row["name"]) for row in rows))
        print(f"{'name':<{width}}  images  classes  channels  created")
        for row in rows:
            print(
                f"{row['name']:<{width}}  {row['images']:>6}  {row['classes']:>7}  "
                f"{row['channels']:>8}  {row['created']}"
            )
    return 0


def _summary(report: IngestReport) -> str:
    health = report.health
    lines = [
        f"Dataset {report.dataset!r}: {report.images} image(s) accepted, "
        f"{len(report.rejected)} rejected, {report.ignored} ignored.",
        "  split sizes: "
        + ", ".join(f"{split} {count}" for split, count in health.get("splits", {}).items()),
    ]
    for label, row in health.get("classes", {}).items():
        lines.append(
            f"  {label}: {row['total']} (train {row['train']}, val {row['val']}, "
            f"test {row['test']})"
        )
    if report.rejected:
        lines.append("Rejected:")
        lines += [f"  {item['file']}: {item['reason']}" for item in report.rejected[:20]]
        if len(report.rejected) > 20:
            lines.append(f"  ... and {len(report.rejected) - 20} more (see --json)")
    if health.get("warnings"):
        lines.append("Warnings:")
        lines += [f"  - {warning}" for warning in health["warnings"]]
    lines += _findings(health)
    return "\n".join(lines)


def _findings(health: dict[str, Any], shown: int = 10) -> list[str]:
    """Duplicates, conflicts, leaks and tiny images, named as they were uploaded."""
    lines = []
    for kind, (title, about) in FINDINGS.items():
        rows = finding_rows(health, kind)
        if not rows:
            continue
        lines.append(f"{title} ({about}: images as uploaded):")
        lines += [f"  {row[about]}: {row['images']}" for row in rows[:shown]]
        if len(rows) > shown:
            lines.append(f"  ... and {len(rows) - shown} more (see --json)")
    return lines


class _ProgressBar:
    """The files examined so far, as a tqdm bar on stderr when it is a terminal."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:  # made at the first file, when the total is known
            self.bar = tqdm(total=total, initial=done, unit="file", file=sys.stderr, disable=None)
            return
        self.bar.total = total  # it grows when the source could not count ahead
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
