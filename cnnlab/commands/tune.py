"""``tune``: a hyperparameter study from the shell, every trial an ordinary run.

``tune --dataset D`` creates a study and drives it in this process (trials train in
their own workers), printing each trial on stderr; with ``--json`` the last line of
stdout is the study as one JSON object. Ctrl-C (or a killed process) leaves the study
interrupted, its trials still training; ``tune --resume STUDY`` picks it up.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli import add_json_flag, print_json
from cnnlab.errors import CnnlabError


def register(subparsers: Any) -> None:
    from cnnlab.tune.space import DEFAULT_SPACE, SPACES
    from cnnlab.tune.study import OBJECTIVES, TUNERS

    tune = subparsers.add_parser(
        "tune",
        help="search hyperparameters with KerasTuner; every trial is a run",
        description=(
            "Create a tuning study on DATASET and drive it here: KerasTuner's oracle picks "
            "each trial's parameters, and each trial trains as an ordinary run (listed by "
            "`runs`). Ctrl-C stops the study (its running trials go on); "
            "`tune --resume STUDY` continues it."
        ),
    )
    what = tune.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", help="start a new study on this dataset")
    what.add_argument("--resume", metavar="STUDY", help="continue an interrupted study")
    what.add_argument("--status", metavar="STUDY", help="show a study and its trials")
    what.add_argument("--cancel", metavar="STUDY", help="stop a study and its trials")
    what.add_argument("--list", action="store_true", help="list the studies")
    what.add_argument(
        "--delete", metavar="STUDY", help="delete a study that has ended (its runs stay)"
    )
    tune.add_argument(
        "--space",
        default=DEFAULT_SPACE,
        help=f"a named space ({', '.join(SPACES)}) or a JSON file (default: {DEFAULT_SPACE})",
    )
    tune.add_argument("--tuner", choices=TUNERS, default="random", help="KerasTuner oracle")
    tune.add_argument(
        "--objective",
        choices=tuple(OBJECTIVES),
        default="val_accuracy",
        help="what the study maximises (val_loss: minimises)",
    )
    tune.add_argument("--max-trials", type=int, default=10, help="most trials (default 10)")
    tune.add_argument(
        "--budget",
        type=float,
        default=0.0,
        dest="budget_minutes",
        metavar="MINUTES",
        help="no trial starts after this many minutes, and none runs past it (0 = no limit)",
    )
    tune.add_argument(
        "--epochs",
        type=int,
        help="epochs per trial (Hyperband: of the longest); default: the recipe's",
    )
    tune.add_argument("--seed", type=int, default=0, help="the oracle's seed")
    tune.add_argument(
        "--detach", action="store_true", help="drive the study in the background and return at once"
    )
    tune.add_argument(
        "--promote", action="store_true", help="when it ends, tag the best trial's run 'best'"
    )
    tune.add_argument(
        "--retrain",
        action="store_true",
        help="with --promote: also retrain the best configuration on train+val",
    )
    add_json_flag(tune)
    tune.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from cnnlab.tune import study as tuning

    if args.list:
        return _list(args)
    if args.status:
        return _report(tuning.load_study(args.status), args)
    if args.delete:
        tuning.delete_study(args.delete)
        if args.json:
            print_json({"study": args.delete, "deleted": True})
        else:
            print(f"Study {args.delete} deleted; its trials stay as runs.")
        return 0
    if args.cancel:
        tuning.cancel_study(args.cancel)
        return _report(tuning.load_study(args.cancel), args)
    if args.retrain and not args.promote:
        raise CnnlabError("--retrain retrains the promoted trial; add --promote.")
    if args.resume:
        study = tuning.load_study(args.resume)
        tuning.check_resumable(study)
        study_id = args.resume
    else:
        study_id = tuning.new_study(
            args.dataset,
            args.space,
            tuner=args.tuner,
            objective=args.objective,
            max_trials=args.max_trials,
            budget_minutes=args.budget_minutes,
            epochs=args.epochs,
            seed=args.seed,
        )
    print(f"study {study_id}", file=sys.stderr, flush=True)
    if args.detach:
        tuning.launch_driver(study_id)
        return _report(tuning.load_study(study_id), args)
    try:
        study = tuning.drive(
            study_id, on_event=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except KeyboardInterrupt:
        print(
            f"Study {study_id} interrupted; its running trials go on. Continue it with "
            f"`python -m cnnlab tune --resume {study_id}`.",
            file=sys.stderr,
        )
        return 130
    if args.promote and study.best() is not None:
        promoted = tuning.promote(study_id, retrain=args.retrain)
        print(f"promoted: run {promoted}", file=sys.stderr)
        study = tuning.load_study(study_id)
    return _report(study, args)


def _report(study, args: argparse.Namespace) -> int:
    if args.json:
        print_json(study.to_json())
        return 0
    print(
        f"Study {study.study_id}: {study.status}, {study.tuner} search on {study.dataset}, "
        f"objective {study.objective}."
    )
    for trial in study.trials:
        score = "" if trial.score is None else f"{trial.score:.4f}"
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        print(
            f"  trial {trial.trial:>4} {trial.status:11} {score:>7}  "
            f"{trial.run_id or '-'}  {params}"
        )
    best = study.best()
    if best is not None:
        print(f"Best: trial {best.trial} (run {best.run_id}), {study.objective} = {best.score:.4f}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from cnnlab.tune.study import list_studies, load_study

    studies = [load_study(study_id) for study_id in list_studies()]
    if args.json:
        print_json({"studies": [study.to_json() for study in studies]})
        return 0
    if not studies:
        print("No studies yet. Start one with `python -m cnnlab tune --dataset NAME`.")
    for study in studies:
        best = study.best()
        score = "" if best is None else f"best {best.score:.4f}"
        print(
            f"{study.study_id:32} {study.status:11} {study.tuner:10} "
            f"{len(study.trials):>3} trials  {score}"
        )
    return 0
