"""A tuning study against the default recipe, on real photos, with a crash in the middle.

    python bench/bench_tune.py                      # 20-minute Hyperband on flowers-small
    python bench/bench_tune.py --budget 5 --kill-after 2 --tuner random

1. Ingest ``../shared/data/flowers-small`` (450 photos, five classes, split 300/75/75).
2. The default recipe's run: ``python -m cnnlab train --dataset flowers --seed S --json``.
3. The study: ``python -m cnnlab tune --dataset flowers --tuner hyperband --budget 20
   --json`` (the default space: learning rate and regularisation on the recipe's
   network; Hyperband's longest trial has the recipe's epochs). After ``--kill-after``
   minutes the study's process is killed (SIGKILL, mid-trial) and ``tune --resume`` is
   started at once; the study's clock runs only while a driver drives it.
4. Checked after the study: every trial the oracle handed out has exactly one run, and
   no run belongs to two trials (nothing lost, nothing run twice).

Reported: both test accuracies (the test split is never seen by the study, which scores
trials on the validation split), what the study chose, trials, wall time.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, add_common_args, bench_workspace, run

FLOWERS = REPO.parent / "shared" / "data" / "flowers-small"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flowers", type=Path, default=FLOWERS, help="a split photo folder")
    parser.add_argument("--tuner", default="hyperband")
    parser.add_argument("--space", default=None, help="a named space or JSON file")
    parser.add_argument("--budget", type=float, default=20.0, help="study minutes")
    parser.add_argument("--max-trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, help="epochs of the longest trial")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=8.0,
        help="minutes before the study's process is killed (0 = never)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with bench_workspace(args.keep) as (home, env):
        run(
            [
                sys.executable,
                "-m",
                "cnnlab",
                "ingest",
                str(args.flowers),
                "--name",
                "flowers",
                "--json",
            ],
            env,
        )
        default, default_wall = run(
            [
                sys.executable,
                "-m",
                "cnnlab",
                "train",
                "--dataset",
                "flowers",
                "--seed",
                str(args.seed),
                "--json",
            ],
            env,
        )
        print(
            f"default recipe: test accuracy {default['test_accuracy']:.4f} in {default_wall:.0f} s",
            flush=True,
        )
        command = [
            sys.executable,
            "-m",
            "cnnlab",
            "tune",
            "--dataset",
            "flowers",
            "--tuner",
            args.tuner,
            "--budget",
            str(args.budget),
            "--max-trials",
            str(args.max_trials),
            "--seed",
            str(args.seed),
            "--json",
        ]
        if args.space:
            command += ["--space", args.space]
        if args.epochs:
            command += ["--epochs", str(args.epochs)]
        started = time.perf_counter()
        study, killed = _study_with_a_crash(command, env, args.kill_after)
        wall = time.perf_counter() - started
        check = _check_trials(home, study)
        best = study["best"]
        best_run = json.loads((home / "runs" / best["run_id"] / "metrics.json").read_text())
        summary = {
            "default": {
                "test_accuracy": default["test_accuracy"],
                "wall_s": round(default_wall),
                "epochs_run": default.get("epochs_run"),
            },
            "study": {
                "study": study["study"],
                "tuner": study["tuner"],
                "objective": study["objective"],
                "trials": len(study["trials"]),
                "completed": sum(t["status"] == "completed" for t in study["trials"]),
                "duration_s": study["duration_s"],
                "wall_s": round(wall),
                "killed_after_s": killed,
                "best": {
                    **best,
                    "test_accuracy": best_run.get("test_accuracy"),
                    "epochs_run": best_run.get("epochs_run"),
                },
            },
            "trials_check": check,
        }
        print(json.dumps(summary, indent=2) if not args.json else json.dumps(summary))
    return 0 if check["ok"] else 1


def _study_with_a_crash(command: list[str], env: dict, kill_after: float):
    """Run the study's process; kill it after ``kill_after`` minutes and resume it."""
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    log = open(Path(env["CNNLAB_HOME"]) / "tune.log", "w")  # noqa: SIM115 - lives with the bench
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO
    )
    killed = None
    if kill_after:
        try:
            out, _ = process.communicate(timeout=kill_after * 60)
            return json.loads(out.strip().splitlines()[-1]), None
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed = round(kill_after * 60)
        study_id = next(
            line.split()[1]
            for line in (Path(env["CNNLAB_HOME"]) / "tune.log").read_text().splitlines()
            if line.startswith("study ")
        )
        print(f"killed the study's process after {killed} s; resuming {study_id}", flush=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "tune", "--resume", study_id, "--json"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=REPO,
        )
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the study failed; see {log.name}")
    return json.loads(out.strip().splitlines()[-1]), killed


def _check_trials(home: Path, study: dict) -> dict:
    """Every trial the oracle handed out has one run, and no run serves two trials."""
    oracle = home / "studies" / study["study"] / "oracle"
    handed_out = sorted(
        json.loads(p.read_text())["trial_id"] for p in oracle.glob("trial_*/trial.json")
    )
    by_trial: dict[str, list[str]] = {}
    for path in (home / "runs").glob("*/run.json"):
        meta = json.loads(path.read_text())
        tune = meta.get("tune") or {}
        if tune.get("study") == study["study"]:
            by_trial.setdefault(tune["trial"], []).append(meta["run_id"])
    failed_to_start = {t["trial"] for t in study["trials"] if t["run_id"] is None}
    lost = [t for t in handed_out if t not in by_trial and t not in failed_to_start]
    twice = {t: ids for t, ids in by_trial.items() if len(ids) > 1}
    statuses = {t["trial"]: t["status"] for t in study["trials"]}
    unfinished = [t for t, status in statuses.items() if status not in ("completed", "failed")]
    return {
        "handed_out": len(handed_out),
        "lost": lost,
        "run_twice": twice,
        "unfinished": unfinished,
        "ok": not lost and not twice and not unfinished,
    }


if __name__ == "__main__":
    sys.exit(main())
