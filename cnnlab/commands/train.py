"""``train``, ``runs``, ``cancel``, ``resume``, ``continue``, ``fork``: runs from the shell.

``train`` starts a worker process (as the Train page does) and watches it, drawing a
progress bar on stderr; with ``--json`` the last line of stdout is one JSON object.
Ctrl-C cancels the run (it can be resumed later with ``resume``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from cnnlab import runs
from cnnlab.cli import add_json_flag, print_json
from cnnlab.errors import CnnlabError
from cnnlab.train.progress import format_duration

CANCEL_WAIT_S = 60.0


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on a dataset (in a background worker) and report",
        description=(
            "Train on DATASET with the auto recipe, changed by the options given. The run "
            "goes on in a worker process; this command shows its progress and waits. "
            "Ctrl-C cancels the run (resume it later with `resume RUN`)."
        ),
    )
    train.add_argument("--dataset", required=True, help="the dataset to train on")
    train.add_argument(
        "--arch", default="auto", help="a preset, a saved architecture, a JSON file, or auto"
    )
    _spec_options(train)
    train.add_argument(
        "--class-weight", choices=("none", "balanced"), help="weight classes in the loss"
    )
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--optimizer", help="adam, adamw, sgd or rmsprop")
    train.add_argument("--schedule", help="constant, cosine, step or plateau")
    train.add_argument("--augmentation", help="dataset (its saved augmentation) or none")
    train.add_argument("--name", help="a name for the run")
    train.add_argument(
        "--budget",
        type=float,
        dest="budget_minutes",
        metavar="MINUTES",
        help="time budget: the auto recipe fits the run into it and the run stops on time "
        "(default: 5 on a CPU, 15 on a GPU; 0 = no limit)",
    )
    _watch_options(train)
    train.set_defaults(handler=run_train)

    listing = subparsers.add_parser("runs", help="list training runs")
    listing.add_argument("--dataset", help="only the runs of this dataset")
    add_json_flag(listing)
    listing.set_defaults(handler=run_runs)

    cancel = subparsers.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run", help="run id")
    cancel.add_argument("--wait", action="store_true", help="wait until the run has stopped")
    add_json_flag(cancel)
    cancel.set_defaults(handler=run_cancel)

    resume = subparsers.add_parser(
        "resume", help="resume an interrupted or cancelled run from its last checkpoint"
    )
    resume.add_argument("run", help="run id")
    _watch_options(resume)
    resume.set_defaults(handler=run_resume)

    more = subparsers.add_parser("continue", help="train a completed run for more epochs")
    more.add_argument("run", help="run id")
    more.add_argument("--epochs", type=int, required=True, help="how many more epochs")
    _watch_options(more)
    more.set_defaults(handler=run_continue)

    fork = subparsers.add_parser(
        "fork", help="start a new run from a checkpoint of another, with changes"
    )
    fork.add_argument("run", help="run id")
    fork.add_argument("--checkpoint", choices=("best", "last"), default="best")
    _spec_options(fork)
    _watch_options(fork)
    fork.set_defaults(handler=run_fork)


def _spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainSpec field, VALUE as JSON (e.g. --set early_stopping=false "
        '--set schedule="cosine"); repeatable',
    )
    parser.add_argument("--image-size", type=int, help="side images are resized to")
    parser.add_argument("--epochs", type=int, help="most epochs (early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, help="images per step")
    parser.add_argument("--lr", type=float, dest="learning_rate", help="learning rate")


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="start and return; the run goes on alone"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    add_json_flag(parser)


SPEC_OPTIONS = (
    "image_size",
    "epochs",
    "batch_size",
    "learning_rate",
    "class_weight",
    "seed",
    "optimizer",
    "schedule",
    "augmentation",
    "budget_minutes",
)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {}
    for item in getattr(args, "set", None) or []:
        field, sep, text = item.partition("=")
        if not sep or not field.strip():
            raise CnnlabError(f"`--set` takes FIELD=VALUE. Received: --set {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare word, e.g. --set schedule=cosine
        changes[field.strip().replace("-", "_")] = value
    changes.update(
        (key, getattr(args, key)) for key in SPEC_OPTIONS if getattr(args, key, None) is not None
    )
    return changes


# --- progress on stderr -------------------------------------------------------------------


# The run's own numbers (the worker's img/s, the whole run's ETA) follow the bar, not
# tqdm's rate and ETA, which would only time how fast events reach this process.
BAR_FORMAT = "{desc} [{bar:24}] {n_fmt}/{total_fmt}{postfix}"


class ProgressPrinter:
    """Turns run events into a progress bar (a terminal) or one line per epoch (a log)."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True):
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._bar: tqdm | None = None
        self._bar_epoch: int | None = None

    def close(self) -> None:
        """Wipe the batch bar, if one is drawn (the next batch draws it again)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _batch(self, event: dict[str, Any], logs: dict[str, Any]) -> None:
        stats = (
            f"loss {logs.get('loss', 0):.4f} acc {logs.get('accuracy', 0):.3f} "
            f"{event.get('images_per_s', 0):.0f} img/s ETA {format_duration(event.get('eta_s'))}"
        )
        if self._bar is not None and self._bar_epoch == event["epoch"]:
            self._bar.set_postfix_str(stats, refresh=False)
            self._bar.update(event["batch"] - self._bar.n)
            return
        self.close()
        self._bar = tqdm(
            total=max(1, event["batches"]),
            initial=event["batch"],
            desc=f"epoch {event['epoch']}/{event['epochs']}",
            postfix=stats,
            file=self.stream,
            bar_format=BAR_FORMAT,
            dynamic_ncols=True,  # trimmed to the terminal, so \r redraws one row
            leave=False,
        )
        self._bar_epoch = event["epoch"]

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event.get("type")
        logs = event.get("logs") or {}
        if kind == "status":
            status = event.get("status")
            if status == "queued" and event.get("position"):
                self._line(f"queued: {event['position']} run(s) ahead")
            elif status in ("failed", "cancelled", "cancelling"):
                message = event.get("message")
                self._line(f"{status}" + (f": {message}" if message else ""))
        elif kind == "start":
            self._line(
                f"training on {event.get('device')}: epochs {event.get('epoch', 0) + 1}-"
                f"{event.get('epochs')}, {event.get('batches')} batches of "
                f"{event.get('images')} images per epoch"
            )
        elif kind == "batch" and self.tty:
            self._batch(event, logs)
        elif kind == "epoch":
            self._line(
                f"epoch {event['epoch']}/{event['epochs']}: loss {logs.get('loss', 0):.4f} "
                f"acc {logs.get('accuracy', 0):.4f} val_loss {logs.get('val_loss', 0):.4f} "
                f"val_acc {logs.get('val_accuracy', 0):.4f} "
                f"({event.get('images_per_s', 0):.0f} img/s, {event.get('epoch_s', 0):.1f}s)"
            )


# --- results -------------------------------------------------------------------------------


def run_result(info: runs.Run, duration_s: float | None = None) -> dict[str, Any]:
    """The JSON object ``train --json`` prints last: the run's summary, with
    ``duration_s`` the time this command took."""
    return {**info.summary(), "duration_s": duration_s}


def _watch(run_id: str, args: argparse.Namespace, started: float, plan: dict | None = None) -> int:
    """Wait for the run, showing progress; ``plan`` adds the auto recipe's fields."""
    from cnnlab.train import cancel_run, wait_for_run

    def result_of(info: runs.Run, duration_s: float | None = None) -> dict[str, Any]:
        return {**run_result(info, duration_s), **(plan or {})}

    if args.detach:
        info = runs.load_run(run_id)
        if args.json:
            print_json(result_of(info, time.monotonic() - started))
        else:
            print(run_id)
        return 0
    printer = ProgressPrinter(sys.stderr, enabled=not args.no_progress)
    try:
        info = wait_for_run(run_id, on_event=printer)
    except KeyboardInterrupt:
        printer.close()
        print(f"\nCancelling run {run_id}...", file=sys.stderr, flush=True)
        try:
            cancel_run(run_id)
            info = wait_for_run(run_id, timeout=CANCEL_WAIT_S)
        except CnnlabError as error:
            print(f"error: {error}", file=sys.stderr)
            if args.json:
                print_json(result_of(runs.load_run(run_id)))
            return 130
        print(
            f"Run {run_id} is {info.status}; resume it with `python -m cnnlab resume {run_id}`.",
            file=sys.stderr,
        )
        if args.json:
            print_json(result_of(info, time.monotonic() - started))
        return 130
    printer.close()
    result = result_of(info, time.monotonic() - started)
    if info.status == "completed":
        accuracy = result["test_accuracy"]
        scored = "no test images" if accuracy is None else f"test accuracy {accuracy:.4f}"
        print(
            f"Run {run_id} completed: {scored} after {result['epochs_run']} epochs in "
            f"{format_duration(result['duration_s'])}.",
            file=sys.stderr,
        )
    else:
        print(f"Run {run_id} {info.status}: {info.error or 'no error recorded'}", file=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print(run_id)
    return 0 if info.status == "completed" else 1


# --- handlers ------------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    from cnnlab.data.dataset import load_dataset
    from cnnlab.train import start_run
    from cnnlab.train.recipe import plan_run

    started = time.monotonic()
    dataset = load_dataset(args.dataset)
    plan = plan_run(dataset, **_changes(args))
    arch = plan.arch if args.arch in (None, "auto") else args.arch
    extra = {"name": args.name} if args.name else {}
    run_id = start_run(dataset, arch, plan.spec, **extra)
    if not args.no_progress:
        what = f"auto recipe: {plan.describe()}" if arch is plan.arch else plan.note
        print(f"Run {run_id} started; {what}", file=sys.stderr, flush=True)
    fields = {"estimate_s": plan.estimate_s, "plan": plan.describe(), "pretrained": plan.pretrained}
    return _watch(run_id, args, started, plan=fields)


def run_runs(args: argparse.Namespace) -> int:
    rows = [info.summary() for info in runs.list_runs(args.dataset)]
    if args.json:
        print_json({"runs": rows})
        return 0
    if not rows:
        print("No runs yet. Start one with `python -m cnnlab train --dataset NAME`.")
        return 0
    print(f"{'run':40} {'status':11} {'epochs':>7} {'test acc':>8}  created")
    for row in rows:
        accuracy = "" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        epochs = f"{row['epochs_run']}/{row['epochs'] or '?'}"
        print(f"{row['run_id']:40} {row['status']:11} {epochs:>7} {accuracy:>8}  {row['created']}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from cnnlab.train import cancel_run, wait_for_run

    cancel_run(args.run)
    info = wait_for_run(args.run, timeout=CANCEL_WAIT_S) if args.wait else runs.load_run(args.run)
    if args.json:
        print_json({"run_id": info.run_id, "status": info.status})
    else:
        state = info.status if args.wait else "cancelling"
        print(f"Run {info.run_id}: {state}.")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from cnnlab.train import resume_run

    started = time.monotonic()
    return _watch(resume_run(args.run), args, started)


def run_continue(args: argparse.Namespace) -> int:
    from cnnlab.train import continue_run

    started = time.monotonic()
    return _watch(continue_run(args.run, args.epochs), args, started)


def run_fork(args: argparse.Namespace) -> int:
    from cnnlab.train import fork_run

    started = time.monotonic()
    run_id = fork_run(args.run, args.checkpoint, **_changes(args))
    if not args.no_progress:
        print(f"Run {run_id} forked from {args.run} ({args.checkpoint}).", file=sys.stderr)
    return _watch(run_id, args, started)
